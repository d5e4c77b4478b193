"""The HTTP transport (aiohttp): REST API v1, health, metrics."""
