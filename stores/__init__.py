"""Durable state next to the models: the label store the API appends to, and the model registry."""
