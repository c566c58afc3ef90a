"""HTTP: the ASGI application (OAuth endpoints and the admin API)."""
