"""The local model deployment: loading, batched decoding with per-row sampling, LoRA
adapters multiplexed over a base model, the default chat template, its own metrics.
"""
