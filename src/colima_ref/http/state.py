"""Typed access to what the lifespan put in the request state."""

from __future__ import annotations

from starlette.requests import Request

from colima_ref.ports.services import Services
from colima_ref.settings import HttpSettings


def services(request: Request) -> Services:
    """The Services bundle the lifespan opened."""
    bundle: Services = request.state.services
    return bundle


def settings(request: Request) -> HttpSettings:
    """The HttpSettings the app was created with: what the edge reads, no credentials."""
    current: HttpSettings = request.state.settings
    return current
