"""Local text generation for the LLM-based methods: captioners and instruction LLMs through Hugging Face
transformers (models) and where the methods get their texts -- released annotation fields or local
generation stored as artefacts -- with the caption-and-rewrite base LDRE and SEIZE share (texts).

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage.
"""

from cirbench.generation.models import (Captioner, Decoding, Rewriter, load_pretrained,
                                        official_prompt, require_transformers, revision_of)

__all__ = ["Captioner", "Decoding", "Rewriter", "load_pretrained", "official_prompt", "require_transformers", "revision_of"]
