"""How a stage's model is judged and what it costs: its task, test figures, latent
metrics and baselines, pictures and plots, and an epoch's measured cost."""
