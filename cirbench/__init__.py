"""cirbench: a benchmark harness for zero-shot composed image retrieval.

Heavy libraries (torch, open_clip) are imported lazily by the modules that need them, so that
``import cirbench`` and ``cirbench --help`` stay instant.
"""

__version__ = "0.1.0"
