"""Pure ASGI middleware, one per module. Each passes non-http scopes through untouched."""
