"""Mutation testing of cirbench's protocol-critical modules with cosmic-ray (not run in CI).

    pip install cosmic-ray pytest-cov
    python tests/mutation.py                     # every module below (hours on 2 cores)
    python tests/mutation.py metrics scoring     # some of them (names from MODULES)
    python tests/mutation.py --list              # the modules and the tests that guard each
    python tests/mutation.py --recheck WORK stats  # an earlier run's survivors against today's tests
    python tests/mutation.py --resume --work WORK images  # go on with a stopped run
    python tests/mutation.py --changed-since HEAD~3 images  # only the lines changed since a revision

Each module is mutated in a scratch copy of the working tree (never in the tree itself), one mutant at
a time, and the fast tests that exercise it are run (-x: a killed mutant stops at its first failing
test). To spend the time on tests that can matter, one coverage run first records which of the module's
tests reach each of its functions (pytest-cov, a context per test): a mutant inside a function runs only
those tests, one outside every function (a constant, a class attribute) runs them all, and each mutant
that survives is planted again and run against all the module's tests before it is counted (a test that
reaches the function only in a subprocess is never missed; ``--no-confirm`` leaves that to a later
``--recheck``, which runs each earlier survivor against the tests that reach it and then, if it survives
them, all the module's tests). ``--all-tests`` runs every mutant against all of them. The surviving
mutants are printed as diffs and written to <work>/survivors.txt: each must be killed by a test or
explained as equivalent (it cannot change a result). The explained ones are listed
in tests/mutation_equivalent.txt (module, the line and its mutant, why), matched by content so that a
moved line stays explained; they are counted apart and not printed again.

Operators: arithmetic (+ - * / //) and comparison (< <= > >= == !=) swaps, numbers, `not`, and/or,
True/False, break/continue, zero-iteration loops and exception replacement. Bitwise, shift, power and
modulo replacements and `is` swaps are left out: on tensors and floats they raise at once (always
killed) and would multiply the run time.
"""

from __future__ import annotations

import argparse
import ast
import difflib
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
                                        "tests/test_official_defaults.py", "tests/test_whole_ranking_metrics.py",
                                        "tests/test_icir.py"]),
    "scoring": ("cirbench/protocol/scoring.py", ["tests/test_scoring.py", "tests/test_pinned_protocols.py",
                                                 "tests/test_whole_ranking_metrics.py", "tests/test_icir.py"]),
    # restricted unpickling of released statistics (BASIC's pickles)
    "safe_pickle": ("cirbench/storage/safe_pickle.py", ["tests/test_icir.py"]),
    # the multimodal-LLM sequence assembly and tile layouts
    "llava_next": ("cirbench/encoders/llava_next.py", ["tests/test_e5_v.py", "tests/test_bge_vl_mllm.py"]),
    "qwen2_vl": ("cirbench/encoders/qwen2_vl.py", ["tests/test_lamra.py"]),
    "prompt_llm": ("cirbench/encoders/prompt_llm.py", ["tests/test_lamra.py", "tests/test_e5_v.py",
                                                       "tests/test_bge_vl_mllm.py"]),
    "stats": ("cirbench/analysis/stats.py", ["tests/test_stats.py", "tests/test_pinned_protocols.py"]),
    "transforms": ("cirbench/protocol/transforms.py", ["tests/test_pinned_protocols.py", "tests/test_official_defaults.py",
                                                      "tests/test_hostile_recheck.py"]),
    "prompts": ("cirbench/protocol/prompts.py", ["tests/test_pinned_protocols.py", "tests/test_protocols.py",
                                        "tests/test_encoder.py"]),
    "images": ("cirbench/protocol/images.py", ["tests/test_images.py", "tests/test_official_defaults.py",
                                               "tests/test_genecis.py", "tests/test_coco.py", "tests/test_hostile.py"]),
    # each method with the tests that exercise its query construction (fewer files: faster mutants)
    **{f"method:{name}": (f"methods/{name}.py", tests) for names, tests in (
        (("image_only", "text_only", "image_text", "searle", "lincir", "pic2word", "combiner"),
         ["tests/test_pinned_protocols.py", "tests/test_protocols.py", "tests/test_checkpoints.py",
          "tests/test_official_defaults.py", "tests/test_registry.py"]),
        (("slerp", "weicom"), ["tests/test_protocols.py", "tests/test_official_defaults.py", "tests/test_hostile.py",
                               "tests/test_contract.py", "tests/test_registry.py", "tests/test_hostile_recheck.py",
                               "tests/test_settings.py", "tests/test_cli_hints.py"]),
        (("cirevl", "ldre", "seize"), ["tests/test_official_defaults.py", "tests/test_llm_methods.py",
                                       "tests/test_hostile.py"]),
        (("bge_vl", "magiclens"), ["tests/test_own_models.py", "tests/test_registry.py", "tests/test_hostile_recheck.py"]),
        (("_shared",), ["tests/test_pinned_protocols.py", "tests/test_protocols.py", "tests/test_checkpoints.py",
                        "tests/test_official_defaults.py", "tests/test_llm_methods.py", "tests/test_hostile_recheck.py"]),
        (("freedom",), ["tests/test_domain_datasets.py"]),
        (("basic", "product"), ["tests/test_icir.py"]),
        (("e5_v",), ["tests/test_e5_v.py"]),
        (("bge_vl_mllm",), ["tests/test_bge_vl_mllm.py"]),
        (("lamra",), ["tests/test_lamra.py", "tests/test_registry.py"]),
    ) for name in names},
    # the domain-conversion family's shared protocol (minidn, nico and ltll only declare their files)
    "dataset:_domains": ("datasets/_domains.py", ["tests/test_domain_datasets.py", "tests/test_data_check.py"]),
    "dataset:icir": ("datasets/icir.py", ["tests/test_icir.py"]),
    **{f"dataset:{name}": (f"datasets/{name}.py", ["tests/test_real_datasets.py", "tests/test_data_check.py",
                                                   "tests/test_official_defaults.py", "tests/test_hostile.py",
                                                   "tests/test_hostile_recheck.py", *extra])
       for name, extra in (("fashioniq", []), ("cirr", []), ("circo", []),
                           ("imagenet_r", ["tests/test_domain_datasets.py"]),
                           ("folder", ["tests/test_training_data.py"]),
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


def reach_map(name: str, tree: Path, work: Path) -> Path:
    """Run the module's fast tests once under coverage with a context per test (this is also the check
    that the unmutated copy passes) and write, for each function of the module, the tests that execute
    any line of its body. Written to <work>/<module>.reach.json for --run-mutant."""
    path, tests = MODULES[name]
    target = tree / path
    stem = session_path(work, name).with_suffix("")
    rc, data = stem.with_suffix(".coveragerc"), stem.with_suffix(".coverage")
    rc.write_text(f"[run]\ndata_file = {data}\ninclude = *{target.name}\n", encoding="utf-8")
    junit = stem.with_suffix(".junit.xml")
    argv = [*pytest_argv(tree, tests), "--cov", f"--cov-config={rc}", "--cov-context=test", "--cov-report=",
            f"--junitxml={junit}"]
    argv.remove("-x")
    run = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{name}: the tests fail on the unmutated copy:\n{run.stdout[-2000:]}")
    from coverage import CoverageData

    cov = CoverageData(basename=str(data))
    cov.read()
    measured = [f for f in cov.measured_files() if os.path.realpath(f) == os.path.realpath(target)]
    reached: dict[int, set[str]] = {}
    for f in measured:
        for line, contexts in cov.contexts_by_lineno(f).items():
            reached.setdefault(line, set()).update(c.rpartition("|")[0] for c in contexts if "|" in c)
    source = target.read_text(encoding="utf-8")
    functions = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            body = set().union(*(reached.get(n, set()) for n in range(node.body[0].lineno, node.end_lineno + 1)))
            functions.append([start, node.end_lineno, sorted(body)])
    out = stem.with_suffix(".reach.json")
    out.write_text(json.dumps({"tree": str(tree), "file": str(target), "original": source, "tests": tests,
                               "functions": functions, "seconds": test_seconds(junit, tree)}), encoding="utf-8")
    return out


def test_seconds(junit: Path, tree: Path) -> dict[str, float]:
    """Each test's duration (node id -> seconds) from pytest's JUnit XML report of the coverage run; the
    report's classname (tests.test_x, or tests.test_x.TestClass) is split where it names a file."""
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        split = next((i for i in range(len(parts), 0, -1) if (tree / "/".join(parts[:i])).with_suffix(".py").is_file()),
                     len(parts))
        node = "::".join(["/".join(parts[:split]) + ".py", *parts[split:], case.get("name", "")])
        out[node] = float(case.get("time") or 0)
    return out


def changed_lines(original: str, mutated: str) -> set[int]:
    """The lines (1-based, of the original) that a mutant changed."""
    a, b = original.splitlines(), mutated.splitlines()
    out = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return out


def tests_for_mutant(reach: dict, mutated: str) -> list[str]:
    """The tests that reach the functions holding a mutant's changed lines (innermost function of each),
    quickest first (a killed mutant stops at its first failing test); the module's whole test list when a
    line lies outside every function."""
    chosen: set[str] = set()
    for line in changed_lines(reach["original"], mutated):
        spans = [f for f in reach["functions"] if f[0] <= line <= f[1]]
        if not spans:
            return list(reach["tests"])
        chosen.update(min(spans, key=lambda f: f[1] - f[0])[2])
    seconds = reach.get("seconds", {})
    return sorted(chosen, key=lambda t: (seconds.get(t, float("inf")), t))


def run_mutant(reach_file: Path) -> int:
    """cosmic-ray's test command: run the tests that reach the mutated function (0 when none does)."""
    reach = json.loads(reach_file.read_text(encoding="utf-8"))
    tests = tests_for_mutant(reach, Path(reach["file"]).read_text(encoding="utf-8"))
    if not tests:
        print("no test reaches the mutated lines")
        return 0
    tree = Path(reach["tree"])
    return subprocess.run(pytest_argv(tree, tests), cwd=tree).returncode


def changed_lines_since(rev: str, path: str, root: Path = ROOT) -> set[int]:
    """The lines of the working tree's file that are new or changed since a git revision."""
    diff = subprocess.run(["git", "diff", "-U0", rev, "--", path], cwd=root, capture_output=True, text=True)
    if diff.returncode != 0:
        raise SystemExit(f"git diff {rev} -- {path}: {diff.stderr.strip()}")
    lines: set[int] = set()
    for line in diff.stdout.splitlines():
        if line.startswith("@@"):
            added = line.split()[2]  # +start[,count]
            start, _, count = added[1:].partition(",")
            lines.update(range(int(start), int(start) + int(count or 1)))
    return lines


def skip_unchanged(session: Path, lines: set[int], rev: str) -> int:
    """Mark the mutants that touch none of ``lines`` as skipped (cosmic-ray then leaves them, as it does
    the filtered operators); returns how many are left to run."""
    with sqlite3.connect(session) as db:
        specs = db.execute("SELECT job_id, start_pos_row, end_pos_row FROM mutation_specs WHERE job_id NOT IN "
                           "(SELECT job_id FROM work_results)").fetchall()
        outside = [(job,) for job, first, last in specs if not lines & set(range(first, last + 1))]
        db.executemany("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                       f"VALUES ('SKIPPED', 'unchanged since {rev}', NULL, NULL, ?)", outside)
    return len(specs) - len(outside)


def resumable(name: str, tree: Path, work: Path) -> bool:
    """Whether a stopped run of the module in this work folder can go on: its session exists and the
    module's source is still the one its mutants were planned on (else their positions would be wrong)."""
    session = session_path(work, name)
    reach = session.with_suffix(".reach.json")
    if not session.exists():
        return False
    if not reach.exists():
        raise SystemExit(f"{name}: {session} has no {reach.name} (an --all-tests run); start a new --work folder")
    if json.loads(reach.read_text(encoding="utf-8"))["original"] != (tree / MODULES[name][0]).read_text(encoding="utf-8"):
        raise SystemExit(f"{name}: {MODULES[name][0]} changed since {session} was planned; start a new --work folder")
    return True


def new_session(name: str, tree: Path, work: Path, timeout: float, all_tests: bool, since: str | None,
                argv: list[str], env: dict) -> None:
    """A new cosmic-ray session for the module: its config (the test command: every test, or the tests
    reaching each mutant), the mutants, the excluded operators filtered and, with ``since``, the
    mutants on unchanged lines skipped."""
    path = MODULES[name][0]
    session = session_path(work, name)
    config = session.with_suffix(".toml")
    if all_tests:
        command = shlex.join(argv)
        # the unmutated copy must pass, or every mutant would count as killed
        baseline = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True)
        if baseline.returncode != 0:
            raise SystemExit(f"{name}: the tests fail on the unmutated copy:\n{baseline.stdout[-2000:]}")
    else:
        reach = reach_map(name, tree, work)
        command = shlex.join([sys.executable, str(tree / "tests" / "mutation.py"), "--run-mutant", str(reach)])
    excluded = ", ".join(json.dumps(x) for x in EXCLUDED_OPERATORS)
    config.write_text(f'[cosmic-ray]\nmodule-path = "{tree / path}"\ntimeout = {timeout}\nexcluded-modules = []\n'
                      f"test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = \"local\"\n\n"
                      f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n")
    subprocess.run(["cosmic-ray", "init", str(config), str(session)], check=True, env=env, cwd=tree)
    subprocess.run(["cr-filter-operators", str(session), str(config)], check=True, env=env, cwd=tree)
    if since:
        left = skip_unchanged(session, changed_lines_since(since, path), since)
        print(f"{name}: {left} mutant(s) on lines changed since {since}", flush=True)


def run_module(name: str, tree: Path, work: Path, timeout: float, all_tests: bool = False,
               confirm_survivors: bool = True, resume: bool = False, since: str | None = None) -> list[dict]:
    path, tests = MODULES[name]
    session = session_path(work, name)
    config = session.with_suffix(".toml")
    argv = pytest_argv(tree, tests)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if resume and resumable(name, tree, work):
        # a stopped coverage-mapped run: today's tests are mapped again (a renamed test must not count as
        # a failure), and cosmic-ray exec below runs only the mutants without a result yet
        reach_map(name, tree, work)
        all_tests = False
    else:
        new_session(name, tree, work, timeout, all_tests, since, argv, env)
    subprocess.run(["cosmic-ray", "exec", str(config), str(session)], check=True, env=env, cwd=tree)
    if not all_tests and confirm_survivors:
        confirm(session, tree, path, argv, env)
    return survivors(session)


def plant(source: str, survivor: dict) -> str | None:
    """The module's source with a recorded mutant put back (at its own line when that line still reads
    the same, else at the first line that does); None when no line reads as the mutant's original."""
    old, new = _lines(survivor["diff"])
    lines = source.splitlines(keepends=True)
    row = survivor["line"] - 1
    candidates = [row] if 0 <= row < len(lines) and lines[row].rstrip("\n") == old else \
        [i for i, ln in enumerate(lines) if ln.rstrip("\n") == old][:1]
    if not old or not candidates:
        return None
    i = candidates[0]
    return "".join([*lines[:i], new + "\n", *lines[i + 1:]])


def caught_by(target: Path, mutated: str, runs: list[list[str]], env: dict, tree: Path) -> bool:
    """Whether one of the test runs (argv lists, tried in turn) fails with the mutant written into target;
    the file is restored either way."""
    source = target.read_text(encoding="utf-8")
    target.write_text(mutated, encoding="utf-8")
    try:
        return any(subprocess.run(argv, env=env, cwd=tree, capture_output=True).returncode != 0 for argv in runs)
    finally:
        target.write_text(source, encoding="utf-8")


def confirm(session: Path, tree: Path, path: str, argv: list[str], env: dict) -> None:
    """Plant each survivor of a narrowed run again and run all the module's tests; a mutant they kill is
    recorded as killed (with the note 'killed by the full test list')."""
    target = tree / path
    source = target.read_text(encoding="utf-8")
    for s in survivors(session):
        mutated = plant(source, s)
        if mutated is not None and caught_by(target, mutated, [argv], env, tree):
            with sqlite3.connect(session) as db:
                db.execute("UPDATE work_results SET test_outcome = 'KILLED', output = 'killed by the full test list' "
                           "WHERE job_id = ?", (s["job_id"],))


EQUIVALENT = Path(__file__).with_name("mutation_equivalent.txt")


def _squeeze(line: str) -> str:
    return "".join(line.split())


def equivalent_entries(path: Path = EQUIVALENT) -> list[dict[str, str]]:
    """The entries of the equivalents list: blocks of 'module:', '-', '+' and 'why:' lines (comment lines
    start with '#'); a block that lacks one of the four is refused, naming its first line."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields = {}
        for line in block.strip().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            fields[key.rstrip(":")] = value.strip()
        if not fields:
            continue
        if not {"module", "-", "+", "why"} <= set(fields):
            raise SystemExit(f"{path}: the entry {block.strip().splitlines()[0]!r} needs module:, -, + and why: lines")
        entries.append(fields)
    return entries


def equivalents(path: Path = EQUIVALENT) -> dict[tuple[str, str, str], str]:
    """(module, original line, mutated line) -> why; lines compared without whitespace."""
    return {(e["module"], _squeeze(e["-"]), _squeeze(e["+"])): e["why"] for e in equivalent_entries(path)}


def explained(survivor: dict, module: str, known: dict) -> str | None:
    """Why a surviving mutant is equivalent, if tests/mutation_equivalent.txt says so."""
    old, new = _lines(survivor["diff"])
    return known.get((module, _squeeze(old), _squeeze(new)))


def survivors(session: Path) -> list[dict]:
    """The mutants the tests did not kill (test outcome 'survived'), with their diffs."""
    out = []
    with sqlite3.connect(session) as db:
        rows = db.execute("SELECT m.job_id, m.module_path, m.operator_name, m.occurrence, m.start_pos_row, r.diff "
                          "FROM mutation_specs m JOIN work_results r ON m.job_id = r.job_id "
                          "WHERE r.test_outcome = 'SURVIVED'").fetchall()
    for job, module, operator, occurrence, line, diff in rows:
        out.append({"job_id": job, "module": module, "operator": operator, "occurrence": occurrence, "line": line,
                    "diff": diff})
    return out


def _lines(diff: str) -> tuple[str, str]:
    lines = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++"))]
    return (next((ln[1:] for ln in lines if ln.startswith("-")), ""),
            next((ln[1:] for ln in lines if ln.startswith("+")), ""))


def recheck(earlier: Path, names: list[str], work: Path) -> int:
    """Plant each surviving mutant of an earlier run (found by its line's content) in a scratch copy of
    today's tree and run the tests that reach its function, then, if it survives them, all the module's
    tests: what survives still and is not explained is printed."""
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
        reach = json.loads(reach_map(name, tree, work).read_text(encoding="utf-8"))
        counts = {"killed": 0, "explained": 0, "gone": 0, "surviving": 0}
        for s in survivors(session):
            old, new = _lines(s["diff"])
            if explained(s, path, known) is not None:
                counts["explained"] += 1
                continue
            mutated = plant(source, s)
            if mutated is None:
                counts["gone"] += 1  # the line was rewritten since
                continue
            narrow = tests_for_mutant(reach, mutated)
            # the tests that reach the mutant first (fast), then, if it survives them, all the module's
            runs = ([pytest_argv(tree, narrow)] if narrow else []) + [pytest_argv(tree, tests)]
            caught = caught_by(target, mutated, runs, env, tree)
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
    parser.add_argument("--all-tests", action="store_true",
                        help="run every mutant against all the module's tests (no coverage map)")
    parser.add_argument("--no-confirm", action="store_true",
                        help="count the survivors of the narrowed runs as they are (a --recheck later runs "
                             "each against all the module's tests)")
    parser.add_argument("--resume", action="store_true",
                        help="go on with a stopped run in --work: its tree is refreshed from this one (which also "
                             "undoes a mutant left in place by the stop) and only mutants without a result run")
    parser.add_argument("--changed-since", metavar="REV",
                        help="mutate only the lines changed since a git revision (the tree's own, uncommitted "
                             "changes included): after a module's full run, its new code alone")
    parser.add_argument("--run-mutant", type=Path, metavar="REACH", help=argparse.SUPPRESS)
    parser.add_argument("--recheck", type=Path, metavar="WORK",
                        help="re-run the survivors of an earlier run (its --work folder) against today's tests")
    args = parser.parse_args()
    if args.run_mutant:
        raise SystemExit(run_mutant(args.run_mutant))
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
    if args.resume and not args.work:
        parser.error("--resume needs the --work folder of the stopped run")
    tree = scratch_copy(work)
    report = work / "survivors.txt"
    total, known = [], equivalents()
    for name in args.modules or list(MODULES):
        found = run_module(name, tree, work, args.timeout, args.all_tests, not args.no_confirm, args.resume,
                           args.changed_since)
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
