"""cirbench: a benchmark harness for zero-shot composed image retrieval.

The package is layered; each subpackage says what it owns and what it may import (imports point down
only, checked by tests/test_layout.py):

    errors, util        foundation: exceptions, atomic files, progress, processes, the hub
    protocol            how numbers are defined: metrics, ranking and ties, prompts, images, transforms
    contracts           what a plugin writes against: Method, Dataset, Split, Encoder, registries, plugins
    storage             what is kept on disk: feature caches, content keys, results, artefacts, checkpoints
    encoders, training, generation    encoder kinds; training loops and data; local text generation
    world               the embedded default benchmark's world and its small CLIP
    engine              one split, many methods: plan, inputs, ranking, records
    analysis            reading results: statistics, tables, comparisons, grids, HTML, the report
    api, cli            evaluate() and the command line

What a plugin needs is importable from here: ``from cirbench import Method, Option, register_method``.
Heavy libraries (torch, open_clip) are imported lazily, so ``import cirbench`` and ``cirbench --help``
stay instant. Module paths of earlier versions (``cirbench.method``, ``cirbench.dataset``,
``cirbench.data``, ``cirbench.scoring``, ...) keep working: they are aliases of the modules' homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.3.0"

# the public names and where they live (loaded on first use)
_EXPORTS = {
    "evaluate": "cirbench.api", "Settings": "cirbench.api", "Evaluation": "cirbench.api",
    "Method": "cirbench.contracts.method", "Option": "cirbench.contracts.method",
    "register_method": "cirbench.contracts.method", "QueryBatch": "cirbench.contracts.method",
    "Gallery": "cirbench.contracts.method", "SplitView": "cirbench.contracts.method",
    "MethodContext": "cirbench.contracts.method", "EncoderView": "cirbench.contracts.method",
    "TrainRequest": "cirbench.contracts.method",
    "Dataset": "cirbench.contracts.dataset", "register_dataset": "cirbench.contracts.dataset",
    "Split": "cirbench.contracts.split", "Query": "cirbench.contracts.split", "Triplet": "cirbench.contracts.split",
    "relative_captions": "cirbench.contracts.split",
    "CAPTION_STRIP": "cirbench.contracts.split",
    "Encoder": "cirbench.contracts.encoder", "register_encoder": "cirbench.contracts.encoder",
    "load_encoder": "cirbench.contracts.encoder",
    "ImageRef": "cirbench.protocol.images",
    "CirbenchError": "cirbench.errors", "UsageError": "cirbench.errors", "DataError": "cirbench.errors",
    "MissingResourceError": "cirbench.errors", "RunError": "cirbench.errors",
}

# earlier module paths -> their homes now
_ALIASES = {
    "cirbench.method": "cirbench.contracts.method", "cirbench.dataset": "cirbench.contracts.dataset",
    "cirbench.data": "cirbench.contracts.split", "cirbench.encoder": "cirbench.contracts.encoder",
    "cirbench.registry": "cirbench.contracts.registry",
    "cirbench.metrics": "cirbench.protocol.metrics", "cirbench.scoring": "cirbench.protocol.scoring",
    "cirbench.prompts": "cirbench.protocol.prompts", "cirbench.images": "cirbench.protocol.images",
    "cirbench.transforms": "cirbench.protocol.transforms",
    "cirbench.fsutil": "cirbench.util.fsutil", "cirbench.progress": "cirbench.util.progress",
    "cirbench.distributed": "cirbench.util.distributed",
    "cirbench.cache": "cirbench.storage.cache", "cirbench.content_keys": "cirbench.storage.content_keys",
    "cirbench.features": "cirbench.storage.features", "cirbench.results": "cirbench.storage.results",
    "cirbench.artefacts": "cirbench.storage.artefacts", "cirbench.checkpoints": "cirbench.storage.checkpoints",
    "cirbench.training_data": "cirbench.training.sources", "cirbench.llm_texts": "cirbench.generation.texts",
    "cirbench.stats": "cirbench.analysis.stats", "cirbench.compare": "cirbench.analysis.compare",
    "cirbench.report": "cirbench.analysis.report", "cirbench.grids": "cirbench.analysis.grids",
    "cirbench.html": "cirbench.analysis.html", "cirbench.encoders.world": "cirbench.world.encoder",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an earlier module path as the module that lives at its new home (the same object)."""

    def find_spec(self, name, path=None, target=None):
        if name in _ALIASES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(_ALIASES[spec.name])
        self.home_spec = module.__spec__  # the import system points __spec__ at the alias; put it back
        return module

    def exec_module(self, module):
        module.__spec__ = self.home_spec


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Alias())


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cirbench' has no attribute {name!r}")


__all__ = ["__version__", *_EXPORTS]
