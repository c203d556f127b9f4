"""Who may call: authentication, the key store and its per-replica cache, admission (model
permission, budget, per-key and per-IP rate limits).
"""
