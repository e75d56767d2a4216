"""How numbers are defined: the metrics and their per-query values (metrics), ranking with its tie rule
(scoring), prompt templates (prompts), image decoding and per-image operations (images) and the image
transforms of each method's official code (transforms). Pure definitions: nothing here keeps state or
touches the cache.

May import: cirbench.errors, cirbench.util.
"""
