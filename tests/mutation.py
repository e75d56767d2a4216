"""Mutation testing of cirbench's protocol-critical modules with cosmic-ray (not run in CI).

    pip install cosmic-ray
    python tests/mutation.py                     # every module below (hours on 2 cores)
    python tests/mutation.py metrics scoring     # some of them (names from MODULES)
    python tests/mutation.py --list              # the modules and the tests that guard each
    python tests/mutation.py --recheck WORK stats  # an earlier run's survivors against today's tests

Each module is mutated in a scratch copy of the working tree (never in the tree itself), one mutant at
a time, and the fast tests that exercise it are run (-x: a killed mutant stops at its first failing
test). The surviving mutants are printed as diffs and written to <work>/survivors.txt: each must be
killed by a test or explained as equivalent (it cannot change a result). The explained ones are listed
in tests/mutation_equivalent.txt (module, the line and its mutant, why), matched by content so that a
moved line stays explained; they are counted apart and not printed again.

Operators: arithmetic (+ - * / //) and comparison (< <= > >= == !=) swaps, numbers, `not`, and/or,
True/False, break/continue, zero-iteration loops and exception replacement. Bitwise, shift, power and
modulo replacements and `is` swaps are left out: on tensors and floats they raise at once (always
killed) and would multiply the run time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["-m", "not slow"]
# module (relative to the repository) -> the fast tests that guard it
MODULES = {
    "metrics": ("cirbench/protocol/metrics.py", ["tests/test_metrics.py", "tests/test_real_datasets.py",
                                        "tests/test_official_defaults.py"]),
    "scoring": ("cirbench/protocol/scoring.py", ["tests/test_scoring.py", "tests/test_pinned_protocols.py"]),
    "stats": ("cirbench/analysis/stats.py", ["tests/test_stats.py", "tests/test_pinned_protocols.py"]),
    "transforms": ("cirbench/protocol/transforms.py", ["tests/test_pinned_protocols.py", "tests/test_official_defaults.py"]),
    "prompts": ("cirbench/protocol/prompts.py", ["tests/test_pinned_protocols.py", "tests/test_protocols.py",
                                        "tests/test_encoder.py"]),
    "images": ("cirbench/protocol/images.py", ["tests/test_official_defaults.py", "tests/test_genecis.py",
                                      "tests/test_coco.py", "tests/test_hostile.py"]),
    # each method with the tests that exercise its query construction (fewer files: faster mutants)
    **{f"method:{name}": (f"methods/{name}.py", tests) for names, tests in (
        (("image_only", "text_only", "image_text", "searle", "lincir", "pic2word", "combiner"),
         ["tests/test_pinned_protocols.py", "tests/test_protocols.py", "tests/test_checkpoints.py",
          "tests/test_official_defaults.py", "tests/test_registry.py"]),
        (("slerp", "weicom"), ["tests/test_protocols.py", "tests/test_official_defaults.py", "tests/test_hostile.py",
                               "tests/test_contract.py", "tests/test_registry.py"]),
        (("cirevl", "ldre", "seize"), ["tests/test_official_defaults.py", "tests/test_llm_methods.py",
                                       "tests/test_hostile.py"]),
        (("bge_vl", "magiclens"), ["tests/test_own_models.py", "tests/test_registry.py"]),
        (("_shared",), ["tests/test_pinned_protocols.py", "tests/test_protocols.py", "tests/test_checkpoints.py",
                        "tests/test_official_defaults.py", "tests/test_llm_methods.py"]),
    ) for name in names},
    **{f"dataset:{name}": (f"datasets/{name}.py", ["tests/test_real_datasets.py", "tests/test_data_check.py",
                                                   "tests/test_official_defaults.py", "tests/test_hostile.py", *extra])
       for name, extra in (("fashioniq", []), ("cirr", []), ("circo", []), ("imagenet_r", []), ("folder", []),
                           ("coco", ["tests/test_coco.py"]), ("genecis", ["tests/test_genecis.py"]))},
}
EXCLUDED_OPERATORS = [r"core/ReplaceBinaryOperator_.*_(BitAnd|BitOr|BitXor|LShift|RShift|Pow|Mod)$",
                      r"core/ReplaceBinaryOperator_(BitAnd|BitOr|BitXor|LShift|RShift|Pow|Mod)_.*",
                      r"core/ReplaceComparisonOperator_.*_(Is|IsNot|In|NotIn)$",
                      r"core/ReplaceComparisonOperator_(Is|IsNot|In|NotIn)_.*",
                      r"core/RemoveDecorator", r"core/VariableInserter", r"core/VariableReplacer"]


def scratch_copy(work: Path) -> Path:
    """The tracked and untracked (not ignored) files of the tree, importable as ``cirbench`` from there:
    cirbench/methods and cirbench/datasets link to the top-level folders, as the package mapping does."""
    tree = work / "tree"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for folder in ("methods", "datasets"):
        link = tree / "cirbench" / folder
        if not link.exists():
            link.symlink_to(tree / folder, target_is_directory=True)
    return tree


def pytest_argv(tree: Path, tests: list[str]) -> list[str]:
    """The fast tests that guard a module, run in the scratch tree, stopping at the first failure."""
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *FAST, *[str(tree / t) for t in tests]]


def session_path(work: Path, name: str) -> Path:
    """The cosmic-ray session database of a module's run in a work folder."""
    return work / f"{name.replace(':', '-')}.sqlite"


def run_module(name: str, tree: Path, work: Path, timeout: float) -> list[dict]:
    path, tests = MODULES[name]
    session = session_path(work, name)
    config = session.with_suffix(".toml")
    argv = pytest_argv(tree, tests)
    command = shlex.join(argv)
    excluded = ", ".join(json.dumps(x) for x in EXCLUDED_OPERATORS)
    config.write_text(f'[cosmic-ray]\nmodule-path = "{tree / path}"\ntimeout = {timeout}\nexcluded-modules = []\n'
                      f"test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = \"local\"\n\n"
                      f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # the unmutated copy must pass, or every mutant would count as killed
    baseline = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{name}: the tests fail on the unmutated copy:\n{baseline.stdout[-2000:]}")
    subprocess.run(["cosmic-ray", "init", str(config), str(session)], check=True, env=env, cwd=tree)
    subprocess.run(["cr-filter-operators", str(session), str(config)], check=True, env=env, cwd=tree)
    subprocess.run(["cosmic-ray", "exec", str(config), str(session)], check=True, env=env, cwd=tree)
    return survivors(session)


EQUIVALENT = Path(__file__).with_name("mutation_equivalent.txt")


def _squeeze(line: str) -> str:
    return "".join(line.split())


def equivalents(path: Path = EQUIVALENT) -> dict[tuple[str, str, str], str]:
    """(module, original line, mutated line) -> why, from blocks of 'module:', '-', '+' and 'why:' lines."""
    known = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields = {}
        for line in block.strip().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            fields[key.rstrip(":")] = value.strip()
        if {"module", "-", "+", "why"} <= set(fields):
            known[(fields["module"], _squeeze(fields["-"]), _squeeze(fields["+"]))] = fields["why"]
    return known


def explained(survivor: dict, module: str, known: dict) -> str | None:
    """Why a surviving mutant is equivalent, if tests/mutation_equivalent.txt says so."""
    old, new = _lines(survivor["diff"])
    return known.get((module, _squeeze(old), _squeeze(new)))


def survivors(session: Path) -> list[dict]:
    """The mutants the tests did not kill (test outcome 'survived'), with their diffs."""
    out = []
    with sqlite3.connect(session) as db:
        rows = db.execute("SELECT m.module_path, m.operator_name, m.occurrence, m.start_pos_row, r.diff "
                          "FROM mutation_specs m JOIN work_results r ON m.job_id = r.job_id "
                          "WHERE r.test_outcome = 'SURVIVED'").fetchall()
    for module, operator, occurrence, line, diff in rows:
        out.append({"module": module, "operator": operator, "occurrence": occurrence, "line": line, "diff": diff})
    return out


def _lines(diff: str) -> tuple[str, str]:
    lines = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++"))]
    return (next((ln[1:] for ln in lines if ln.startswith("-")), ""),
            next((ln[1:] for ln in lines if ln.startswith("+")), ""))


def recheck(earlier: Path, names: list[str], work: Path) -> int:
    """Plant each surviving mutant of an earlier run (found by its line's content) in a scratch copy of
    today's tree and run the module's tests: what survives still and is not explained is printed."""
    tree, known, left = scratch_copy(work), equivalents(), 0
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for name in names:
        session = session_path(earlier, name)
        if not session.is_file():
            print(f"{name}: no earlier run in {earlier}")
            continue
        path, tests = MODULES[name]
        target = tree / path
        source = target.read_text(encoding="utf-8")
        argv = pytest_argv(tree, tests)
        counts = {"killed": 0, "explained": 0, "gone": 0, "surviving": 0}
        for s in survivors(session):
            old, new = _lines(s["diff"])
            if explained(s, path, known) is not None:
                counts["explained"] += 1
                continue
            if not old or old not in source:
                counts["gone"] += 1  # the line was rewritten since
                continue
            target.write_text(source.replace(old, new, 1), encoding="utf-8")
            try:
                caught = subprocess.run(argv, env=env, cwd=tree, capture_output=True).returncode != 0
            finally:
                target.write_text(source, encoding="utf-8")
            counts["killed" if caught else "surviving"] += 1
            if not caught:
                left += 1
                print(f"## {name} line {s['line']} {s['operator']}\n-{old}\n+{new}", flush=True)
        print(f"{name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="names from MODULES (default: all)")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one, kept)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    parser.add_argument("--recheck", type=Path, metavar="WORK",
                        help="re-run the survivors of an earlier run (its --work folder) against today's tests")
    args = parser.parse_args()
    if args.list:
        for name, (path, tests) in MODULES.items():
            print(f"{name:22s} {path:28s} {' '.join(tests)}")
        return
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; see --list")
    work = args.work or Path(tempfile.mkdtemp(prefix="cirbench-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.recheck:
        left = recheck(args.recheck, args.modules or list(MODULES), work)
        print(f"{left} surviving mutant(s) neither killed nor explained")
        return
    tree = scratch_copy(work)
    report = work / "survivors.txt"
    total, known = [], equivalents()
    for name in args.modules or list(MODULES):
        found = run_module(name, tree, work, args.timeout)
        module = MODULES[name][0]
        open_ones = [s for s in found if explained(s, module, known) is None]
        total += open_ones
        with open(report, "a", encoding="utf-8") as fh:
            for s in open_ones:
                fh.write(f"## {name} line {s['line']} {s['operator']} #{s['occurrence']}\n{s['diff']}\n")
        print(f"{name}: {len(open_ones)} surviving mutant(s) to kill or explain, "
              f"{len(found) - len(open_ones)} explained in {EQUIVALENT.name}", flush=True)
    print(f"{len(total)} surviving mutant(s) in all; diffs in {report}")


if __name__ == "__main__":
    main()
