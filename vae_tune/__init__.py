"""vae-tune: hyperparameter-optimization studies for autoencoders, VAEs and their classifier
heads, with every trial tracked in MLflow. `vae-tune --help` lists the commands."""

__version__ = "0.2.0"
