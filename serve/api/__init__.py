"""The HTTP API the ticketing system calls: app factory, settings, routes, schemas, observability."""
