"""The Hugging Face hub as cirbench reaches it: whether it can be reached at all (a quick probe, so that
an offline machine fails at once instead of after minutes of retries), whether HF_HUB_OFFLINE is set,
and where its local cache is."""

from __future__ import annotations

import os


def offline_set() -> bool:
    """HF_HUB_OFFLINE asks for the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")


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
