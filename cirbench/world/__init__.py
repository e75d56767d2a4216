"""The embedded default benchmark's world: rendering it (build) and its small CLIP, an encoder kind
(encoder). Its tasks are the dataset plugin datasets/world.py.

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage,
cirbench.encoders, cirbench.training.
"""

from cirbench.world.build import (COLORS, DOMAINS, PRESETS, SHAPES, WorldConfig, build,
                                  load, render)

__all__ = ["COLORS", "DOMAINS", "PRESETS", "SHAPES", "WorldConfig", "build", "load", "render"]
