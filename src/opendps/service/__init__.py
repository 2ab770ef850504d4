"""The service layer: what every surface (HTTP dialects, CLI, executors) calls."""

from opendps.service.context import Services

__all__ = ["Services"]
