"""`python -m vae_tune.cli`: the same command line as `vae-tune`."""

from vae_tune.cli import main

main()
