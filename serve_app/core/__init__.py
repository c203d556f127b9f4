"""The gateway's core, with no HTTP types: resolve a request against the catalog, call one
deployment (fallbacks, circuit breakers, deadlines, streams), account for it, and probe
the deployments.
"""
