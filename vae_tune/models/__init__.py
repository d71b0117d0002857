"""The models and how they learn: configs, layers, networks, the training loop,
precision, augmentation, weight averaging, saving and export."""
