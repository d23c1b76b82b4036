"""Serving predictions: the HTTP API (`serve.api`) and tagging files at scale (`serve.batch`)."""
