"""Content keys of image files: a hash of the bytes, read once per file version.

The feature cache and the result cells are keyed by what an image *contains*, not by its name or
modification time (``cp -p`` and ``rsync -a`` replace pixels and keep size and mtime). Hashing every
file on every run would cost a full read of the dataset, so each file's hash is remembered together
with its full stat signature -- path, size, mtime, inode change time (ctime), inode and device. Any
write to a file changes its ctime (which no user-space tool can set back), so a file whose signature
is unchanged has unchanged bytes; any other file is hashed again. A dataset copied or moved elsewhere
is hashed once and then finds its features in the cache under the same content keys.

The memo is a small SQLite table under the cache folder, safe for concurrent runs.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from cirbench.protocol.images import Image_, ImageRef, path_of

HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(HASH_CHUNK):
            h.update(block)
    return h.hexdigest()


def _signature(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class ContentKeys:
    """``keys(images)`` -> one content key per image (None for a missing file)."""

    def __init__(self, cache_dir: Path | None):
        self.db_path = Path(cache_dir) / "content-keys.sqlite" if cache_dir else None
        self._memo: dict[str, tuple[tuple, str]] = {}
        self.hashed = 0  # files read this process (for tests and the benchmark)

    def _connect(self):
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db_path, timeout=60)
        con.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, "
                    "ctime INTEGER, ino INTEGER, dev INTEGER, digest TEXT)")
        return con

    def _load(self, paths: list[str]) -> None:
        if self.db_path is None or not self.db_path.exists():
            return
        wanted = [p for p in paths if p not in self._memo]
        if not wanted:
            return
        try:
            con = self._connect()
        except sqlite3.Error:
            return  # an unreadable memo only costs re-hashing
        try:
            for i in range(0, len(wanted), 900):
                chunk = wanted[i:i + 900]
                rows = con.execute(f"SELECT path, size, mtime, ctime, ino, dev, digest FROM digests WHERE path IN "
                                   f"({','.join('?' * len(chunk))})", chunk).fetchall()
                for path, *sig, digest in rows:
                    self._memo[path] = (tuple(sig), digest)
        except sqlite3.Error:
            pass
        finally:
            con.close()

    def _save(self, rows: list[tuple]) -> None:
        if self.db_path is None or not rows:
            return
        for attempt in range(5):
            try:
                con = self._connect()
                with con:
                    con.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                con.close()
                return
            except sqlite3.OperationalError:
                time.sleep(0.2 * (attempt + 1))
            except sqlite3.Error:
                return

    def digests(self, paths: list[Path], progress=None) -> list[str | None]:
        """Content digest of each file (None where the file is missing or unreadable)."""
        absolute = [os.path.abspath(p) for p in paths]
        self._load(list(dict.fromkeys(absolute)))
        out: list[str | None] = []
        fresh: list[tuple] = []
        todo = []
        for i, path in enumerate(absolute):
            try:
                sig = _signature(os.stat(path))
            except OSError:
                out.append(None)
                continue
            known = self._memo.get(path)
            if known is not None and known[0] == sig:
                out.append(known[1])
            else:
                out.append("")
                todo.append((i, path, sig))
        task = progress.task("hash new or changed files", total=len(todo)) if progress and len(todo) > 256 else None
        for i, path, sig in todo:
            try:
                digest = file_digest(Path(path))
            except OSError:
                out[i] = None
                continue
            self.hashed += 1
            self._memo[path] = (sig, digest)
            fresh.append((path, *sig, digest))
            out[i] = digest
            if task:
                task.advance(1)
        if task:
            task.done()
        self._save(fresh)
        return out

    def keys(self, images: list[Image_], progress=None) -> list[str | None]:
        """Feature-cache keys: the file's content digest, plus the image's operations (a crop of a file
        is another image)."""
        digests = self.digests([path_of(im) for im in images], progress)
        out = []
        for image, digest in zip(images, digests):
            if digest is None or not isinstance(image, ImageRef) or not image.ops:
                out.append(digest)
            else:
                out.append(hashlib.sha1(f"{digest}|{image.key()}".encode()).hexdigest())
        return out
