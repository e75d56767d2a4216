"""What a plugin writes against: the method contract (method: Method, Option, QueryBatch, Gallery,
SplitView, EncoderView, MethodContext), the dataset contract (dataset: Dataset; split: Split, Query,
Triplet), the encoder contract (encoder: Encoder, load_encoder), the registries (registry) and the loading
of local plugin files and modules (plugins). Everything a hook receives is documented here.

May import: cirbench.errors, cirbench.util, cirbench.protocol.
"""
