"""Typed access to what the lifespan put in the request state."""

from __future__ import annotations

from starlette.requests import Request

from colima_ref.ports.services import Services
from colima_ref.settings import Settings

# Read from the scope, not through ``request.state``: that builds a State object per request
# (~1 us) to look up one key.


def services(request: Request) -> Services:
    """The Services bundle the lifespan opened."""
    bundle: Services = request.scope["state"]["services"]
    return bundle


def settings(request: Request) -> Settings:
    """The Settings the app was created with."""
    current: Settings = request.scope["state"]["settings"]
    return current
