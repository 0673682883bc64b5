"""Make ``resources/demo/online_retail_demo.csv.gz``: a small real subset of Online Retail.

Deterministic (no randomness: choices are made by sha256 of the ids):

1. customers with at least 3 distinct invoices are ranked by sha256 of their
   CustomerID and the first ``--customers`` (300) are kept with ALL their lines;
2. anonymous invoices (no CustomerID) ranked by sha256 of the InvoiceNo are
   kept, first ``--anon-invoices`` of them (150), but only their lines for stock
   codes the chosen customers also bought (so anonymous events add popularity
   to the same items);
3. rows keep the original columns, text and order; the output is gzip level 9
   with a fixed mtime, so the file's bytes (and sha256) are reproducible.

Usage::

    .venv/bin/python benchmarks/make_demo_subset.py [--source PATH] [--out PATH]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
OUT = ROOT / "resources" / "demo" / "online_retail_demo.csv.gz"


def _rank(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def make_subset(source: Path, out: Path, customers: int = 300, anon_invoices: int = 150) -> dict:
    with gzip.open(source, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        invoices = defaultdict(set)
        anon = set()
        for inv, _code, _d, _q, _t, _p, cust, _c in reader:
            if cust:
                invoices[cust].add(inv)
            else:
                anon.add(inv)
    eligible = sorted((c for c, inv in invoices.items() if len(inv) >= 3), key=_rank)
    chosen = set(eligible[:customers])
    chosen_anon = set(sorted(anon, key=_rank)[:anon_invoices])

    kept_customer_rows, anon_rows = [], []
    codes = set()
    with gzip.open(source, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if row[6] in chosen:
                kept_customer_rows.append(row)
                codes.add(row[1])
            elif not row[6] and row[0] in chosen_anon:
                anon_rows.append(row)
    # Both lists are in file order; a stable sort by (date, invoice) interleaves them
    # and keeps the line order inside each invoice.
    anon_rows = [r for r in anon_rows if r[1] in codes]
    rows = sorted(kept_customer_rows + anon_rows, key=lambda r: (r[4], r[0]))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw:
        with gzip.GzipFile(filename="online_retail_demo.csv", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(buf.getvalue().encode("utf-8"))
    return {
        "rows": len(rows),
        "customer_rows": len(kept_customer_rows),
        "anonymous_rows": len(anon_rows),
        "customers": len(chosen),
        "stock_codes": len(codes),
        "bytes": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--anon-invoices", type=int, default=150)
    args = ap.parse_args()
    stats = make_subset(args.source, args.out, args.customers, args.anon_invoices)
    for k, v in stats.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
