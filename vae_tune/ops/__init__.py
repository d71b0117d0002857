"""Operations around the studies: worker processes, crash repair, doctor, storages, UI servers."""
