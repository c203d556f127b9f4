"""The demo model, its corpus and its LoRA adapters, trained by `make run`. Commands only:
serving code never imports this package.
"""
