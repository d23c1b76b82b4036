"""Training pipeline: labeled data in, a self-describing model directory out."""
