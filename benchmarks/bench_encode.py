"""Encoding benchmark: BertEncoder fp32 / int8 vs a plain transformers loop.

Texts: ~4,000 real product titles from UCI Online Retail (the most frequent
Description of each StockCode).  Measures texts/s of

* ``BertEncoder`` fp32 (length-sorted batches of 64, inference_mode),
* ``BertEncoder`` int8 (dynamic per-channel quantisation of nn.Linear),
* a plain transformers loop (AutoModel, fixed batches of 64 in file order,
  no length sorting, mean pooling) over the same texts,
* a re-run through the workspace embedding cache (everything cached),

and the fp32-vs-int8 agreement (mean cosine, top-10 overlap for 20 queries).
The result replaces the ``<!-- bench:encode -->`` section of docs/benchmarks.md.

Usage::

    .venv/bin/python benchmarks/bench_encode.py [--limit 4000] [--repeat 2] [--no-write]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from merch_app.model.bert_encoder import BertEncoder, default_model_dir

ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
BENCH_DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:encode -->", "<!-- /bench:encode -->"
QUERIES = [
    "red heart candle holder", "christmas decoration", "vintage doormat", "children's lunch box",
    "glass tea light holder", "paper party napkins", "garden sign", "pink polka dot bag",
    "wooden picture frame", "enamel mug", "cake stand", "birthday card", "storage tin",
    "knitted hot water bottle", "alarm clock", "jam making set", "ribbon", "lantern",
    "retro spot umbrella", "wall clock kitchen",
]


def load_titles(path: Path = ONLINE_RETAIL, limit: int | None = None) -> list[str]:
    """Most frequent non-empty Description per StockCode, ordered by StockCode."""
    by_code: dict[str, Counter] = defaultdict(Counter)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            desc = (row.get("Description") or "").strip()
            if desc:
                by_code[row["StockCode"].strip()][desc] += 1
    titles = [by_code[c].most_common(1)[0][0] for c in sorted(by_code)]
    return titles[:limit] if limit else titles


def plain_transformers_loop(texts: list[str], batch_size: int = 64, max_length: int = 128) -> tuple[np.ndarray, float]:
    """The straightforward way: fixed batches in input order, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = str(default_model_dir())
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tok(texts[start : start + batch_size], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.vstack(out), time.perf_counter() - t0


def timed_encode(encoder, texts: list[str], repeat: int) -> tuple[np.ndarray, float]:
    encoder.encode(texts[:64])  # warm-up (allocations, first-call overheads)
    best, vecs = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        vecs = encoder.encode(texts)
        best = min(best, time.perf_counter() - t0)
    return vecs, best


def cached_rerun(encoder, texts: list[str]) -> dict:
    """Encode the titles as a catalogue twice through the embedding cache."""
    from merch_app.data.workspace import open_workspace
    from merch_app.model.item_vectors import encode_items

    with tempfile.TemporaryDirectory() as d:
        db = open_workspace(Path(d) / "bench.merch.sqlite")
        with db.conn:
            db.insert_rows("items", 
                ({"item_id": f"{i:05d}", "title": t} for i, t in enumerate(texts))
            )
        first = encode_items(db, encoder).stats
        second = encode_items(db, encoder).stats
        db.close()
    return {"first_s": first.seconds, "first_encoded": first.encoded,
            "second_s": second.seconds, "second_encoded": second.encoded}


def topk_overlap(q32, c32, q8, c8, k: int = 10) -> float:
    top32 = np.argsort(-(q32 @ c32.T), axis=1)[:, :k]
    top8 = np.argsort(-(q8 @ c8.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top32, top8)]))


def run(limit: int | None = None, repeat: int = 2) -> dict:
    import torch

    texts = load_titles(limit=limit)
    n = len(texts)
    fp32 = BertEncoder()
    int8 = BertEncoder(quantize="int8")
    v32, s32 = timed_encode(fp32, texts, repeat)
    v8, s8 = timed_encode(int8, texts, repeat)
    plain_best, vplain = float("inf"), None
    for _ in range(repeat):
        vplain, s = plain_transformers_loop(texts)
        plain_best = min(plain_best, s)
    cos8 = (v32 * v8).sum(1)
    cos_plain = (v32 * vplain).sum(1)
    cache = cached_rerun(int8, texts)
    return {
        "n_texts": n,
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "fp32_tps": n / s32, "int8_tps": n / s8, "plain_tps": n / plain_best,
        "fp32_s": s32, "int8_s": s8, "plain_s": plain_best,
        "cos_int8_mean": float(cos8.mean()), "cos_int8_min": float(cos8.min()),
        "cos_plain_min": float(cos_plain.min()),
        "top10_overlap": topk_overlap(fp32.encode(QUERIES), v32, int8.encode(QUERIES), v8),
        "cache": cache,
        "encoder_id": fp32.encoder_id,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def render(r: dict) -> str:
    c = r["cache"]
    return "\n".join([
        START,
        "## Text encoding (all-MiniLM-L6-v2, CPU)",
        "",
        f"{r['n_texts']:,} real Online Retail titles (most frequent Description per StockCode, "
        f"{r['mean_chars']:.0f} chars on average), max 128 tokens, batches of 64; "
        f"best of repeated runs on {r['cores']} cores / {r['threads']} torch threads "
        f"(torch {r['torch']}, load average {r['load']:.1f} from other jobs at start). "
        f"Encoder id `{r['encoder_id']}`. Produced by `benchmarks/bench_encode.py`.",
        "",
        "| encoder | seconds | texts/s | vs plain loop |",
        "|---|---:|---:|---:|",
        f"| plain transformers loop (fixed batches, file order) | {r['plain_s']:.2f} | {r['plain_tps']:.0f} | 1.00x |",
        f"| `BertEncoder` fp32 (length-sorted batches) | {r['fp32_s']:.2f} | {r['fp32_tps']:.0f} | "
        f"{r['fp32_tps'] / r['plain_tps']:.2f}x |",
        f"| `BertEncoder` int8 (dynamic, per-channel) | {r['int8_s']:.2f} | {r['int8_tps']:.0f} | "
        f"{r['int8_tps'] / r['plain_tps']:.2f}x |",
        f"| int8 through the embedding cache, first run | {c['first_s']:.2f} | "
        f"{c['first_encoded'] / c['first_s']:.0f} | |",
        f"| same catalogue again (all {r['n_texts']:,} cached, {c['second_encoded']} encoded) | "
        f"{c['second_s']:.2f} | {r['n_texts'] / c['second_s']:.0f} | |",
        "",
        f"Agreement fp32 vs int8: mean cosine **{r['cos_int8_mean']:.4f}** (min {r['cos_int8_min']:.4f}); "
        f"top-10 overlap over {len(QUERIES)} sample queries **{r['top10_overlap']:.2f}**. "
        f"`BertEncoder` fp32 vs the plain loop: min cosine {r['cos_plain_min']:.6f} "
        "(sorting changes only the padding, not the vectors).",
        END,
    ])


def write_section(section: str, path: Path = BENCH_DOC) -> None:
    """Replace (or append) the encode section, keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="use only the first N titles")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per encoder (best is kept)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    section = render(run(args.limit, max(1, args.repeat)))
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"updated {BENCH_DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
