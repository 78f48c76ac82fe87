"""Serving one model over HTTP: `create_app(predictor_or_factory, ServeConfig())` (FastAPI, micro-batching,
bounded queue) and `python -m mmnar_core serve BUNDLE_DIR`. See docs/serving.md.

Importing this package is cheap (FastAPI is imported with `mmnar_core.serving.server`)."""

from mmnar_core.serving.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name):
    if name == "create_app":
        from mmnar_core.serving.server import create_app

        return create_app
    raise AttributeError(f"module 'mmnar_core.serving' has no attribute {name!r}")
