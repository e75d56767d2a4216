"""Downloads that survive interruption: bytes go to ``NAME.part``; a later call asks the server for the
rest (``Range: bytes=N-``) and appends it; the file is handed back only when its size and sha256 are
what the manifest says (where it says). A mismatch deletes the partial download (never a user's file)
and names the URL and what did not match."""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path

from cirbench.errors import DataError, RunError

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "cirbench-data-get"


def _request(url: str, start: int = 0, method: str = "GET"):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers, method=method), timeout=TIMEOUT)


def _first_line(value) -> str:
    return (str(value).strip().splitlines() or [type(value).__name__])[0]


def _http_error(url: str, exc: Exception) -> DataError:
    if isinstance(exc, urllib.error.HTTPError):
        if "redirect" in str(exc.msg).lower() and "loop" in str(exc.msg).lower():
            return DataError(f"{url}: the server's redirects go round in a loop (HTTP {exc.code})")
        return DataError(f"{url}: HTTP {exc.code} {_first_line(exc.reason)}")
    reason = getattr(exc, "reason", exc)
    return DataError(f"{url}: cannot be reached ({_first_line(reason)})")


def _content_range(response) -> tuple[int, int, int | None] | None:
    """(first byte, last byte, total or None) of a 206 answer's Content-Range, or None."""
    import re

    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (response.headers.get("Content-Range") or "").strip())
    if not found:
        return None
    first, last, total = found.groups()
    return int(first), int(last), None if total == "*" else int(total)


def _too_much(url: str, partial: Path, size: int, sent: str) -> DataError:
    partial.unlink(missing_ok=True)
    return DataError(f"{url}: the server {sent}, more than the {size} bytes the manifest says; stopped there and "
                     "deleted what was written, nothing was changed")


def content_length(url: str) -> int | None:
    """The size the server announces for ``url`` (a HEAD request), or None."""
    try:
        with _request(url, method="HEAD") as response:
            value = response.headers.get("Content-Length")
            return int(value) if value and value.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _rate(done: int, started: float, total: int | None) -> str:
    elapsed = max(1e-6, time.monotonic() - started)
    speed = done / elapsed
    left = f", {(total - done) / speed:.0f} s left" if total and speed > 0 and done < total else ""
    return f"{speed / 2**20:.1f} MiB/s{left}"


def download(url: str, partial: Path, size: int | None = None, sha256: str | None = None, progress=None,
             label: str = "") -> tuple[Path, str]:
    """Fetch ``url`` into ``partial`` (resuming what is there) and return (path, its sha256) once it is
    complete and verified."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.is_file() else 0
    h = hashlib.sha256()
    try:
        response = _request(url, have)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file may be whole
            response = None
        else:
            raise _http_error(url, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _http_error(url, exc) from None
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            resumed = have > 0 and status == 206
            if have and not resumed:  # the server sent the whole file again: start over
                have = 0
            if status == 206:
                span = _content_range(response)
                if span is None or span[0] != have or (not resumed and span[2] != span[1] + 1):
                    raise DataError(f"{url}: the server answered with part of the file ("
                                    f"{response.headers.get('Content-Range') or 'no Content-Range'}) where bytes "
                                    f"{have}- were asked for; nothing was written")
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else size
            if size is not None and total is not None and total > size:
                raise _too_much(url, partial, size, f"announces {total} bytes")
            if resumed:
                with open(partial, "rb") as fh:
                    for block in iter(lambda: fh.read(CHUNK), b""):
                        h.update(block)
            task = progress.task(f"download {label or partial.name}", total=total) if progress else None
            if task and have:
                task.advance(have, "resuming")
            started, done = time.monotonic(), 0
            # read1: what has arrived (up to CHUNK), so an interrupted slow transfer keeps every byte it got
            read = getattr(response, "read1", response.read)
            try:
                with open(partial, "ab" if resumed else "wb") as out:
                    for block in iter(lambda: read(CHUNK), b""):
                        if size is not None and have + done + len(block) > size:
                            out.close()
                            raise _too_much(url, partial, size, f"sent more than {size} bytes")
                        out.write(block)
                        out.flush()
                        h.update(block)
                        done += len(block)
                        if task:
                            task.advance(len(block), _rate(done, started, (total - have) if total else None))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                got = partial.stat().st_size if partial.is_file() else 0
                raise RunError(f"{url}: the transfer stopped after {got} bytes ({_first_line(exc)}); run the same "
                               "command again to resume it") from None
            finally:
                if task:
                    task.done()
            if length and length.isdigit() and done < int(length):
                raise RunError(f"{url}: the transfer stopped after {have + done} of {total} bytes; run the same "
                               "command again to resume it")
        digest = h.hexdigest()
    else:
        digest = sha256_of(partial)
    got = partial.stat().st_size
    problem = None
    if size is not None and got != size:
        problem = f"{got} bytes where the manifest says {size}"
    elif sha256 is not None and digest != sha256:
        problem = f"sha256 {digest} where the manifest says {sha256}"
    if problem:
        partial.unlink(missing_ok=True)
        raise DataError(f"{url}: the download does not verify ({problem}); it was deleted, nothing was changed")
    return partial, digest
