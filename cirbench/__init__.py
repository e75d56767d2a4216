"""cirbench: a benchmark harness for zero-shot composed image retrieval.

Heavy libraries (torch, open_clip) are imported lazily by the modules that need them, so that
``import cirbench`` and ``cirbench --help`` stay instant. The Python API is :func:`evaluate`
(see cirbench.api).
"""

__version__ = "0.2.0"


def evaluate(*args, **kwargs):
    """Run methods on dataset splits; see :func:`cirbench.api.evaluate`."""
    from .api import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate", "__version__"]
