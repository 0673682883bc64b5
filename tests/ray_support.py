"""Shared pieces of the Ray engine tests: one local Ray runtime per test module."""
from __future__ import annotations

import pytest

RAY_CPUS = 2


def start_ray():
    """Start Ray in local mode with 2 CPUs (skip only when the ray extra is absent)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'merch_app[ray]')")
    if not ray.is_initialized():
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    return ray


def add_items(db, rows) -> None:
    with db.conn:
        db.insert_rows("items", rows, replace=True)


WORDS = ("red", "blue", "heart", "candle", "garden", "chair", "mug", "tea", "wooden", "star", "lantern",
         "vintage", "paper", "napkin", "glass", "jar", "cake", "tin", "bag", "doormat")


def synthetic_items(n: int, seed: int = 0) -> list[dict]:
    """``n`` items with varied short titles (some duplicate texts, some empty fields)."""
    import random

    rnd = random.Random(seed)
    rows = []
    for k in range(n):
        title = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 6)))
        rows.append({"item_id": f"I{k:05d}", "title": title.title(),
                     "category": rnd.choice(["Home", "Garden", None]),
                     "tags": rnd.choice(["", '["gift"]', "wax"]),
                     "description": rnd.choice([None, "", "A lovely thing for the house."])})
    return rows
