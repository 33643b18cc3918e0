"""The FastAPI application: /v1 routers, auth dependency, health and metrics."""
