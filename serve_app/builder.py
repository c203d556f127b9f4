"""`serve_app.builder:build_app`, the import path Serve configs and RayServices name.

The builder itself lives in `serve_app.runtime.builder`; this module only keeps the
published import path stable.
"""

from serve_app.runtime.builder import build_app

__all__ = ["build_app"]
