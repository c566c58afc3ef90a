"""OAuth 2.0 endpoints and grants, one module per protocol concept."""
