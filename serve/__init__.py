"""What users and other systems call: the `kesheng` CLI, file tagging, the HTTP API."""
