"""Your own model in vae-tune: a small ResNet-style conv autoencoder and VAE (`nets.py`), and
the search spaces that tune their depth and width beside vae-tune's common keys."""
