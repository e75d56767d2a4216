"""What `cirbench data get` fetched, kept in the dataset folder (``.cirbench-sources.json``): per
manifest entry the URL it came from, the sha256 and size it had, and the files it put there, so that a
rerun knows what is done and `cirbench data check` can say when a file changed or went missing later."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cirbench.errors import DataError

NAME = ".cirbench-sources.json"


def read(folder: Path) -> dict:
    path = Path(folder) / NAME
    if not path.is_file():
        return {"parts": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it and run `cirbench data get` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("parts"), dict):
        raise DataError(f"{path}: not a cirbench sources record; delete it and run `cirbench data get` again")
    return data


def write(folder: Path, data: dict) -> None:
    from cirbench.util.fsutil import atomic_write

    atomic_write(Path(folder) / NAME, lambda fh: fh.write(json.dumps(data, indent=1)), binary=False)


def entry(url: str, fetched: str, sha256: str, size: int, files: list[str], archive: str | None) -> dict:
    return {"url": url, "fetched_from": fetched, "sha256": sha256, "size": size, "archive": archive,
            "files": files, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def problems(folder: Path) -> list[str]:
    """Files the record lists that are missing, and downloaded files (not archives) whose sha256 changed."""
    from cirbench.acquire.transfer import sha256_of

    folder = Path(folder)
    if not (folder / NAME).is_file():
        return []
    out = []
    for url, part in read(folder)["parts"].items():
        files = part.get("files", [])
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            out.append(f"{len(missing)} file(s) fetched from {url} are missing (first: {folder / missing[0]}); "
                       "`cirbench data get` fetches them again")
        elif not part.get("archive") and files and sha256_of(folder / files[0]) != part.get("sha256"):
            out.append(f"{folder / files[0]} changed since it was fetched from {url} (sha256 differs from "
                       f"{part.get('sha256')})")
    return out
