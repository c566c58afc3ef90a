"""Policy: the declared issuance-path map and what it allows."""
