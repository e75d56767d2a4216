"""The Hugging Face hub as cirbench reaches it: whether it can be reached at all (a quick probe, so that
an offline machine fails at once instead of after minutes of retries), whether HF_HUB_OFFLINE is set,
and where its local cache is."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cirbench.errors import MissingResourceError


_LOCAL_ONLY: list[bool] = []


def offline_set() -> bool:
    """HF_HUB_OFFLINE asks for the local cache only (as does a :func:`local_only` block)."""
    return bool(_LOCAL_ONLY) or os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")


@contextlib.contextmanager
def local_only():
    """Models are read from the local cache or folders only in this block: nothing is downloaded
    (``--method all`` loads the models methods bring this way)."""
    import sys

    constants = getattr(sys.modules.get("huggingface_hub"), "constants", None)
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    _LOCAL_ONLY.append(True)
    if constants is not None:  # huggingface_hub reads HF_HUB_OFFLINE once, at import
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        _LOCAL_ONLY.pop()
        if constants is not None:
            constants.HF_HUB_OFFLINE = before


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can the Hugging Face hub be reached? (A quick probe, so that no network fails fast, not after retries.)"""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


def cache_place() -> str:
    """Where the hub's local cache is (for messages)."""
    return os.environ.get("HF_HUB_CACHE") or os.path.join(os.environ.get("HF_HOME") or "~/.cache/huggingface", "hub")


def hub_offline() -> bool:
    """Only the local cache can be read: HF_HUB_OFFLINE is set or the hub cannot be reached."""
    return offline_set() or not hub_reachable()


def _why_local(offline: bool) -> str:
    return ((" (only the local cache is read here)" if _LOCAL_ONLY else
             " (offline: HF_HUB_OFFLINE is set or the hub cannot be reached)") if offline else "")


def _named(model_id: str, revision: str | None) -> str:
    return repr(model_id) + (f" at revision {revision}" if revision else "")


def require_cached(model_id: str, revision: str | None, what: str) -> None:
    """When only the local cache can be read, a model that is not in it is the one-line error at once --
    before a caller imports a heavy library to find out (``--method all`` checks every model it could run)."""
    if Path(model_id).expanduser().is_dir() or not hub_offline():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 -- an odd id or an old huggingface_hub: the loader will say what is wrong
        return
    if not isinstance(found, str):
        raise MissingResourceError(f"cannot load the {what} {_named(model_id, revision)}{_why_local(True)}: it is not "
                                   f"in the local cache [looked in the local cache {cache_place()}]")


def load_pretrained(loaders, model_id: str, revision: str | None, what: str, **kwargs):
    """``loaders[i].from_pretrained`` for the first loader that accepts the model; only the local cache
    is read when offline; a missing model is one line naming it and the cache."""
    local = Path(model_id).expanduser()
    offline = not local.is_dir() and hub_offline()
    last = None
    for loader in loaders:
        try:
            return loader.from_pretrained(str(local) if local.is_dir() else model_id, revision=revision,
                                          local_files_only=offline, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            last = exc
            if offline or "does not appear to have" in str(exc) or "not a valid model identifier" in str(exc):
                continue
    why = _why_local(offline)
    first = (str(last).strip().splitlines() or [type(last).__name__])[0] if last else "no loader accepted it"
    raise MissingResourceError(f"cannot load the {what} {_named(model_id, revision)}{why}: {first[:200]} "
                               f"[looked in the local cache {cache_place()}]")


def revision_of(model, model_id: str) -> str:
    """The model's exact revision: the hub commit it was loaded from, or a hash of a local folder's files."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:
        return str(commit)
    local = Path(model_id).expanduser()
    if local.is_dir():
        h = hashlib.sha256()
        for p in sorted(local.rglob("*")):
            if p.is_file():
                h.update(p.name.encode())
                h.update(str(p.stat().st_size).encode())
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
        return "local-" + h.hexdigest()[:16]
    return "unknown"


def files_revision(model_id: str, revision: str | None, filename: str) -> str:
    """The exact revision of a repository whose files were loaded without a model (a processor): a local
    folder's hash, else the hub commit of the cached snapshot holding ``filename``."""
    if Path(model_id).expanduser().is_dir():
        return revision_of(None, model_id)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, filename, revision=revision)
    except Exception:  # noqa: BLE001 -- an old huggingface_hub: the revision asked is all that is known
        found = None
    parts = Path(found).parts if isinstance(found, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else (revision or "unknown")


def import_transformers(what: str):
    """transformers, or the one-line error naming what needs it (``what``: "the hf-clip encoder")."""
    try:
        import transformers
    except ImportError:
        raise MissingResourceError(f'{what} needs Hugging Face transformers: pip install -e ".[llm]"') from None
    return transformers


def dtype_argument(transformers) -> str:
    """from_pretrained's name for the weights' dtype (``dtype`` since transformers 5, ``torch_dtype`` before)."""
    return "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
