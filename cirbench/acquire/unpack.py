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


def _member_path(name: str, strip: str, archive: Path, spaces: tuple[str, str] | None = None) -> PurePosixPath | None:
    """A member's path inside the destination (None: outside ``strip``, or the prefix folder itself);
    ``spaces``: what replaces a space in its folder names and in its file name (as a dataset's own set-up
    script renames them, e.g. FREEDOM's set_dataset.py for LTLL and NICO++)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: member {name!r} would land outside the dataset folder")
    if strip:
        prefix = PurePosixPath(strip)
        if path == prefix or prefix not in path.parents:
            return None
        path = path.relative_to(prefix)
    if spaces is not None and path.parts:
        folders, file = spaces
        path = PurePosixPath(*(p.replace(" ", folders) for p in path.parts[:-1]), path.parts[-1].replace(" ", file))
    return path if path.parts else None


MAX_RATIO = 100  # an archive without a declared unpacked size expands to at most this times its size


class _Budget:
    """Bytes an extraction may still write; exceeded, it stops with a DataError naming the archive."""

    def __init__(self, archive: Path, limit: int, why: str):
        self.archive, self.left, self.limit, self.why = archive, limit, limit, why

    def check_table(self, total: int, folder: Path) -> None:
        if total > self.limit:
            raise DataError(f"{self.archive}: its members add up to {total} bytes, more than {self.why} "
                            f"({self.limit} bytes); nothing was extracted")
        free = shutil.disk_usage(folder).free
        if total > free:
            raise DataError(f"{self.archive}: its members need {total} bytes on {folder} and {free} are free; "
                            "nothing was extracted")

    def copy(self, src, dst, name: str) -> None:
        for block in iter(lambda: src.read(1 << 20), b""):
            self.left -= len(block)
            if self.left < 0:
                raise DataError(f"{self.archive}: member {name!r} expands past {self.why} ({self.limit} bytes); "
                                "nothing was extracted")
            dst.write(block)


def _once(names: list[str], archive: Path) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{archive}: member {name!r} appears twice in the archive; cirbench does not pick one "
                            "of the two, nothing was extracted")
        seen.add(name)


def _extract_zip(archive: Path, tmp: Path, strip: str, task, budget: _Budget, spaces=None) -> list[str]:
    out = []
    with zipfile.ZipFile(archive) as zf:
        infos = [(info, _member_path(info.filename, strip, archive, spaces)) for info in zf.infolist()]
        infos = [(info, rel) for info, rel in infos if rel is not None and not info.is_dir()]
        _once([str(rel) for _, rel in infos], archive)
        budget.check_table(sum(info.file_size for info, _ in infos), tmp)
        for info, rel in infos:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:  # a CRC mismatch raises here
                budget.copy(src, dst, info.filename)
            out.append(str(rel))
            if task:
                task.advance(1)
    return out


def _extract_tar(archive: Path, tmp: Path, strip: str, task, budget: _Budget, spaces=None) -> list[str]:
    out = []
    with tarfile.open(archive, "r:*") as tf:
        members = [(m, _member_path(m.name, strip, archive, spaces)) for m in tf.getmembers()]  # the table, read first
        members = [(m, rel) for m, rel in members if rel is not None and not m.isdir()]
        for member, _rel in members:
            if not member.isfile():
                raise DataError(f"{archive}: member {member.name!r} is a link or a device, which cirbench does not "
                                "extract")
        _once([str(rel) for _, rel in members], archive)
        budget.check_table(sum(m.size for m, _ in members), tmp)
        for member, rel in members:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            with src, open(target, "wb") as dst:
                budget.copy(src, dst, member.name)
            if target.stat().st_size != member.size:
                raise DataError(f"{archive}: member {member.name!r} is truncated")
            out.append(str(rel))
            if task:
                task.advance(1)
    return out


def extract(archive: Path, kind: str, dest: Path, strip: str = "", progress=None, label: str = "",
            unpacked_size: int | None = None, spaces: tuple[str, str] | None = None) -> tuple[list[str], int]:
    """Extract ``archive`` (zip or tar) into ``dest``, writing at most ``unpacked_size`` bytes (else
    MAX_RATIO times the archive's size); returns (member paths relative to ``dest``, number of files
    kept because the user already had them)."""
    if unpacked_size is not None:
        budget = _Budget(archive, unpacked_size, "the unpacked size the manifest says")
    else:
        budget = _Budget(archive, MAX_RATIO * archive.stat().st_size,
                         f"{MAX_RATIO} times the archive's size (a manifest may declare unpacked_size)")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".cirbench-extract-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    task = progress.task(f"extract {label or archive.name}", total=None) if progress else None
    try:
        try:
            members = (_extract_zip if kind == "zip" else _extract_tar)(archive, tmp, strip, task, budget, spaces)
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
