"""llm-gateway: one HTTP front door to local and commercial LLMs, as a Ray Serve graph."""

__version__ = "0.1.0"
