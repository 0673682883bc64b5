"""The jobs of ``bench_scale.py``, each run in a fresh child process.

``python benchmarks/scale_jobs.py JOB --ws WORKSPACE [--data DIR] [...]``
runs one job and prints its measurements as one JSON line (the parent reads
wall time, CPU time and peak RSS from ``os.wait4``).  Jobs:

``import``      the two CSV files (catalogue, events) into a fresh workspace with ``import_file``;
``seed``        untimed preparation: composed vectors for all but a sample of item texts
                (see ``synth_vectors.py``);
``encode``      ``encode_items`` through the embedding cache with the real MiniLM;
``encode_ref``  a plain transformers loop, ``BertEncoder`` fp32 and int8 on the same sample;
``train``       ``merch_app.services.training.train`` (the Train screen's job) for a few epochs;
``train_ref``   a plain PyTorch matrix-factorisation loop over the same (user, item) pairs;
``query``       the app's query path: load the active model bundle, ``Ranker``, as-you-type typing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import emit, percentiles  # noqa: E402
from synth_data import ADJECTIVES, NOUNS  # noqa: E402

from merch_app.data.workspace import open_workspace  # noqa: E402


def typed_queries(count: int, seed: int = 5) -> list[str]:
    """Shopper queries of 1-3 vocabulary words ("red heart mug"), distinct."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        words = [ADJECTIVES[rng.integers(len(ADJECTIVES))] for _ in range(rng.integers(0, 3))]
        out.setdefault(" ".join(words + [NOUNS[rng.integers(len(NOUNS))]]), None)
    return list(out)


# --------------------------------------------------------------------------- import
def job_import(ws: Path, data: Path) -> dict:
    from merch_app.data.importer import import_file

    db = open_workspace(ws)
    out = {}
    for name in ("catalogue", "events"):
        t0 = time.perf_counter()
        r = import_file(db, data / f"{name}.csv.gz")
        out[name] = {"seconds": time.perf_counter() - t0, "rows": r.rows_read, "rejected": r.rows_rejected,
                     "items": r.items, "events": r.events_added}
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return out


# --------------------------------------------------------------------------- encode
def _encoder(quantize: str | None):
    from merch_app.model.encoder import load_encoder

    return load_encoder("minilm", quantize=quantize or None)


def job_seed(ws: Path, quantize: str | None, fresh: int) -> dict:
    from synth_vectors import seed_embedding_cache

    db = open_workspace(ws)
    t0 = time.perf_counter()
    out = seed_embedding_cache(db, _encoder(quantize), keep_fresh=fresh)
    db.close()
    return {**out, "seconds": time.perf_counter() - t0}


def job_encode(ws: Path, quantize: str | None, batch_size: int) -> dict:
    from merch_app.model.item_vectors import encode_items

    db = open_workspace(ws)
    encoder = _encoder(quantize)
    t_load = time.perf_counter()
    res = encode_items(db, encoder, batch_size=batch_size)
    s = res.stats
    db.close()
    return {"items": len(res.item_ids), "distinct": s.texts, "encoded": s.encoded, "cached": s.cached,
            "seconds": s.seconds, "since_load": time.perf_counter() - t_load, "encoder_id": encoder.encoder_id}


def _plain_loop(texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, float]:
    """The straightforward transformers loop (file order, fixed batches, mean pooling)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from merch_app.model.bert_encoder import default_model_dir

    d = str(default_model_dir())
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModel.from_pretrained(d, local_files_only=True).eval()
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            b = tok(texts[s:s + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1).numpy())
    return np.vstack(out), time.perf_counter() - t0


def job_encode_ref(ws: Path, n: int, batch_size: int) -> dict:
    """Throughput and fp32/int8 agreement on ``n`` distinct item texts of the workspace."""
    from merch_app.model.bert_encoder import BertEncoder
    from merch_app.model.item_vectors import item_texts

    db = open_workspace(ws)
    texts = sorted(set(item_texts(db)[1]))
    db.close()
    texts = [texts[i] for i in np.random.default_rng(1).permutation(len(texts))[:n]]
    out: dict = {"n": len(texts), "mean_chars": float(np.mean([len(t) for t in texts]))}
    vecs = {}
    plain, out["plain_s"] = _plain_loop(texts)
    for name, q in (("fp32", None), ("int8", "int8")):
        enc = BertEncoder(quantize=q)
        enc.encode(texts[:32])
        t0 = time.perf_counter()
        vecs[name] = enc.encode(texts, batch_size=batch_size)
        out[f"{name}_s"] = time.perf_counter() - t0
        vecs[name + "_q"] = enc.encode(typed_queries(50))
    cos = (vecs["fp32"] * vecs["int8"]).sum(1)
    out["cos_int8_mean"], out["cos_int8_min"] = float(cos.mean()), float(cos.min())
    out["cos_plain_min"] = float((vecs["fp32"] * plain).sum(1).min())
    top32 = np.argsort(-(vecs["fp32_q"] @ vecs["fp32"].T), axis=1)[:, :10]
    top8 = np.argsort(-(vecs["int8_q"] @ vecs["int8"].T), axis=1)[:, :10]
    out["top10_overlap"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top32, top8)]))
    return out


# --------------------------------------------------------------------------- train
def _training_events(db) -> int:
    return db.execute("SELECT count(*) FROM events WHERE user_id IS NOT NULL AND item_id IS NOT NULL "
                      "AND event_type != 'search'").fetchone()[0]


def job_train(ws: Path, epochs: int, quantize: str | None) -> dict:
    """The Train screen's job (``training.train``) with a fixed number of epochs, timed by phase."""
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train

    db = open_workspace(ws)
    encoder = _encoder(quantize)
    config = HybridConfig(epochs=epochs, min_epochs=epochs, refit_epochs=0, early_stopping_patience=epochs + 1,
                          activate="always")
    phases: dict[str, float] = {}  # phase -> time of its first report
    marks: list[tuple[float, dict]] = []
    phase_rss: dict[str, float] = {}  # phase -> largest RSS (MiB) seen at its reports

    def progress(p) -> None:
        d = p.data or {}
        now = time.perf_counter()
        name = d.get("phase") or "?"
        phases.setdefault(name, now)
        phase_rss[name] = max(phase_rss.get(name, 0.0), _rss_mib())
        if d.get("epoch_end"):
            marks.append((now, dict(d)))

    t0 = time.perf_counter()
    version = train(db, config, progress=progress, encoder=encoder)
    total = time.perf_counter() - t0
    db.close()
    t_train = phases.get("train", t0)
    starts = [t_train] + [t for t, _ in marks[:-1]]
    epochs_s = [(t - s, d) for (t, d), s in zip(marks, starts)]
    train_s = [s for s, d in epochs_s if not d.get("refit")]
    refit_s = [s for s, d in epochs_s if d.get("refit")]
    last = next((d for _, d in reversed(marks) if "val_ndcg@10" in d), {})
    t_eval = phases.get("evaluate", marks[-1][0] if marks else t0)
    snap = version.data_snapshot or {}
    return {"train_events": snap.get("train_events"), "users": snap.get("users"), "epochs": len(train_s),
            "epoch_s": float(np.mean(train_s)) if train_s else None,
            "refit_epoch_s": float(np.mean(refit_s)) if refit_s else None, "total_s": total,
            "prepare_s": t_train - t0, "fit_s": (marks[-1][0] if marks else t_train) - t_train,
            "evaluate_save_s": t0 + total - t_eval, "val_ndcg@10": last.get("val_ndcg@10"),
            "model": version.model_id, "phase_rss_mib": phase_rss}


def _rss_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``), MiB; 0 elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _load_pairs(db) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Distinct (user, item) index pairs of the training events, read in chunks."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    keys = []
    cur = db.conn.execute("SELECT user_id, item_id FROM events WHERE user_id IS NOT NULL AND item_id IS NOT NULL "
                          "AND event_type != 'search'")
    while True:
        rows = cur.fetchmany(200_000)
        if not rows:
            break
        u = np.fromiter((users.setdefault(r[0], len(users)) for r in rows), np.int64, len(rows))
        i = np.fromiter((items.setdefault(r[1], len(items)) for r in rows), np.int64, len(rows))
        keys.append(u * 10_000_000 + i)
    k = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    return k // 10_000_000, k % 10_000_000, len(users), len(items)


def job_train_ref(ws: Path, epochs: int, dim: int = 64, batch: int = 4096, negatives: int = 512) -> dict:
    """Plain PyTorch MF: dot product of ID embeddings, BCE against shared sampled negatives, Adam."""
    import torch

    db = open_workspace(ws)
    n_events = _training_events(db)
    t0 = time.perf_counter()
    u, i, n_u, n_i = _load_pairs(db)
    db.close()
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    P = torch.nn.Embedding(n_u, dim)
    Q = torch.nn.Embedding(n_i, dim)
    torch.nn.init.normal_(P.weight, std=0.01)
    torch.nn.init.normal_(Q.weight, std=0.01)
    opt = torch.optim.Adam(list(P.parameters()) + list(Q.parameters()), lr=0.005)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        order = rng.permutation(len(u))
        for s in range(0, len(u), batch):
            ub = torch.from_numpy(u[order[s:s + batch]])
            ib = torch.from_numpy(i[order[s:s + batch]])
            neg = torch.from_numpy(rng.integers(0, n_i, negatives))
            pu = P(ub)
            pos = (pu * Q(ib)).sum(-1)
            negl = pu @ Q(neg).T
            loss = torch.nn.functional.softplus(-pos).mean() + 4 * torch.nn.functional.softplus(negl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return {"events": n_events, "pairs": int(len(u)), "epochs": epochs, "epoch_s": float(np.mean(times)),
            "load_s": load_s}


# --------------------------------------------------------------------------- query
def job_query(ws: Path, n_queries: int) -> dict:
    """The query path of the app: active model bundle, rules, Ranker, one request per keystroke."""
    from merch_app.model.bundle import load_bundle
    from merch_app.ranking.ranker import Ranker
    from merch_app.ranking.rules import load_rules
    from merch_app.ranking.types import RankRequest

    db = open_workspace(ws)
    t0 = time.perf_counter()
    bundle = load_bundle(db)
    t_bundle = time.perf_counter() - t0
    ranker = Ranker(db, bundle, rules=load_rules(db, enabled_only=True))
    t_ranker = time.perf_counter() - t0 - t_bundle
    queries = typed_queries(n_queries, seed=17)
    t = time.perf_counter()
    ranker.rank(RankRequest(query="warm up the caches", k=50))
    first = time.perf_counter() - t
    times, whole_words = [], []
    for q in queries:
        for n in range(1, len(q) + 1):
            prefix = q[:n]
            if not prefix.strip():
                continue
            t = time.perf_counter()
            rl = ranker.rank(RankRequest(query=prefix, k=50))
            times.append(time.perf_counter() - t)
            if n == len(q):
                whole_words.append(times[-1])
            assert len(rl.item_ids) > 0, prefix
    db.close()
    return {"items": len(bundle.item_ids), "index": getattr(bundle.index, "kind", "?"),
            "model": bundle.version.model_id if bundle.version else None, "bundle_s": t_bundle,
            "ranker_s": t_ranker, "first_ms": first * 1000, "keystrokes": percentiles(times),
            "full_queries": percentiles(whole_words), "queries": len(queries)}


def job_query_ref(ws: Path, n_queries: int, quantize: str | None) -> dict:
    """References over the same vectors and keystrokes: numpy brute force and FAISS flat (top 300)."""
    import faiss

    from merch_app.model.item_vectors import item_text_vectors

    db = open_workspace(ws)
    encoder = _encoder(quantize)
    _ids, vectors = item_text_vectors(db, encoder)
    db.close()
    vectors = np.ascontiguousarray(vectors, np.float32)  # the references keep float32 vectors (the app: float16 from 100k)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    prefixes = [q[:n] for q in typed_queries(n_queries, seed=17) for n in range(1, len(q) + 1) if q[:n].strip()]
    brute, faiss_s, enc_s = [], [], []
    for text in prefixes:
        t = time.perf_counter()
        qv = encoder.encode([text + " ."])  # new text: no cache hit
        t1 = time.perf_counter()
        sims = vectors @ qv[0]
        top = np.argpartition(-sims, 300)[:300]
        _ = top[np.argsort(-sims[top])]
        brute.append(time.perf_counter() - t)
        enc_s.append(t1 - t)
        t = time.perf_counter()
        flat.search(qv, 300)
        faiss_s.append(time.perf_counter() - t + enc_s[-1])  # both include encoding the query
    return {"items": len(vectors), "brute": percentiles(brute), "flat": percentiles(faiss_s),
            "encode": percentiles(enc_s)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", choices=["import", "seed", "encode", "encode_ref", "train", "train_ref", "query", "query_ref"])
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--quantize", default=None)
    ap.add_argument("--n", type=int, default=1000, help="texts (seed: left fresh; encode_ref: sample)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--queries", type=int, default=30)
    a = ap.parse_args(argv)
    q = None if a.quantize in (None, "", "none") else a.quantize
    if not a.job.endswith("_ref"):  # the app's jobs run as merch-app starts them; references as they are
        from merch_app.memory import configure_allocator

        configure_allocator()
    jobs = {
        "import": lambda: job_import(a.ws, a.data),
        "seed": lambda: job_seed(a.ws, q, a.n),
        "encode": lambda: job_encode(a.ws, q, a.batch_size),
        "encode_ref": lambda: job_encode_ref(a.ws, a.n, a.batch_size),
        "train": lambda: job_train(a.ws, a.epochs, q),
        "train_ref": lambda: job_train_ref(a.ws, a.epochs),
        "query": lambda: job_query(a.ws, a.queries),
        "query_ref": lambda: job_query_ref(a.ws, a.queries, q),
    }
    emit(jobs[a.job]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
