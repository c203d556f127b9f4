"""The commercial provider deployments: one proxy per provider over the official SDK, the
translation of our wire types to each provider's API, and the mapping of SDK errors.
"""
