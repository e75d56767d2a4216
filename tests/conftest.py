import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# The suite sees cirbench's own methods, datasets and encoders only, whatever else is installed (a test
# asserting what `--method all` runs must not fail beside an installed plugin); the tests of entry
# points set CIRBENCH_ENTRY_POINTS=1 for the processes they start.
os.environ["CIRBENCH_ENTRY_POINTS"] = "0"

from helpers import folder_dataset, tiny_clip_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_clip_dir(tmp_path_factory.mktemp("tinyclip"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_dir):
    from cirbench.contracts.encoder import load_encoder

    return load_encoder(f"local-dir:{tiny_dir}")


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny BLIP-2 captioner and a tiny chat LLM saved as Hugging Face model folders (no download)."""
    from hf_models import tiny_blip2, tiny_llm

    base = tmp_path_factory.mktemp("hf")
    return tiny_blip2(base / "blip2"), tiny_llm(base / "llm")


@pytest.fixture
def mydata(tmp_path) -> Path:
    return folder_dataset(tmp_path / "mydata")


@pytest.fixture
def cache_env(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CIRBENCH_CACHE", str(cache))
    return cache


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Offline as HF_HUB_OFFLINE=1 says, with every socket connection refused and recorded (the list): a
    test asserts it stays empty, i.e. no download or retry loop was even tried."""
    import socket

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: no_network(*a))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts
