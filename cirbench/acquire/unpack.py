"""Archive extraction that leaves nothing half-done: members are extracted into a temporary folder
beside the destination (the same disk), every member path is checked (no absolute paths, no ``..``, no
links), and files are moved into place only when the whole archive has been read without error. A file
the user already has at a member's place is kept, never overwritten."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from cirbench.errors import DataError


def _member_path(name: str, strip: str, archive: Path) -> PurePosixPath | None:
    """A member's path inside the destination (None: outside ``strip``, or the prefix folder itself)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: member {name!r} would land outside the dataset folder")
    if strip:
        prefix = PurePosixPath(strip)
        if path == prefix or prefix not in path.parents:
            return None
        path = path.relative_to(prefix)
    return path if path.parts else None


def _extract_zip(archive: Path, tmp: Path, strip: str, task) -> list[str]:
    out = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _member_path(info.filename, strip, archive)
            if rel is None or info.is_dir():
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:  # a CRC mismatch raises here
                shutil.copyfileobj(src, dst, 1 << 20)
            out.append(str(rel))
            if task:
                task.advance(1)
    return out


def _extract_tar(archive: Path, tmp: Path, strip: str, task) -> list[str]:
    out = []
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            rel = _member_path(member.name, strip, archive)
            if rel is None or member.isdir():
                continue
            if not member.isfile():
                raise DataError(f"{archive}: member {member.name!r} is a link or a device, which cirbench does not "
                                "extract")
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            with src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if target.stat().st_size != member.size:
                raise DataError(f"{archive}: member {member.name!r} is truncated")
            out.append(str(rel))
            if task:
                task.advance(1)
    return out


def extract(archive: Path, kind: str, dest: Path, strip: str = "", progress=None, label: str = "") -> tuple[list[str], int]:
    """Extract ``archive`` (zip or tar) into ``dest``; returns (member paths relative to ``dest``, number
    of files kept because the user already had them)."""
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".cirbench-extract-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    task = progress.task(f"extract {label or archive.name}", total=None) if progress else None
    try:
        try:
            members = (_extract_zip if kind == "zip" else _extract_tar)(archive, tmp, strip, task)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise DataError(f"{archive.name} is not a complete {kind} archive ({type(exc).__name__}: {exc}); "
                            "nothing was extracted") from None
        if not members:
            raise DataError(f"{archive.name}: no files under {strip!r} in the archive" if strip else
                            f"{archive.name}: the archive holds no files")
        kept = 0
        for rel in members:
            target = dest / rel
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).replace(target)
        return members, kept
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if task:
            task.done()
