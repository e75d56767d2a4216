"""A per-method store of generated artefacts (captions, LLM rewrites, pseudo-tokens) in the cache.

Each entry is keyed by everything that produced it -- the model id and revision, the prompt, the
decoding settings and the input -- so expensive generation runs once, a rerun reads the same texts
back, and changing any of those produces new entries instead of stale ones. Values are JSON.

Layout: ``<cache>/artefacts/<method>/<shard>.json``, each shard ``{"producer": {...}, "entries":
{key: value}}`` written atomically; a malformed shard is ignored (its entries are generated again).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from cirbench.util import fsutil


def entry_key(producer: dict, item: Any) -> str:
    """The key of one entry: what produced it and its input."""
    return fsutil.stable_hash({"producer": producer, "input": item})[:32]


class ArtefactStore:
    def __init__(self, root: Path | None, method: str):
        self.dir = Path(root) / "artefacts" / fsutil.slug(method) if root else None
        self._entries: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.dir is not None and self.dir.is_dir():
                for shard in sorted(self.dir.glob("*.json")):
                    try:
                        data = json.loads(shard.read_text(encoding="utf-8"))
                        entries = data["entries"]
                        if isinstance(entries, dict):
                            self._entries.update(entries)
                    except (OSError, ValueError, KeyError, TypeError):
                        continue
        return self._entries

    def lookup(self, producer: dict, items: Iterable[Any]) -> list[Any | None]:
        """The stored value for each input (None where nothing is stored)."""
        entries = self._load()
        return [entries.get(entry_key(producer, item)) for item in items]

    def store(self, producer: dict, items: list[Any], values: list[Any]) -> None:
        """Add generated values for their inputs (one shard per call)."""
        if not items:
            return
        new = {entry_key(producer, item): value for item, value in zip(items, values)}
        self._load().update(new)
        if self.dir is None:
            return
        name = hashlib.sha1(json.dumps(sorted(new)).encode()).hexdigest()[:20]
        fsutil.write_json(self.dir / f"{name}.json", {"producer": producer, "entries": new}, indent=None)

    def get_or_make(self, producer: dict, items: list[Any], make) -> list[Any]:
        """Stored values, generating the missing ones with ``make(missing inputs) -> values`` and storing them."""
        found = self.lookup(producer, items)
        missing = list(dict.fromkeys(json.dumps(it, sort_keys=True) for it, v in zip(items, found) if v is None))
        if missing:
            inputs = [json.loads(m) for m in missing]
            made = make(inputs)
            self.store(producer, inputs, list(made))
            found = self.lookup(producer, items)
        return found
