"""Mutation testing of cirbench's protocol-critical modules with cosmic-ray (not run in CI).

    pip install cosmic-ray
    python tests/mutation.py                     # every module below (hours on 2 cores)
    python tests/mutation.py metrics scoring     # some of them (names from MODULES)
    python tests/mutation.py --list              # the modules and the tests that guard each

Each module is mutated in a scratch copy of the working tree (never in the tree itself), one mutant at
a time, and the fast tests that exercise it are run (-x: a killed mutant stops at its first failing
test). The surviving mutants are printed as diffs and written to <work>/survivors.txt: each must be
killed by a test or explained as equivalent (it cannot change a result).

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
                               "tests/test_contract.py"]),
        (("cirevl", "ldre", "seize"), ["tests/test_official_defaults.py", "tests/test_llm_methods.py",
                                       "tests/test_hostile.py"]),
        (("bge_vl", "magiclens"), ["tests/test_own_models.py"]),
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


def run_module(name: str, tree: Path, work: Path, timeout: float) -> list[dict]:
    path, tests = MODULES[name]
    slug = name.replace(":", "-")
    config = work / f"{slug}.toml"
    session = work / f"{slug}.sqlite"
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *FAST, *[str(tree / t) for t in tests]]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="names from MODULES (default: all)")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one, kept)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
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
    tree = scratch_copy(work)
    report = work / "survivors.txt"
    total = []
    for name in args.modules or list(MODULES):
        found = run_module(name, tree, work, args.timeout)
        total += found
        with open(report, "a", encoding="utf-8") as fh:
            for s in found:
                fh.write(f"## {name} line {s['line']} {s['operator']} #{s['occurrence']}\n{s['diff']}\n")
        print(f"{name}: {len(found)} surviving mutant(s)", flush=True)
    print(f"{len(total)} surviving mutant(s) in all; diffs in {report}")


if __name__ == "__main__":
    main()
