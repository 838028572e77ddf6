"""The API side of the weight feed: the service that publishes feeds to GET /v1/weights."""
