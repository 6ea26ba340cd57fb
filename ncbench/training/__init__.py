"""Training: recipes, the trainer, metric passes, shared trajectories."""
