"""What is kept on disk: feature shards (cache), content keys of image files (content_keys), image and
text features through the cache (features), result records and per-query outcomes (results), generated
texts (artefacts) and checkpoints (checkpoints). Every write is atomic.

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts.
"""
