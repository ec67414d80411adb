"""The local HTTP service: models loaded once, GPU work one request at a time, a token on every request."""
