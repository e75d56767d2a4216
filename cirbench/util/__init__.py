"""Foundation helpers every layer may use: atomic files and hashes (fsutil), progress lines (progress),
torchrun processes (distributed), the Hugging Face hub's reachability (hub).

May import: cirbench.errors only.
"""
