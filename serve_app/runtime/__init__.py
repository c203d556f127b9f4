"""Putting it together: the Serve application builder, the ingress deployment class, the
launcher (`make run`), environment settings, config checks and CLIs.
"""
