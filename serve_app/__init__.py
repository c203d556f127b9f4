"""llm-gateway: the FastAPI ingress of the Ray Serve deployment graph."""

__version__ = "0.1.0"
