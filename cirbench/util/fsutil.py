"""Small file-system helpers used everywhere: atomic writes of files and folders, hashing, slugs,
writability checks and the cleaning of temporaries left by killed runs.

Every artefact cirbench writes (result files, feature shards, checkpoints, rendered worlds, prepared
queries, reports) goes through :func:`atomic_write` or :func:`atomic_dir`, so an interruption never
leaves a half-written file under its final name, and two runs building the same artefact at once
both succeed (the second finds the first's result and keeps it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from cirbench.errors import UsageError

TMP_SUFFIX = ".tmp"
STALE_AFTER_S = 15 * 60  # a temporary older than this belongs to a run that was killed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(directory: bool = False) -> int:
    """The mode a plain open() would give: 0666 (0777 for folders) less the umask (mkstemp uses 0600)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: Path, write: Callable, binary: bool = True, fsync: bool = True,
                 size: int | None = None) -> Path:
    """Write ``path`` through a temporary file in the same folder and a rename; ``write(fh)`` fills it.
    The file gets the umask's permissions (a shared results folder stays readable by the team). A full
    disk is a DiskFullError naming the file, the ``size`` it needed (where known) and the space free."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        _raise_if_full(exc, path, size)
        raise
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            _raise_if_full(exc, path, size)
        raise
    return path


def _raise_if_full(exc: OSError, path: Path, size: int | None) -> None:
    import errno

    from cirbench.errors import DiskFullError

    if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    need = f"needs about {size / 2**20:.1f} MiB, " if size is not None else ""
    raise DiskFullError(f"cannot write {path}: no space left on the device ({need}{free}); free some space or "
                        "point the folder elsewhere (--cache-dir, --results-dir)") from None


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def write_json(path: Path, obj, indent: int | None = 2) -> Path:
    def dump(fh):
        json.dump(obj, fh, indent=indent, default=str, ensure_ascii=False)
        fh.write("\n")

    return atomic_write(path, dump, binary=False)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place when the block ends.

    If another process put ``final`` in place meanwhile (two runs building the same artefact), its
    folder is kept and ours discarded: both were built from the same inputs. On an error nothing is
    left behind."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=TMP_SUFFIX))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory=True))
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # not the "someone else finished first" case
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder over an existing one (used when rebuilding on purpose)."""
    final = Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old{TMP_SUFFIX}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def clean_stale_temporaries(folder: Path, max_age_s: float = STALE_AFTER_S) -> int:
    """Remove temporaries (``.NAME.*.tmp`` files and folders) older than ``max_age_s`` in ``folder``
    (not below it): what a SIGKILL during a write leaves. Young ones may belong to a run in progress."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for entry in folder.iterdir():
        if not (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)):
            continue
        try:
            if now - entry.lstat().st_mtime < max_age_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        except OSError:
            pass
    return removed


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj) -> str:
    """A hash of a JSON-able object that does not depend on key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def slug(text: str, max_len: int = 64) -> str:
    """A file-name-safe form of ``text``: letters of any script, digits and ``._+-`` are kept. When
    anything had to change (or be cut), a short hash of the original is appended, so two different
    names never share a slug ("données" and "donn_es" stay apart)."""
    text = str(text)
    safe = re.sub(r"[^\w.+-]+", "_", text, flags=re.UNICODE).strip("_.") or "_"
    if safe == text and len(safe) <= max_len:
        return safe
    return f"{safe[:max_len]}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"


def ensure_writable(folder: Path, what: str, hint: str = "") -> Path:
    """Create ``folder`` if needed and prove it can be written, before any long work starts; a
    UsageError (exit 2) naming the path otherwise."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".cirbench-write-test.", suffix=TMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot write the {what} {folder}: {why}{'; ' + hint if hint else ''}") from None
    return folder


CACHE_TAG = "CACHEDIR.TAG"
_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This folder is a cache of cirbench (features, checkpoints, worlds); see `cirbench cache info`.\n"
             "# Backup tools that follow https://bford.info/cachedir/ skip it.\n")


def tag_cache(folder: Path) -> Path:
    """Mark a cache root as cirbench's (the Cache Directory Tagging convention): `cirbench cache clear`
    refuses a folder without it (or without feature folders cirbench wrote)."""
    tag = Path(folder) / CACHE_TAG
    if not tag.is_file():
        try:
            atomic_write(tag, lambda fh: fh.write(_TAG_TEXT.encode()), fsync=False)
        except OSError:
            pass  # a read-only cache still serves reads; its writes fail later with their own line
    return Path(folder)


def is_tagged_cache(folder: Path) -> bool:
    try:
        return "cirbench" in (Path(folder) / CACHE_TAG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
