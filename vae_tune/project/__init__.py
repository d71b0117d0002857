"""A project folder: where everything of it lives, and its Optuna storage."""
