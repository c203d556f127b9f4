"""The HTTP front: the FastAPI app, middleware, error handlers, routes, wire schemas of each
API, SSE framing and the OpenAI/Anthropic response shapes. Calls the core; holds no logic
of its own beyond validating and shaping.
"""
