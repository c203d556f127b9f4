"""Putting it together: the Serve application builder, the ingress deployment class (and the
providers it runs in process), the launcher (`make run`), environment settings, config
checks and CLIs.
"""
