"""Model files of :class:`~merch_app.model.hybrid.HybridModel`: ``config.json``, ``ids.json``, ``arrays.safetensors``.

Split from :mod:`merch_app.model.hybrid_scoring` (``HybridModel.save`` / ``load`` call these).
Arrays are written and read one tensor at a time (:mod:`merch_app.model.safetensors_io`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from merch_app.errors import MerchAppError
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.history_features import N_HIST, N_TREND, HistoryState
from merch_app.model.safetensors_io import read_arrays, write_arrays

FORMAT_VERSION = 3  # 2: history feature share_of_user; 3: repeat-consumption history features (days, ...)
# combiner layout: α, β, μ, γ (history), η (trend), α_own (format 3: extra bilinear weight on the user's own items)
N_COMBINER = 3 + N_HIST + N_TREND + 1
# Older formats that still load: format -> number of history features it stored.  Their
# combiner gets zero weights for the newer features, so they score exactly as before.
OLD_FORMATS = {2: 5}
REQUIRED = ("P", "Q", "A", "B", "W", "b_item", "b_user", "w_text_bias", "combiner", "T_u", "T_i", "trend")


class ModelLoadError(MerchAppError, ValueError):
    """A saved model cannot be read (message names the file and the problem)."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: file is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return data


def save_model(model, folder: Path) -> None:
    """Write ``config.json``, ``ids.json`` and ``arrays.safetensors`` of ``model`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, "kind": "hybrid", "config": model.config.to_dict(),
            "explicit": model.explicit, "n_users": len(model.user_ids), "n_items": model.n_items,
            "best_epoch": model.best_epoch, "history": model.history}
    (folder / "config.json").write_text(json.dumps(meta, indent=2, default=float))
    ids = {"user_ids": [str(u) for u in model.user_ids], "item_ids": [str(i) for i in model.item_ids]}
    (folder / "ids.json").write_text(json.dumps(ids))
    write_arrays({**model.arrays, **model.state.arrays()}, folder / "arrays.safetensors")


def load_model_files(cls, folder: Path):
    """A ``cls`` model read from ``folder`` (see ``HybridModel.load``); :class:`ModelLoadError` if anything is off."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: model folder does not exist")
    meta, ids = (_read_json(folder / name) for name in ("config.json", "ids.json"))
    if not all(isinstance(ids.get(k), list) for k in ("user_ids", "item_ids")):
        raise ModelLoadError(f"{folder / 'ids.json'}: user_ids / item_ids lists missing")
    fmt = meta.get("format")
    if fmt != FORMAT_VERSION and fmt not in OLD_FORMATS:
        raise ModelLoadError(f"{folder / 'config.json'}: model format {fmt!r} is not "
                             f"{FORMAT_VERSION} (saved by another merch_app version); retrain the model")
    path = folder / "arrays.safetensors"
    try:
        arrays = read_arrays(path)
    except (OSError, SafetensorError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read model arrays ({exc})") from exc
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ModelLoadError(f"{path}: missing arrays {', '.join(missing)}")
    n_hist = OLD_FORMATS.get(fmt, N_HIST)
    n_comb = N_COMBINER if fmt == FORMAT_VERSION else 3 + n_hist + N_TREND
    if arrays["combiner"].shape != (n_comb,):
        raise ModelLoadError(f"{path}: combiner has {arrays['combiner'].size} weights, format {fmt} uses "
                             f"{n_comb}; retrain the model")
    if fmt != FORMAT_VERSION:  # older format: what it did not have (newer features, α_own) gets weight 0
        c = arrays["combiner"]
        arrays["combiner"] = np.concatenate([c[:3 + n_hist], np.zeros(N_HIST - n_hist, c.dtype),
                                             c[3 + n_hist:], np.zeros(1, c.dtype)])
    n_u, n_i = len(ids["user_ids"]), len(ids["item_ids"])
    if arrays["P"].shape[0] != n_u or arrays["Q"].shape[0] != n_i or arrays["T_i"].shape[0] != n_i:
        raise ModelLoadError(f"{path}: array shapes do not match ids.json ({n_u} users, {n_i} items)")
    model = cls(HybridConfig.from_dict(meta.get("config", {})))
    model.user_ids = np.asarray(ids["user_ids"], dtype=object)
    model.item_ids = np.asarray(ids["item_ids"], dtype=object)
    model.explicit = bool(meta.get("explicit"))
    model.best_epoch = int(meta.get("best_epoch", 0))
    model.history = meta.get("history", [])
    try:
        model.state = HistoryState.from_arrays(arrays)
    except KeyError as exc:
        raise ModelLoadError(f"{path}: missing history arrays ({exc})") from exc
    model.arrays = {k: v for k, v in arrays.items() if not k.startswith("hist_")}
    model.combiner = model.arrays["combiner"].copy()
    model._derive(ids=True)
    return model
