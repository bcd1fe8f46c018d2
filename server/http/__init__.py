"""The HTTP surface (aiohttp): application factory, routing with OpenAPI, problem+json."""
