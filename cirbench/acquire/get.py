"""`cirbench data get NAME`: every part of a manifest that is not there yet is downloaded (resuming an
interrupted transfer), verified, extracted or moved into the dataset folder, and recorded; the manual
steps (request forms, logins) are listed. A rerun on a complete dataset transfers nothing."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cirbench.acquire import record, transfer, unpack
from cirbench.acquire.manifests import Manifest, Part, mirrored
from cirbench.errors import DataError

DOWNLOADS = ".cirbench-downloads"


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)  # what happened, one line per part
    manual: list[str] = field(default_factory=list)  # what the user still has to do
    transferred: int = 0  # parts downloaded by this call
    total_line: str = ""  # a dry run: what the parts to fetch add up to


def _size_text(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _outputs_present(folder: Path, done: dict | None) -> bool:
    return bool(done) and all((folder / f).is_file() for f in done.get("files", []))


def _already_had(folder: Path, part: Part) -> tuple[str, str] | None:
    """A plain file the user already has at the part's place: (relative path, its sha256) when it may be
    kept (it matches the manifest's sha256, or the manifest gives none)."""
    rel = str(Path(part.to) / part.file_name)
    path = folder / rel
    if part.archive or not path.is_file():
        return None
    digest = transfer.sha256_of(path)
    if part.sha256 and digest != part.sha256:
        raise DataError(f"{path} is already there and differs from {part.url} (sha256 {digest}, the manifest says "
                        f"{part.sha256}); move it away to fetch the official file, or keep it and skip this step")
    return rel, digest


def _check_space(folder: Path, part: Part, url: str, size: int | None) -> None:
    if size is None:
        return
    need = size + ((part.unpacked_size or size) if part.archive else 0)  # an archive and its extracted files
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    if need > free:
        raise DataError(f"{url} needs about {_size_text(need)} on {folder} and {_size_text(free)} is free")


def get(manifest: Manifest, folder: Path, mirror: str | None = None, dry_run: bool = False, progress=None
        ) -> Outcome:
    folder = Path(folder).expanduser()
    out = Outcome(manual=list(manifest.manual))
    state = record.read(folder) if folder.is_dir() else {"parts": {}}
    state.setdefault("dataset", manifest.dataset)
    pending: list[Part] = []  # a dry run: the parts it would fetch
    for part in manifest.parts:
        url = mirrored(part.url, mirror)
        done = state["parts"].get(part.url)
        if _outputs_present(folder, done):
            out.lines.append(f"{part.label}: already there ({len(done['files'])} file(s))")
            continue
        where = folder / part.to
        if dry_run:
            pending.append(part)
            what = f"{part.archive} archive, extracted into" if part.archive else "saved in"
            out.lines.append(f"{part.label}: would fetch {url} ({_size_text(part.size)}), {what} {where}")
            continue
        had = _already_had(folder, part)
        if had is not None:
            rel, digest = had
            state["parts"][part.url] = record.entry(part.url, "already in the dataset folder", digest,
                                                    (folder / rel).stat().st_size, [rel], None)
            record.write(folder, state)
            out.lines.append(f"{part.label}: already there (kept {folder / rel})")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        size = part.size if part.size is not None else transfer.content_length(url)
        _check_space(folder, part, url, size)
        partial = folder / DOWNLOADS / (part.file_name + ".part")
        path, digest = transfer.download(url, partial, part.size, part.sha256, progress, part.label)
        got = path.stat().st_size
        if part.archive:
            try:
                members, kept = unpack.extract(path, part.archive, where, part.strip, progress, part.label,
                                               part.unpacked_size, part.spaces)
            except DataError as exc:
                path.unlink(missing_ok=True)  # a broken archive is fetched again next time, not resumed
                raise DataError(f"{url}: {exc}") from None
            files = [str(Path(part.to) / m) for m in members]
            path.unlink()
            note = f", {kept} already there and kept" if kept else ""
            out.lines.append(f"{part.label}: {_size_text(got)} fetched, {len(files)} file(s) extracted into "
                             f"{where}{note}")
        else:
            where.mkdir(parents=True, exist_ok=True)
            path.replace(where / part.file_name)
            files = [str(Path(part.to) / part.file_name)]
            out.lines.append(f"{part.label}: {_size_text(got)} fetched into {where / part.file_name}")
        state["parts"][part.url] = record.entry(part.url, url, digest, got, files, part.archive)
        record.write(folder, state)
        out.transferred += 1
    if dry_run:
        known = sum(p.size for p in pending if p.size is not None)
        unknown = sum(p.size is None for p in pending)
        out.total_line = (f"total: {_size_text(known)} in {len(pending) - unknown} part(s) of known size"
                          + (f", and {unknown} part(s) whose size the manifest does not give" if unknown else ""))
        return out
    downloads = folder / DOWNLOADS
    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()
    return out


def from_hub(repo_id: str, folder: Path, progress=None) -> list[str]:
    """Files of a Hugging Face dataset repository laid out as the official folders, copied into the
    dataset folder where the user has no file yet (images a dead link no longer serves)."""
    from cirbench.errors import MissingResourceError
    from cirbench.util.hub import cache_place, hub_offline

    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingResourceError('--from-hub needs huggingface_hub: pip install -e ".[llm]"') from None
    offline = hub_offline()
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=offline))
    except Exception as exc:  # the hub's own errors: one line naming the repository and the cache
        why = " (offline: HF_HUB_OFFLINE is set or the hub cannot be reached)" if offline else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise MissingResourceError(f"cannot get the dataset repository {repo_id!r}{why}: {first} "
                                   f"[looked in the local cache {cache_place()}]") from None
    folder = Path(folder).expanduser()
    copied = kept = 0
    for src in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = src.relative_to(snapshot)
        if rel.parts[0].startswith(".") or rel.name in ("README.md", ".gitattributes"):
            continue
        target = folder / rel
        if target.exists():
            kept += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src.resolve(), target)
        copied += 1
    return [f"{repo_id}: {copied} file(s) copied into {folder}" + (f", {kept} already there and kept" if kept else "")]
