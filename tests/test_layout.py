"""The package's layers: every import of every module (module level and inside functions) points to its
own subpackage or a lower layer, and no group of modules imports itself in a circle. Earlier module
paths still import, as aliases of the modules' homes."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own layer's package and anything below
LAYERS = [
    ["cirbench.errors"],
    ["cirbench.util"],
    ["cirbench.acquire"],
    ["cirbench.protocol"],
    ["cirbench.contracts"],
    ["cirbench.storage"],
    ["cirbench.encoders", "cirbench.training", "cirbench.generation"],
    ["cirbench.world"],
    ["cirbench.engine", "cirbench.analysis", "cirbench.methods", "cirbench.datasets"],
    ["cirbench.api"],
    ["cirbench.cli"],
    ["cirbench.__main__"],
]
TOP = {"cirbench"}  # the package's __init__ (lazy exports, import aliases) belongs to no layer


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (methods/ and datasets/ as installed)."""
    out = {}
    for folder, package in ((ROOT / "cirbench", "cirbench"), (ROOT / "methods", "cirbench.methods"),
                            (ROOT / "datasets", "cirbench.datasets")):
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def layer_of(name: str) -> tuple[int, str] | None:
    for level, packages in enumerate(LAYERS):
        for package in packages:
            if name == package or name.startswith(package + "."):
                return level, package
    return None


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The cirbench modules a module imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `from cirbench.x import name`: the module is cirbench.x
                target = target.rpartition(".")[0]
            if target and target.startswith("cirbench") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_imports_point_down_only():
    wrong = []
    for name, targets in graph().items():
        mine = layer_of(name)
        if name in TOP or mine is None:
            continue
        for target in targets:
            theirs = layer_of(target)
            if target in TOP or theirs is None:
                continue
            if theirs[0] > mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                wrong.append(f"{name} (layer {mine[0]}) imports {target} (layer {theirs[0]})")
    assert not wrong, "\n".join(wrong)


def test_every_module_belongs_to_a_layer():
    assert [n for n in modules() if n not in TOP and layer_of(n) is None] == []


def test_no_import_cycles():
    edges = graph()
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt in edges:  # a package's __init__ importing its own submodules is not a cycle
                if nxt.startswith(node + ".") and node in TOP | {n for n in edges if edges[n] and n + "." in nxt}:
                    continue
                visit(nxt)
        stack.pop()

    for node in sorted(edges):
        visit(node)
    cycles = [c for c in cycles if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(c, c[1:]))]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("old,name", [
    ("cirbench.method", "Method"), ("cirbench.method", "register_method"), ("cirbench.method", "Option"),
    ("cirbench.dataset", "Dataset"), ("cirbench.dataset", "register_dataset"), ("cirbench.data", "Split"),
    ("cirbench.data", "Query"), ("cirbench.encoder", "Encoder"), ("cirbench.encoder", "register_encoder"),
    ("cirbench.scoring", "normalize"), ("cirbench.errors", "MissingResourceError"), ("cirbench.images", "ImageRef"),
    ("cirbench.training", "batches"), ("cirbench.checkpoints", "load"), ("cirbench.results", "read"),
    ("cirbench.registry", "methods"), ("cirbench.llm_texts", "CaptionRewriteMethod"),
])
def test_earlier_import_paths_still_work(old, name):
    """What plugins written for earlier versions import is still there, and is the same object as at its
    new home and at the package's top level where it is public."""
    import cirbench

    value = getattr(importlib.import_module(old), name)
    if name in cirbench.__all__:
        assert getattr(cirbench, name) is value


def test_names_do_not_collide():
    """One of data.py / dataset.py / datasets/, encoder.py / encoders/, training.py / training_data.py in
    a folder."""
    files = {p.stem for p in (ROOT / "cirbench").iterdir()}
    for group in (("data", "dataset", "datasets"), ("encoder", "encoders"), ("training", "training_data")):
        assert len(files & set(group)) <= 1, group
