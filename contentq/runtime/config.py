"""The routes file as a long-lived process sees it: loaded once, re-read when it changes."""

from __future__ import annotations

from typing import cast

from contentq.routes import Route, RoutesConfig, load_routes
from contentq.runtime.context import Runtime


def routes_config(runtime: Runtime) -> RoutesConfig:
    """The routes file, re-read when it changes (workers live long; operators edit contentq.toml)."""
    path = runtime.settings.config_path
    stamp = path.stat().st_mtime_ns if path.exists() else None
    cached = runtime.services.get("routes_config")
    if cached is not None and cached[0] == (str(path), stamp):
        return cast(RoutesConfig, cached[1])
    config = load_routes(path, required=True)
    runtime.services["routes_config"] = ((str(path), stamp), config)
    return config


def route_of(runtime: Runtime, name: str) -> Route:
    return routes_config(runtime).get(name)
