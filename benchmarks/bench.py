"""cirbench's speed and scale benchmark: every figure is a ratio of two timings taken in this one run.

    python benchmarks/bench.py            # a few minutes on 2 CPU cores; prints the figures and targets
    python benchmarks/bench.py --json     # one JSON object on stdout (progress on stderr)
    python benchmarks/bench.py --gpu      # adds the GPU figures (a ViT-L/14-sized encoder, random weights)

1. sweep_speedup: all methods on all splits of the embedded benchmark through the shared engine,
   against the naive protocol of the reference code (every method encodes its own gallery and queries);
   same encoder, data and batch size. Target >= 4x.
2. warm_rerun_fraction: the same sweep with every result recomputed (overwrite) but warm feature
   caches (a fresh engine each time, best of 3), as a share of the cold sweep. Target < 5%.
   (Training is excluded from both.)
3. pipeline_efficiency: images/s through the engine (file decode and transform in DataLoader workers,
   forward) against the encoder's forward-only rate on tensors already in memory, same batch size.
   Target >= 80%.
4. scale: 1,000 queries against 1,000,000 gallery features (768-d, stored fp16), top-50; the memory
   above the gallery's own features (scale_extra_mib) must stay under 512 MiB.
5. content_keys: what keying the feature cache by file content costs on a folder of 10,000
   photo-sized files: the first run hashes every file once; a rerun only stats them (the memo of
   digests by stat signature), against stat-only keys (path, size, mtime) for reference.
6. killed_run: a process encoding photos is killed with SIGKILL (no chance to flush) after a while;
   the encoding work it loses (encoded images not in the cache, in seconds of encoding) must stay
   under about 10 s. Beside it, what the periodic flushes cost: the same encoding with the default
   interval against one flush at the end.

7. models (``--figures models``, not in the default set): gallery images/s through the engine for the
   models methods bring -- a transformers CLIP of ViT-B/16's size (BGE-VL-base) and a MagicLens-base
   checkpoint (its CLIP, then every gallery image fused with the empty instruction), and the multimodal-LLM
   kinds' pipelines (E5-V's llava-next, LamRA's qwen2-vl) on the tests' tiny random models -- beside
   open_clip's ViT-B/16 on the same photos and batch size (random weights: the cost, not the numbers).

8. firstrun (``--figures firstrun``, not in the default set): what a newcomer waits for -- a cold
   ``cirbench run`` (fresh cache: render the world, train the small CLIP, Pic2Word and the Combiner,
   encode, rank) and ``cirbench report``, broken down by stage in seconds and as a share, then the warm
   rerun. ``--baseline REV`` measures the same for a git revision of this repository (checked out into a
   temporary worktree) in the same sitting, so the two can be compared on one machine under one load.

9. instances (``--figures instances``, not in the default set): i-CIR-shaped scoring, each query against
   its own instance's database only (``--instances`` databases of ``--instance-size`` random 768-d
   features, 9 queries each): ms per query and the memory above the gallery for a query-vector method
   (image+text: the engine's grouped subset scoring), the clamped product and BASIC's scoring (its
   centring, projection, expansion and fusion per instance; the text features given), against what the
   former Q x M x D gather would have held.

``--figures sweep,pipeline,scale,keys,kill`` runs some of them only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

METHODS = ["image-only", "text-only", "image+text", "pic2word", "combiner", "slerp", "weicom"]
# The embedded world's tasks and images, small enough for a CLIP-sized encoder on 2 CPU cores; the
# Pic2Word and Combiner weights are trained for the benchmark's encoder first (not timed).
BENCH_WORLD = {"pretrain": "200", "unlabeled": "128", "train_ids": "1", "test_ids": "1", "queries_per_id": "8",
               "pic2word_epochs": "1", "combiner_epochs": "1"}
# a CLIP the size of the smallest one the papers use (random weights are fine for speed)
DEFAULT_ENCODER = "random:ViT-B-32"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    import torch

    import cirbench

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cirbench": cirbench.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def open_world(cache: Path, spec: str, device: str = "cpu"):
    from cirbench.contracts.encoder import load_encoder
    from cirbench.contracts.registry import datasets

    tasks = [datasets.get(name)(cache, dict(BENCH_WORLD), cache_dir=cache) for name in ("world-edit", "world-domain")]
    encoder = load_encoder(spec or tasks[0].default_encoder, cache_dir=cache, device=device)
    return tasks, encoder


def photos(folder: Path, n: int) -> list[Path]:
    """Photo-sized JPEGs (500 x 375, noisy so that decoding is not cheaper than for real photos)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = np.linspace(0, 255, 500)[None, :, None] * rng.uniform(0.3, 1.0, (1, 1, 3))
        pixels = np.clip(base + rng.normal(0, 40, (375, 500, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def sweep(tasks, encoder, options, naive: bool) -> float:
    """Seconds for every method on every split, the Pic2Word and Combiner weights given. naive: a fresh
    engine and an empty feature cache for every (split, method), as the reference implementations do."""
    from dataclasses import replace

    from cirbench.api import build_methods, resolve_methods
    from cirbench.engine import Engine

    chosen, _ = resolve_methods(METHODS)
    splits = [(task, task.load(s)) for task in tasks for s in task.splits]
    for task, split in splits:
        split.checkpoints.update(task.trained)
    start = time.perf_counter()
    if naive:
        for task, split in splits:
            for name, cls in chosen:
                scratch = Path(tempfile.mkdtemp(dir=options.cache_dir.parent))
                engine = Engine(encoder, replace(options, cache_dir=scratch, results_dir=scratch / "r"))
                built = build_methods(engine, [(name, cls)], {}, {name: {}}, None, None)
                engine.evaluate(split, built, task.result_name)
                shutil.rmtree(scratch)
    else:
        engine = Engine(encoder, options)
        built = build_methods(engine, chosen, {}, {n: {} for n, _ in chosen}, None, None)
        for task, split in splits:
            engine.evaluate(split, built, task.result_name)
    return time.perf_counter() - start


def sweep_figures(args, work: Path) -> dict:
    """The naive, cold and warm sweeps of every method over the embedded world's splits."""
    from cirbench.api import auto_trained, resolve_methods
    from cirbench.engine import Engine, RunOptions
    from cirbench.util.progress import Progress

    cache = work / "cache"
    log("preparing the embedded world and Pic2Word and Combiner weights for the encoder (not timed)")
    with Progress(enabled=not args.json) as progress:
        tasks, encoder = open_world(cache, args.encoder)
        options = RunOptions(results_dir=work / "results", cache_dir=work / "features", overwrite=True,
                             batch_size=args.batch_size, workers=args.workers, command=["bench"])
        prep = Engine(encoder, RunOptions(results_dir=None, cache_dir=cache, batch_size=args.batch_size,
                                          workers=args.workers), progress)
        chosen, _ = resolve_methods(METHODS)
        for task in tasks:
            task.trained = auto_trained(task, prep, chosen, {}, None, progress)
    splits = sum(len(t.splits) for t in tasks)
    log(f"sweep: {len(METHODS)} methods x {splits} splits, naive protocol")
    naive = sweep(tasks, encoder, options, naive=True)
    log("sweep: shared engine, cold feature cache")
    cold = sweep(tasks, encoder, options, naive=False)
    log("sweep: shared engine again, every result recomputed, warm feature cache (best of 3)")
    warm = min(sweep(tasks, encoder, options, naive=False) for _ in range(3))
    return {"naive_sweep_s": naive, "cold_sweep_s": cold, "warm_sweep_s": warm, "sweep_speedup": naive / cold,
            "warm_rerun_fraction": warm / cold}


def content_key_cost(folder: Path, n_files: int = 10_000, size: int = 120_000) -> dict:
    """Seconds to key a folder of files by content: first run (hash all), rerun (stat only), and the old
    stat-only key (path, size, mtime) for reference."""
    import hashlib

    import numpy as np

    from cirbench.storage.content_keys import ContentKeys

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_files):  # incompressible bytes the size of a COCO photo
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        paths.append(path)
    start = time.perf_counter()
    ContentKeys(folder.parent / "memo").keys(paths)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = ContentKeys(folder.parent / "memo")  # a new process: the memo is read from disk
    again.keys(paths)
    rerun = time.perf_counter() - start
    start = time.perf_counter()
    for p in paths:
        st = os.stat(p)
        hashlib.sha1(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    stat_only = time.perf_counter() - start
    return {"files": n_files, "bytes_per_file": size, "first_run_s": first, "rerun_s": rerun,
            "stat_only_s": stat_only, "files_read_on_rerun": again.hashed}


def pipeline(encoder, paths, batch_size: int, workers: int, scratch: Path) -> dict:
    """Images/s through the engine's encoder path against forward-only on tensors in memory."""
    import torch
    from PIL import Image

    from cirbench.storage.features import FeatureStore

    pixels = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        encoder.encode_images(pixels[:batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            encoder.encode_images(pixels[i:i + batch_size])
        forward = time.perf_counter() - start
    store = FeatureStore(encoder, scratch, batch_size, workers)
    start = time.perf_counter()
    store.features(paths)
    engine = time.perf_counter() - start
    return {"images": len(paths), "forward_only_images_per_s": len(paths) / forward,
            "engine_images_per_s": len(paths) / engine, "pipeline_efficiency": forward / engine}


def kill_worker(spec: str, cache: str, folder: str, progress_file: str) -> None:
    """Encode every photo of ``folder`` into ``cache`` with the default flushing, writing the count of
    encoded images to ``progress_file`` after each batch (the parent kills this process)."""
    from cirbench.contracts.encoder import load_encoder
    from cirbench.storage.features import FeatureStore

    encoder = load_encoder(spec)
    encode = encoder.encode_images
    done = [0]

    def counting(pixels):
        out = encode(pixels)
        done[0] += len(pixels)
        Path(progress_file).write_text(f"{done[0]} {time.monotonic()}")
        return out

    encoder.encode_images = counting
    FeatureStore(encoder, Path(cache), 16, 0).features(sorted(Path(folder).glob("*.jpg")))


def killed_run(spec: str, paths: list[Path], scratch: Path, after_s: float = 35.0) -> dict:
    """Kill an encoding process after ``after_s`` seconds of encoding; what did it lose?"""
    import signal

    from cirbench.storage.cache import count_entries
    from cirbench.contracts.encoder import load_encoder
    from cirbench.storage.features import FLUSH_SECONDS, FeatureStore

    folder = paths[0].parent
    progress = scratch / "progress.txt"
    scratch.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, __file__, "--kill-worker", spec, str(scratch / "cache"), str(folder),
                              str(progress)])
    try:
        while not progress.exists():  # the model is loaded and the first batch encoded
            if child.poll() is not None:
                raise RuntimeError("the encoding process ended before it was killed")
            time.sleep(0.1)
        first, t0 = progress.read_text().split()
        time.sleep(after_s)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    encoded, t1 = progress.read_text().split()
    encoded, rate = int(encoded), (int(encoded) - int(first)) / max(1e-9, float(t1) - float(t0))
    encoder = load_encoder(spec)
    cached = sum(count_entries(d) for d in (scratch / "cache" / "features").iterdir())
    lost = encoded - cached
    # what the flushes cost: the same images encoded with the default interval and with one final flush
    timings = {}
    for name, interval in (("default", FLUSH_SECONDS), ("at_end", float("inf"))):
        store = FeatureStore(encoder, scratch / f"cost-{name}", 16, 0, flush_seconds=interval)
        start = time.perf_counter()
        store.features(paths)
        timings[name] = time.perf_counter() - start
    return {"killed_after_s": after_s, "encoded_images": encoded, "cached_images": cached, "lost_images": lost,
            "images_per_s": rate, "lost_seconds": lost / rate if rate else float("nan"),
            "flush_interval_s": FLUSH_SECONDS, "encode_s_default_flushes": timings["default"],
            "encode_s_one_flush": timings["at_end"], "flush_cost": timings["default"] / timings["at_end"] - 1}


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(fn):
    """(fn's result, seconds, MiB of resident memory above what was there before, at the peak)."""
    base = rss_mib()
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    return result, seconds, max(peak[0], rss_mib()) - base


def scale_worker(n_gallery: int, n_queries: int, dim: int, k: int) -> dict:
    """Runs in its own process so that its memory readings are its own."""
    import torch

    from cirbench.protocol.scoring import topk

    torch.manual_seed(0)
    gallery = torch.empty(n_gallery, dim, dtype=torch.float16)
    for i in range(0, n_gallery, 65536):  # filled in pieces: no full-size temporary
        block = torch.randn(min(65536, n_gallery - i), dim)
        gallery[i:i + len(block)] = torch.nn.functional.normalize(block, dim=-1).half()
    queries = torch.nn.functional.normalize(torch.randn(n_queries, dim), dim=-1)
    del block
    (_scores, index), seconds, extra = measured(lambda: topk(queries, gallery, k))
    out = {"gallery": n_gallery, "queries": n_queries, "dim": dim, "k": k,
           "gallery_mib": gallery.numel() * gallery.element_size() / 2**20,
           "seconds": seconds, "ms_per_query": 1000 * seconds / n_queries,
           "scale_extra_mib": extra, "result_shape": list(index.shape)}
    if n_gallery <= 100_000:  # small enough to check the chunked top-k against one full sort
        full = torch.topk(queries @ gallery.float().T, k, dim=1).indices
        out["matches_full_sort"] = bool(torch.equal(full, index))
    return out


def instance_worker(n_instances: int, size: int, per_instance: int, dim: int) -> dict:
    """i-CIR-shaped scoring in its own process (its memory readings are its own)."""
    from types import SimpleNamespace

    import torch

    from cirbench.methods.basic import Basic
    from cirbench.methods.product import Product
    from cirbench.protocol.scoring import normalize, subset_scores

    torch.manual_seed(0)
    gallery = normalize(torch.randn(n_instances * size, dim))
    members = [list(range(i * size, (i + 1) * size)) for i in range(n_instances) for _ in range(per_instance)]
    n_queries = len(members)
    image, text = normalize(torch.randn(n_queries, dim)), normalize(torch.randn(n_queries, dim))
    padded = torch.tensor(members)
    corpus = normalize(torch.randn(1841, dim)), normalize(torch.randn(999, dim))
    options = {key: opt.default for key, opt in Basic.options.items()}
    basic = Basic.__new__(Basic)
    basic.ctx = SimpleNamespace(options=options)
    basic.laion_mean = 0.05 * torch.randn(1, dim)
    basic.synthetic = normalize(torch.randn(200, dim)), normalize(torch.randn(200, dim))
    basic._corpus = (*corpus, corpus[0].mean(dim=0, keepdim=True))
    basic._fixed = None
    product = Product.__new__(Product)
    product.clamp = True

    def per_instance_scores(score_group):
        out = torch.zeros(n_queries, size)
        for i in range(n_instances):
            rows = list(range(i * per_instance, (i + 1) * per_instance))
            out[rows] = score_group(image[rows], text[rows], gallery[members[rows[0]]])
        return out

    runs = {"image+text (vectors)": lambda: subset_scores(normalize(image + text), gallery, padded),
            "product, clamped (scores)": lambda: per_instance_scores(
                lambda i, t, db: product._fuse(i @ db.T, t @ db.T)),
            "basic (scores)": lambda: per_instance_scores(basic._scores)}
    out = {"instances": n_instances, "instance_size": size, "queries": n_queries, "dim": dim,
           "gallery_mib": gallery.numel() * 4 / 2**20,
           "gather_mib": n_queries * size * dim * 4 / 2**20, "methods": {}}
    for name, run in runs.items():
        with torch.no_grad():
            _result, seconds, extra = measured(run)
        out["methods"][name] = {"ms_per_query": 1000 * seconds / n_queries, "extra_mib": extra}
    return out


def gpu_figures(scratch: Path, n_images: int = 2048, batch_size: int = 256) -> dict:
    """ViT-L/14 at 224 px (random weights) on the GPU: engine images/s against forward-only."""
    import torch
    from PIL import Image

    from cirbench.contracts.encoder import load_encoder

    encoder = load_encoder("random:ViT-L-14", device="cuda", precision="bf16")
    paths = photos(scratch / "jpeg", n_images)
    pixels = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths[:batch_size]])
    pixels = pixels.cuda()
    with torch.no_grad():
        for _ in range(3):
            encoder.encode_images(pixels)
        torch.cuda.synchronize()
        start = time.perf_counter()
        rounds = max(1, n_images // batch_size)
        for _ in range(rounds):
            encoder.encode_images(pixels)
        torch.cuda.synchronize()
        forward = rounds * batch_size / (time.perf_counter() - start)
    figures = pipeline(encoder, paths, batch_size, min(16, os.cpu_count() or 1), scratch / "cache")
    figures["forward_only_images_per_s"] = forward
    figures["pipeline_efficiency"] = figures["engine_images_per_s"] / forward
    figures["encoder"] = "random:ViT-L-14 bf16, 224 px"
    return figures


def bge_vl_sized(folder: Path) -> Path:
    """A transformers CLIP folder of BGE-VL-base's sizes (ViT-B/16, 512-d text) with random weights."""
    import json as _json

    import open_clip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    config = CLIPConfig(text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                         num_attention_heads=8, bos_token_id=49406, eos_token_id=49407),
                        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                           num_attention_heads=12, image_size=224, patch_size=16),
                        projection_dim=512)
    CLIPModel(config).save_pretrained(folder)
    tok = open_clip.tokenizer.SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (folder / "vocab.json").write_text(_json.dumps({rename.get(k, k): v for k, v in tok.encoder.items()}))
    merges = [" ".join(pair) for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def magiclens_sized(path: Path, seed: int = 0) -> Path:
    """A file in MagicLens's released format with magic_lens_clip_base.pkl's shapes (random values)."""
    import pickle

    import msgpack
    import numpy as np

    rng = np.random.default_rng(seed)

    def arr(*shape):
        a = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        return msgpack.ExtType(1, msgpack.packb((list(shape), "float32", a.tobytes())))

    def block(d, heads):
        hd = d // heads
        return {"ln_1": {"scale": arr(d), "bias": arr(d)}, "ln_2": {"scale": arr(d), "bias": arr(d)},
                "attn": {**{n: {"kernel": arr(d, heads, hd), "bias": arr(heads, hd)} for n in ("query", "key", "value")},
                         "out": {"kernel": arr(heads, hd, d), "bias": arr(d)}},
                "mlp": {"c_fc": {"kernel": arr(d, 4 * d), "bias": arr(4 * d)},
                        "c_proj": {"kernel": arr(4 * d, d), "bias": arr(d)}}}

    def attention(d, heads, hidden, per_dim):
        hd = hidden // heads
        out = {**{n: {"w": arr(d, heads, hd), "b": arr(heads, hd)} for n in ("query", "key", "value")},
               "post": {"w": arr(d, heads, hd), "b": arr(d)}}
        if per_dim:
            out["per_dim_scale"] = {"per_dim_scale": arr(hd)}
        return out

    e = 512
    visual = {"conv1": {"kernel": arr(16, 16, 3, 768)}, "class_embedding": arr(768), "positional_embedding": arr(197, 768),
              "ln_pre": {"scale": arr(768), "bias": arr(768)}, "ln_post": {"scale": arr(768), "bias": arr(768)},
              "proj": {"kernel": arr(768, e)}, "transformer": {f"resblocks_{i}": block(768, 12) for i in range(12)}}
    text = {"token_embedding": {"embedding": arr(49408, 512)}, "positional_embedding": arr(77, 512),
            "ln_final": {"scale": arr(512), "bias": arr(512)}, "text_projection": {"kernel": arr(512, e)},
            "transformer": {f"resblocks_{i}": block(512, 8) for i in range(12)}}
    layer = lambda: {"layer_norm": {"scale": arr(e), "bias": arr(e)}, "self_attention": attention(e, 8, e, False),  # noqa: E731
                     "ff_layer": {"layer_norm": {"scale": arr(e), "bias": arr(e)},
                                  "ffn_layer1": {"linear": {"w": arr(e, 4 * e)}, "bias": {"b": arr(4 * e)}},
                                  "ffn_layer2": {"linear": {"w": arr(4 * e, e)}, "bias": {"b": arr(e)}}}}
    params = {"clip": {"visual": visual, "text": text, "logit_scale": arr()},
              "multimodal_encoder": {f"x_layers_{i}": layer() for i in range(4)},
              "contrastive_multimodal_pooler": {"pool_attn": attention(e, 8, 4 * e, True), "pooling_attn_query": arr(1, e),
                                                "pool_attn_ln": {"scale": arr(e), "bias": arr(e)}}}
    with open(path, "wb") as fh:
        pickle.dump(msgpack.packb({"params": params}), fh)
    return path


def tiny_llm_embedders(scratch: Path) -> dict:
    """{name: (spec, gallery prompt)} of the multimodal-LLM kinds on the tests' tiny random models (E5-V's
    llava-next with 4.41.2's tiles, LamRA's qwen2-vl): what their pipelines cost around a model, not the
    7-8B models' own cost."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hf_models import tiny_llava_next, tiny_qwen2_vl

    from cirbench.methods.e5_v import GENERIC_GALLERY, chat
    from cirbench.methods.lamra import candidate_prompt

    llava = tiny_llava_next(scratch / "tiny-llava-next")
    qwen, processor = tiny_qwen2_vl(scratch / "tiny-qwen2-vl")
    return {"llava-next (E5-V pipeline, tiny model)": (f"llava-next:{llava}?tiles=pinned", chat(GENERIC_GALLERY)),
            "qwen2-vl (LamRA pipeline, tiny model)": (f"qwen2-vl:{qwen}?processor={processor}", candidate_prompt())}


def model_figures(paths: list[Path], batch_size: int, workers: int, scratch: Path) -> dict:
    """Gallery images/s through the engine: BGE-VL-base-sized and MagicLens-base-sized models against
    open_clip's ViT-B/16, same photos, batch size and decode workers."""
    import torch

    from cirbench.contracts.encoder import load_encoder
    from cirbench.storage.features import FeatureStore

    scratch.mkdir(parents=True, exist_ok=True)
    specs = {"open_clip ViT-B-16": "random:ViT-B-16",
             "hf-clip (BGE-VL-base size)": f"hf-clip:{bge_vl_sized(scratch / 'bge-vl-base-sized')}",
             "magiclens (base size)": f"magiclens:{magiclens_sized(scratch / 'magiclens-base-sized.pkl')}"}
    views = {}
    for name, (spec, prompt) in tiny_llm_embedders(scratch).items():
        specs[name], views[name] = spec, prompt
    out = {}
    for name, spec in specs.items():
        encoder = load_encoder(spec)
        if name in views:  # the multimodal-LLM kinds encode gallery images under their method's prompt
            encoder = encoder.with_transform("prompt:" + views[name])
        store = FeatureStore(encoder, scratch / "cache" / name.split()[0], batch_size, workers)
        start = time.perf_counter()
        feats, _ = store.features(paths)
        if hasattr(encoder, "fuse"):  # MagicLens's gallery: each image fused with the empty instruction
            with torch.no_grad():
                empty = encoder.encode_texts([""])
                encoder.fuse(torch.as_tensor(feats).float(), empty.expand(len(paths), -1))
        out[name] = len(paths) / (time.perf_counter() - start)
    base = out["open_clip ViT-B-16"]
    return {"model_images_per_s": out, "model_ratio_to_open_clip": {k: v / base for k, v in out.items()}}


# a progress task's description -> the first-run stage it belongs to (the first prefix that matches)
STAGES = (("render world", "render"), ("train small CLIP", "small CLIP"), ("small CLIP", "small CLIP"),
          ("train pic2word", "Pic2Word"),
          ("train combiner", "Combiner"), ("encode", "encoding"), ("rank", "ranking"))


def stage_worker(cache: str, out: str, argv: list[str]) -> None:
    """Run one cirbench command in this process with every progress task timed (start to its last step)."""
    from cirbench.util import progress as progress_module

    tasks: list[dict] = []
    original_task, original_advance = progress_module.Progress.task, progress_module._Task.advance

    def task(self, description, total, **kwargs):
        made = original_task(self, description, total, **kwargs)
        made._timing = {"name": description, "start": time.perf_counter()}
        made._timing["end"] = made._timing["start"]
        tasks.append(made._timing)
        return made

    def advance(self, n=1, status=None):
        original_advance(self, n, status)
        if hasattr(self, "_timing"):
            self._timing["end"] = time.perf_counter()

    progress_module.Progress.task, progress_module._Task.advance = task, advance
    os.environ["CIRBENCH_CACHE"] = cache
    tree = Path(progress_module.__file__).resolve().parents[2]
    for name in ("methods", "datasets"):  # the package maps cirbench.methods to <tree>/methods: this tree's
        spec = importlib.util.spec_from_file_location(f"cirbench.{name}", tree / name / "__init__.py",
                                                      submodule_search_locations=[str(tree / name)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    from cirbench.cli import app

    start = time.perf_counter()
    try:
        code = app(argv, standalone_mode=False) or 0
    except SystemExit as exc:
        code = exc.code or 0
    wall = time.perf_counter() - start
    Path(out).write_text(json.dumps({"wall_s": wall, "exit": code, "tasks": [
        {"name": t["name"], "seconds": t["end"] - t["start"]} for t in tasks]}))


def staged(tree: Path, cache: Path, cwd: Path, argv: list[str]) -> dict:
    """One cirbench command from the source tree ``tree``, timed by stage in a fresh process."""
    out = cwd / "stages.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "benchmarks")])}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--stage-worker", str(cache), str(out), *argv],
                   cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    got = json.loads(out.read_text())
    if got["exit"]:
        raise SystemExit(f"cirbench {' '.join(argv)} from {tree} exited {got['exit']}")
    return got


def first_run(tree: Path, scratch: Path, label: str, settings: list[str] = ()) -> dict:
    """Cold ``cirbench run`` + ``cirbench report`` from ``tree`` on a fresh cache, by stage; then the warm rerun."""
    cache, cwd = scratch / "cache", scratch / "project"
    cwd.mkdir(parents=True)
    extra = [arg for kv in settings for arg in ("--set", kv)]
    log(f"firstrun [{label}]: cold cirbench run (fresh cache) ...")
    cold = staged(tree, cache, cwd, ["run", *extra])
    report = staged(tree, cache, cwd, ["report"])
    log(f"firstrun [{label}]: warm rerun ...")
    warm = staged(tree, cache, cwd, ["run", *extra])
    stages = by_stage(cold)
    stages["report"] = report["wall_s"]
    total = cold["wall_s"] + report["wall_s"]
    return {"label": label, "cold_s": total, "warm_s": warm["wall_s"], "warm_over_cold": warm["wall_s"] / total,
            "stages_s": stages, "stage_share": {k: v / total for k, v in stages.items()},
            "warm_stages_s": by_stage(warm)}


def by_stage(timed: dict) -> dict:
    """Seconds per first-run stage of one timed command; "other" is the rest of its wall time (imports,
    loading, writing results)."""
    stages = {name: 0.0 for _, name in STAGES}
    for task in timed["tasks"]:
        stage = next((name for prefix, name in STAGES if task["name"].startswith(prefix)), None)
        if stage:
            stages[stage] += task["seconds"]
    stages["other"] = max(0.0, timed["wall_s"] - sum(stages.values()))
    return stages


def firstrun_figures(args, work: Path) -> dict:
    root = Path(__file__).resolve().parents[1]
    out = {"load_before": os.getloadavg()[0]}
    runs = []
    if args.baseline:
        tree = work / "baseline-tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True)
        try:
            runs.append(first_run(tree, work / "baseline", f"baseline {args.baseline}", args.firstrun_set))
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], capture_output=True)
    runs.append(first_run(root, work / "current", "this tree", args.firstrun_set))
    out["load_after"] = os.getloadavg()[0]
    out["firstrun"] = runs
    if len(runs) == 2:
        out["firstrun_cold_ratio"] = runs[1]["cold_s"] / runs[0]["cold_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER, help="encoder SPEC (default: %(default)s)")
    parser.add_argument("--photos", type=int, default=256, help="JPEGs for the pipeline figure")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--scale-gallery", type=int, default=1_000_000)
    parser.add_argument("--key-files", type=int, default=10_000, help="files for the content-key cost figure")
    parser.add_argument("--gpu", action="store_true", help="also measure a ViT-L/14-sized encoder on the GPU")
    parser.add_argument("--figures", default="sweep,pipeline,scale,keys,kill",
                        help="which figures to measure (default: %(default)s)")
    parser.add_argument("--kill-after", type=float, default=35.0, help="seconds of encoding before the SIGKILL")
    parser.add_argument("--instances", type=int, default=20, help="instances: how many databases")
    parser.add_argument("--instance-size", type=int, default=3700, help="instances: images per database")
    parser.add_argument("--scale-worker", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instance-worker", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kill-worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help="firstrun: also measure this git revision (a commit or branch)")
    parser.add_argument("--firstrun-set", action="append", default=[], metavar="KEY=VALUE",
                        help="firstrun: a --set for both runs (e.g. world=tiny)")
    if len(sys.argv) > 1 and sys.argv[1] == "--stage-worker":
        stage_worker(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    args = parser.parse_args()
    if args.scale_worker:
        print(json.dumps(scale_worker(*args.scale_worker)))
        return
    if args.kill_worker:
        kill_worker(*args.kill_worker)
        return
    if args.instance_worker:
        print(json.dumps(instance_worker(*args.instance_worker)))
        return
    wanted = set(args.figures.split(","))

    work = args.work or Path(tempfile.mkdtemp(prefix="cirbench-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "settings": {"batch_size": args.batch_size, "workers": args.workers,
                                                 "encoder": args.encoder, "world": BENCH_WORLD,
                                                 "methods": METHODS, "photos": args.photos}}
    try:
        if "sweep" in wanted:
            report.update(sweep_figures(args, work))
        if "pipeline" in wanted or "kill" in wanted:
            shots = photos(work / "photos", args.photos)
        if "pipeline" in wanted:
            from cirbench.contracts.encoder import load_encoder

            log(f"pipeline: engine against forward-only on {args.photos} photo-sized JPEGs")
            report.update(pipeline(load_encoder(args.encoder), shots, args.batch_size, args.workers,
                                   work / "pipeline"))
        if "scale" in wanted:
            log(f"scale: 1,000 queries x {args.scale_gallery:,} gallery features (fp16, 768-d), top-50")
            out = subprocess.run([sys.executable, __file__, "--scale-worker", str(args.scale_gallery), "1000", "768",
                                  "50"], capture_output=True, text=True, check=True)
            report["scale"] = json.loads(out.stdout)
            report["scale_extra_mib"] = report["scale"]["scale_extra_mib"]
        if "instances" in wanted:
            log(f"instances: {args.instances} databases of {args.instance_size:,} images, 9 queries each")
            out = subprocess.run([sys.executable, __file__, "--instance-worker", str(args.instances),
                                  str(args.instance_size), "9", "768"], capture_output=True, text=True, check=True)
            report["instances"] = json.loads(out.stdout)
        if "keys" in wanted:
            log(f"content keys: {args.key_files:,} photo-sized files, first run and rerun")
            report["content_keys"] = content_key_cost(work / "keys" / "files", args.key_files)
        if "kill" in wanted:
            log(f"killed run: SIGKILL after {args.kill_after:.0f} s of encoding; then the flushes' cost")
            report["killed_run"] = killed_run(args.encoder, shots, work / "kill", args.kill_after)
        if "models" in wanted:
            log(f"models: gallery images/s of BGE-VL-base- and MagicLens-base-sized models and the multimodal-LLM "
                f"pipelines (tiny models) beside open_clip ViT-B/16 on {args.photos} photos")
            report.update(model_figures(photos(work / "photos", args.photos), args.batch_size, args.workers,
                                        work / "models"))
        if "firstrun" in wanted:
            report.update(firstrun_figures(args, work))
        if args.gpu:
            log("gpu: ViT-L/14 (random weights), bf16")
            report["gpu"] = gpu_figures(work / "gpu")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
          f"python {m['python']}, cuda {m['cuda']}")
    print(f"settings: encoder {args.encoder}, batch size {args.batch_size}, {args.workers} decode workers, "
          f"embedded world {BENCH_WORLD}, {args.photos} photos")
    rows = []
    if "naive_sweep_s" in report:
        rows += [
            ("sweep speedup (naive / shared)", f"{report['sweep_speedup']:.1f}x", ">= 4x",
             f"{report['naive_sweep_s']:.1f} s / {report['cold_sweep_s']:.1f} s"),
            ("warm rerun (warm / cold sweep)", f"{100 * report['warm_rerun_fraction']:.1f}%", "< 5%",
             f"{report['warm_sweep_s']:.2f} s / {report['cold_sweep_s']:.1f} s")]
    if "pipeline_efficiency" in report:
        rows.append(("pipeline efficiency (engine / forward)", f"{100 * report['pipeline_efficiency']:.0f}%", ">= 80%",
                     f"{report['engine_images_per_s']:.0f} / {report['forward_only_images_per_s']:.0f} images/s"))
    if "scale" in report:
        scale = report["scale"]
        rows.append(("scale: memory above the gallery", f"{report['scale_extra_mib']:.0f} MiB", "<= 512 MiB",
                     f"gallery {scale['gallery_mib']:.0f} MiB, {scale['ms_per_query']:.1f} ms/query, "
                     f"{scale['seconds']:.1f} s"))
    if "instances" in report:
        inst = report["instances"]
        for name, m in inst["methods"].items():
            rows.append((f"instances: {name}", f"{m['ms_per_query']:.1f} ms/query", "",
                         f"{m['extra_mib']:.0f} MiB above the {inst['gallery_mib']:.0f} MiB gallery ({inst['queries']} "
                         f"queries, {inst['instances']} x {inst['instance_size']:,}); a Q x M x D gather: "
                         f"{inst['gather_mib']:,.0f} MiB"))
    if "model_images_per_s" in report:
        speeds, ratios = report["model_images_per_s"], report["model_ratio_to_open_clip"]
        for name, value in speeds.items():
            rows.append((f"models: {name}", f"{value:.1f} img/s", "", f"{ratios[name]:.2f}x open_clip ViT-B/16"))
    if "content_keys" in report:
        k = report["content_keys"]
        rows.append(("content keys: rerun / first run", f"{k['rerun_s']:.2f} s", "",
                     f"first run {k['first_run_s']:.1f} s hashing {k['files']:,} x {k['bytes_per_file'] // 1000} KB; "
                     f"stat-only keys {k['stat_only_s']:.2f} s; files read on rerun {k['files_read_on_rerun']}"))
    if "killed_run" in report:
        k = report["killed_run"]
        rows.append(("killed run: encoding work lost", f"{k['lost_seconds']:.1f} s", "<= ~10 s",
                     f"SIGKILL after {k['killed_after_s']:.0f} s: {k['encoded_images']} encoded, {k['cached_images']} "
                     f"in the cache, {k['images_per_s']:.1f} images/s; flushes every {k['flush_interval_s']:.0f} s cost "
                     f"{100 * k['flush_cost']:+.1f}% ({k['encode_s_default_flushes']:.1f} s vs "
                     f"{k['encode_s_one_flush']:.1f} s)"))
    for run in report.get("firstrun", []):
        stages = ", ".join(f"{k} {v:.0f} s ({100 * run['stage_share'][k]:.0f}%)" for k, v in run["stages_s"].items())
        rows.append((f"first run: cold [{run['label']}]", f"{run['cold_s']:.0f} s", "", stages))
        rows.append((f"first run: warm / cold [{run['label']}]", f"{100 * run['warm_over_cold']:.1f}%", "warm < 15 s",
                     f"warm {run['warm_s']:.1f} s"))
    if "firstrun_cold_ratio" in report:
        rows.append(("first run: cold, this tree / baseline", f"{100 * report['firstrun_cold_ratio']:.0f}%", "<= 40%",
                     f"load average {report['load_before']:.2f} before, {report['load_after']:.2f} after"))
    for name, value, target, raw in rows:
        print(f"{name:40s} {value:>10s}   " + (f"target {target:10s}" if target else " " * 17) + f"   ({raw})")
    if args.gpu:
        g = report["gpu"]
        print(f"gpu {g['encoder']}: engine {g['engine_images_per_s']:.0f} images/s, forward-only "
              f"{g['forward_only_images_per_s']:.0f} images/s ({100 * g['pipeline_efficiency']:.0f}%)")


if __name__ == "__main__":
    main()
