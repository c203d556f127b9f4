"""The classes Serve deploys for local models, importable without torch.

Serve's build task imports the class it binds; with the engine's own classes that meant
torch and transformers (about 1.5 s) in a process that never runs a model, on every
deploy. These stand-ins import the engine in their constructor, on the model replica, and
hand every attribute to the server they built there (`generate`, `generate_stream`,
`describe`, `count_tokens`, ...), so a handle call reaches the real method unchanged.
"""

import importlib
from typing import Any


class _EngineDeployment:
    """Builds `SERVER` (module, class) in the replica; forwards everything to it."""

    SERVER: tuple[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        module, name = self.SERVER
        self._server = getattr(importlib.import_module(module), name)(*args, **kwargs)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve's `user_config` hook (the batching settings), defined here so that Serve
        sees it on the class."""
        self._server.reconfigure(user_config)

    def __getattr__(self, name: str) -> Any:
        server = self.__dict__.get("_server")
        if server is None:
            raise AttributeError(name)
        return getattr(server, name)


class LocalModelDeployment(_EngineDeployment):
    """`deployments.engine.server.LocalModelServer`, built in the replica."""

    SERVER = ("deployments.engine.server", "LocalModelServer")


class LocalEmbeddingDeployment(_EngineDeployment):
    """`deployments.engine.embedder.LocalEmbeddingServer`, built in the replica."""

    SERVER = ("deployments.engine.embedder", "LocalEmbeddingServer")
