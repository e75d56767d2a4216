"""Built-in encoder kinds (each registers itself): open_clip models (openclip), Hugging Face
transformers CLIP models (hfclip: `hf-clip:REPO_OR_DIR[@REV]`), MagicLens checkpoints (magiclens:
`magiclens:FILE`). The embedded world's
small CLIP registers its kind from cirbench.world.encoder.

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage.
"""
