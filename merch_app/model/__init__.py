"""Text encoder, hybrid collaborative-filtering model, training and model registry."""
