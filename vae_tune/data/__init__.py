"""Datasets: the readers of each format and the seeded, stratified splits into tensors."""
