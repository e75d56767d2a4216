"""Manifests: where each part of a dataset comes from and where it goes.

    {"dataset": "circo",
     "files": [{"url": "...", "sha256": "hex" or null, "size": bytes or null,
                "archive": "zip" | "tar" | null, "unpacked_size": bytes or null,
                "to": "folder inside the dataset folder",
                "strip": "optional prefix removed from archive member paths",
                "spaces": {"folders": "", "files": "_"} (optional: what replaces a space in the
                          extracted folder and file names, as a dataset's set-up script renames them)}, ...],
     "manual": ["text of a manual step", ...]}

More keys are allowed (``name``, ``note``: shown to the user). A file that is not an archive keeps its
URL's file name inside ``to``; an archive's members keep their paths (less ``strip``). An archive
expands to at most ``unpacked_size`` bytes where given, else to at most MAX_RATIO times its own size
(a zip bomb is refused from its member table before anything is extracted, and while writing).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from cirbench.errors import DataError, UsageError

ARCHIVES = ("zip", "tar")


@dataclass(frozen=True)
class Part:
    url: str
    to: str = "."
    sha256: str | None = None
    size: int | None = None
    archive: str | None = None
    strip: str = ""
    name: str = ""
    note: str = ""
    unpacked_size: int | None = None  # an archive's files, all together (bounds the extraction)
    spaces: tuple[str, str] | None = None  # (in folder names, in file names) a space is replaced by

    @property
    def file_name(self) -> str:
        """The URL's file name (what a plain file is saved as inside ``to``)."""
        return posixpath.basename(unquote(urlsplit(self.url).path)) or "download"

    @property
    def label(self) -> str:
        return self.name or self.file_name


@dataclass
class Manifest:
    dataset: str
    parts: list[Part]
    manual: list[str] = field(default_factory=list)
    source: str = ""  # where the manifest was read from


def _safe_folder(value, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: 'to' must be a folder inside the dataset folder (a text), not {value!r}")
    path = PurePosixPath(value or ".")
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise DataError(f"{where}: 'to' must be a folder inside the dataset folder, not {value!r}")
    return str(path)


def _byte_count(entry: dict, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise DataError(f"{where}: {key} must be a number of bytes or null, not {value!r}")
    return value


def _spaces(value, where: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) <= {"folders", "files"}
            and all(isinstance(v, str) and v in ("", "_", "-") for v in value.values())):
        raise DataError(f"{where}: spaces must be {{\"folders\": R, \"files\": R}} with R one of \"\", \"_\", \"-\"")
    return value.get("folders", " "), value.get("files", " ")


def parse(raw, source: str) -> Manifest:
    """A Manifest from parsed JSON; a DataError naming the manifest and the entry for anything wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("dataset"), str) or not isinstance(raw.get("files"), list):
        raise DataError(f"{source}: a manifest is {{\"dataset\": NAME, \"files\": [...], \"manual\": [...]}}")
    parts = []
    for i, entry in enumerate(raw["files"]):
        where = f"{source}: files[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise DataError(f"{where}: each file needs a \"url\"")
        scheme = urlsplit(entry["url"]).scheme
        if scheme not in ("http", "https", "file"):
            raise DataError(f"{where}: unsupported URL {entry['url']!r} (http, https or file)")
        sha = entry.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
            raise DataError(f"{where}: sha256 must be 64 hex digits or null, not {sha!r}")
        size = _byte_count(entry, "size", where)
        unpacked = _byte_count(entry, "unpacked_size", where)
        archive = entry.get("archive")
        if archive not in (None, *ARCHIVES):
            raise DataError(f"{where}: archive must be zip, tar or null, not {archive!r}")
        strip = entry.get("strip") or ""
        if not isinstance(strip, str):
            raise DataError(f"{where}: strip must be a path prefix")
        part = Part(url=entry["url"], to=_safe_folder(entry.get("to", "."), where),
                    sha256=sha.lower() if sha else None, size=size, archive=archive, strip=strip.strip("/"),
                    name=str(entry.get("name", "")), note=str(entry.get("note", "")), unpacked_size=unpacked,
                    spaces=_spaces(entry.get("spaces"), where))
        name = part.file_name
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise DataError(f"{where}: the URL {entry['url']!r} names no file cirbench can save ({name!r})")
        parts.append(part)
    manual = raw.get("manual", [])
    if not isinstance(manual, list) or not all(isinstance(m, str) for m in manual):
        raise DataError(f"{source}: \"manual\" must be a list of texts")
    return Manifest(raw["dataset"], parts, list(manual), source)


def plain_name(name: str) -> bool:
    """A dataset name that is one folder inside the data root (no separators, not . or .., not absolute)."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9_][\w.+-]*", name)) and name not in (".", "..")


def read(path: Path) -> Manifest:
    path = Path(path).expanduser()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--manifest {path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return parse(raw, str(path))


def shipped_names() -> list[str]:
    from importlib import resources

    folder = resources.files("cirbench").joinpath("resources/manifests")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def shipped(name: str) -> Manifest:
    """The manifest cirbench ships for a dataset."""
    from importlib import resources

    names = shipped_names()
    if name not in names:
        raise UsageError(f"no manifest for {name!r}: `cirbench data get` knows {', '.join(names)} "
                         "(or pass --manifest FILE)")
    item = resources.files("cirbench").joinpath(f"resources/manifests/{name}.json")
    return parse(json.loads(item.read_text(encoding="utf-8")), f"cirbench/resources/manifests/{name}.json")


def mirrored(url: str, mirror: str | None) -> str:
    """``https://HOST/PATH`` as ``MIRROR/HOST/PATH`` (a lab mirror or an offline copy)."""
    if not mirror:
        return url
    parts = urlsplit(url)
    rest = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
    return mirror.rstrip("/") + "/" + rest
