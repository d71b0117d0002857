"""Where users look: the MLflow bridge and its rules, the saved views and tags, trial
pictures, optuna-dashboard notes, links, and what a registered folder may load."""
