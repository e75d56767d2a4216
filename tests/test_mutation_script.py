"""The mutation script's own bookkeeping (tests/mutation.py): which tests a mutant runs, and how a
recorded survivor is planted again. A wrong choice here would count mutants as surviving (or killed)
for the wrong reason, so the cases are the ones where a naive choice goes wrong."""

import sys

import pytest

import mutation as M

SOURCE = """LIMIT = 3


def outer(x):
    def inner(y):
        return y + 1
    return inner(x) * 2


def other(x):
    return x - 1
"""
REACH = {"original": SOURCE, "tests": ["tests/test_all.py"],
         # [first line, last line, tests reaching the body]: inner lies inside outer
         "functions": [[4, 7, ["t_outer"]], [5, 6, ["t_inner"]], [10, 11, ["t_other"]]]}


def test_a_mutant_runs_the_tests_of_its_innermost_function_and_all_of_them_outside_every_function():
    assert M.tests_for_mutant(REACH, SOURCE.replace("y + 1", "y - 1")) == ["t_inner"]
    assert M.tests_for_mutant(REACH, SOURCE.replace("* 2", "* 3")) == ["t_outer"]
    assert M.tests_for_mutant(REACH, SOURCE.replace("y + 1", "y - 1").replace("x - 1", "x + 1")) == [
        "t_inner", "t_other"]
    # a module constant is read wherever: every test of the module
    assert M.tests_for_mutant(REACH, SOURCE.replace("LIMIT = 3", "LIMIT = 4")) == ["tests/test_all.py"]
    assert M.tests_for_mutant({**REACH, "functions": [[10, 11, []]]}, SOURCE.replace("x - 1", "x + 1")) == []


def test_changed_lines_are_numbered_in_the_original():
    assert M.changed_lines(SOURCE, SOURCE.replace("x - 1", "x + 1")) == {11}
    assert M.changed_lines(SOURCE, SOURCE) == set()


def test_a_survivor_is_planted_at_its_own_line_when_the_same_line_occurs_twice():
    source = "a = 1\nb = x + 1\nc = 2\nb = x + 1\n"
    diff = "--- mutation diff ---\n--- a\n+++ b\n@@ -4 +4 @@\n-b = x + 1\n+b = x - 1\n"
    assert M.plant(source, {"diff": diff, "line": 4}) == "a = 1\nb = x + 1\nc = 2\nb = x - 1\n"
    # moved since the run: the first line that still reads the same
    assert M.plant("b = x + 1\n", {"diff": diff, "line": 4}) == "b = x - 1\n"
    assert M.plant("b = y + 1\n", {"diff": diff, "line": 1}) is None


def test_a_planted_mutant_is_caught_by_any_run_in_turn_and_the_file_restored(tmp_path):
    target = tmp_path / "m.py"
    target.write_text("good\n")
    fails_on_bad = [sys.executable, "-c", f"import sys; sys.exit(open({str(target)!r}).read() == 'bad\\n')"]
    passes = [sys.executable, "-c", "pass"]
    assert M.caught_by(target, "bad\n", [passes, fails_on_bad], {}, tmp_path)
    assert not M.caught_by(target, "bad\n", [passes], {}, tmp_path)
    assert not M.caught_by(target, "fine\n", [fails_on_bad], {}, tmp_path)
    assert target.read_text() == "good\n"


def test_a_mutant_runs_the_quickest_reaching_tests_first(tmp_path):
    # the coverage run's JUnit report gives each test's seconds; a killed mutant stops at its first
    # failing test, so the reaching tests run quickest first (unknown ones last, ties by name)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_a" name="test_slow[1]" time="9.5"/>'
        '<testcase classname="tests.test_a.TestGroup" name="test_quick" time="0.25"/>'
        '</testsuite></testsuites>')
    seconds = M.test_seconds(tmp_path / "junit.xml", tmp_path)
    assert seconds == {"tests/test_a.py::test_slow[1]": 9.5, "tests/test_a.py::TestGroup::test_quick": 0.25}
    reach = {**REACH, "functions": [[4, 7, ["tests/test_a.py::test_slow[1]", "t_unknown",
                                            "tests/test_a.py::TestGroup::test_quick"]]], "seconds": seconds}
    assert M.tests_for_mutant(reach, SOURCE.replace("* 2", "* 3")) == [
        "tests/test_a.py::TestGroup::test_quick", "tests/test_a.py::test_slow[1]", "t_unknown"]


def test_a_stopped_run_resumes_only_on_the_source_its_mutants_were_planned_on(tmp_path):
    # cosmic-ray records each mutant by position in the file: going on after the module changed would
    # plant mutants at the wrong places, so --resume refuses then, naming the module
    import json

    import pytest

    tree, work = tmp_path / "tree", tmp_path / "work"
    path = tree / M.MODULES["stats"][0]
    path.parent.mkdir(parents=True)
    path.write_text(SOURCE)
    work.mkdir()
    assert not M.resumable("stats", tree, work)  # no session: a fresh run
    M.session_path(work, "stats").write_bytes(b"")
    with pytest.raises(SystemExit, match="reach.json"):
        M.resumable("stats", tree, work)
    M.session_path(work, "stats").with_suffix(".reach.json").write_text(json.dumps({"original": SOURCE}))
    assert M.resumable("stats", tree, work)
    path.write_text(SOURCE.replace("LIMIT = 3", "LIMIT = 4"))
    with pytest.raises(SystemExit, match="stats.py changed since"):
        M.resumable("stats", tree, work)


def test_changed_since_keeps_the_mutants_touching_a_changed_line(tmp_path):
    # lines 2 and 5 edited, one line added at the end (6): a mutant spanning lines 3-5 touches one, a
    # mutant on line 4 none; a mutant already with a result (a filtered operator) is left as it is
    import sqlite3
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    module = tmp_path / "m.py"
    module.write_text("".join(f"line{i}\n" for i in range(1, 6)))
    git("init", "-q")
    git("add", "m.py")
    git("commit", "-qm", "first")
    module.write_text("line1\nLINE2\nline3\nline4\nLINE5\nline6\n")
    assert M.changed_lines_since("HEAD", "m.py", tmp_path) == {2, 5, 6}
    session = tmp_path / "s.sqlite"
    with sqlite3.connect(session) as db:
        db.execute("CREATE TABLE mutation_specs (job_id, start_pos_row, end_pos_row)")
        db.execute("CREATE TABLE work_results (worker_outcome, output, test_outcome, diff, job_id)")
        db.executemany("INSERT INTO mutation_specs VALUES (?, ?, ?)",
                       [("a", 3, 5), ("b", 4, 4), ("c", 6, 6), ("d", 1, 1), ("f", 2, 2)])
        db.execute("INSERT INTO work_results VALUES ('SKIPPED', 'Filtered operator', NULL, NULL, 'f')")
    assert M.skip_unchanged(session, {2, 5, 6}, "HEAD") == 2
    with sqlite3.connect(session) as db:
        skipped = dict(db.execute("SELECT job_id, output FROM work_results").fetchall())
    assert skipped == {"b": "unchanged since HEAD", "d": "unchanged since HEAD", "f": "Filtered operator"}


def test_every_equivalent_mutant_explains_a_line_the_code_still_has_and_only_once(tmp_path):
    """An entry whose original line was rewritten explains nothing any more (a later mutant of the same
    text would be waved through on a stale reason); a second entry for one mutant hides which reason
    holds; a block without its why explains nothing and is refused, not skipped."""
    entries = M.equivalent_entries()
    assert entries
    keys = [(e["module"], M._squeeze(e["-"]), M._squeeze(e["+"])) for e in entries]
    assert len(keys) == len(set(keys)), [k for k in keys if keys.count(k) > 1][:3]
    sources = {m: {M._squeeze(line) for line in (M.ROOT / m).read_text(encoding="utf-8").splitlines()}
               for m in {e["module"] for e in entries}}
    stale = [(m, old) for m, old, _ in keys if old not in sources[m]]
    assert not stale, stale
    bad = tmp_path / "equivalent.txt"
    bad.write_text("module: a.py\n- x = 1\n+ x = 2\nwhy: ok\n\nmodule: a.py\n- y = 1\n+ y = 2\n")
    with pytest.raises(SystemExit, match=r"'module: a.py' needs module:, -, \+ and why: lines"):
        M.equivalent_entries(bad)
