"""Model files of :class:`~merch_app.model.hybrid.HybridModel`: ``config.json``, ``ids.json``, ``arrays.safetensors``.

``HybridModel.save`` / ``load`` call these; the format's constants and :class:`ModelLoadError`
live here.
Arrays are written and read one tensor at a time (:mod:`merch_app.model.safetensors_io`).

Nothing read from a model folder is trusted (it may be damaged, or edited by hand):

* every file carries its own checksum, written at save and verified at load: the sha256 of each
  tensor in the ``arrays.safetensors`` header, and a leading ``"sha256"`` key in ``config.json``
  and ``ids.json`` (the sha256 of the file's bytes after that key).  Each file is checked on its
  own, so replacing one file atomically (``services.forget`` scrubs ``ids.json`` and the arrays
  one after the other) never leaves a folder that fails its checks.  Folders written before the
  checksums load unverified;
* the values are validated whether or not a checksum was there: ids unique and matching the array
  lengths, every float finite, history keys sorted and inside the user x item range, config
  fields of the right types; JSON nested too deeply is a damaged file, not a RecursionError.

Every problem is a :class:`ModelLoadError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from merch_app.errors import MerchAppError
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.history_features import N_HIST, N_TREND, HistoryState
from merch_app.model.safetensors_io import read_arrays_deferred, write_arrays

# 2: history feature share_of_user; 3: repeat-consumption history features (days, ...);
# 4: explicit models carry their damped biases (base_user, base_item); 5: seasonal features (history
# log_last_year / log_xmas / log_xmas_near, trend log_sales_last_year / season_lift / xmas_share /
# xmas_share_near, arrays hist_last_year / hist_xmas); 6: cold start (trend feature unsold, combiner
# weight α_cold on the bilinear part of unsold items)
FORMAT_VERSION = 6
# combiner layout: α, β, μ, γ (history), η (trend), α_own (format 3: extra bilinear weight on the user's own
# items), α_cold (format 6: extra bilinear weight on items without sales, learned with config cold_feature)
N_COMBINER = 3 + N_HIST + N_TREND + 2
# Older formats that still load: format -> (history features, trend features) it stored.  Their
# combiner gets zero weights for the newer features (and their trend array zero columns), so they
# score exactly as before; formats 3 and 4 have no seasonal features, format 3 no damped biases
# (an explicit model of format 3 scores with biases 0, i.e. exactly as it did); format 5 has no
# unsold feature and no α_cold.
OLD_FORMATS = {2: (5, 3), 3: (13, 3), 4: (13, 3), 5: (16, 7)}
OPTIONAL_BASES = ("base_user", "base_item")  # format 4, explicit models only: both or neither
REQUIRED = ("P", "Q", "A", "B", "W", "b_item", "b_user", "w_text_bias", "combiner", "T_u", "T_i", "trend")


class ModelLoadError(MerchAppError, ValueError):
    """A saved model cannot be read (message names the file and the problem)."""


_SUM_HEAD = b'{"sha256": "'  # then 64 hex digits and '",': the checksum of every byte after that
_SUM_END = len(_SUM_HEAD) + 64


def _json_bytes(obj: dict, indent: int | None = None) -> bytes:
    """``obj`` (a non-empty dict) as JSON whose first key ``sha256`` is the checksum of the rest."""
    body = json.dumps(obj, indent=indent, default=float).encode("utf-8")
    tail = (b"" if indent else b" ") + body[1:]  # body[0] is the opening brace
    return _SUM_HEAD + hashlib.sha256(tail).hexdigest().encode("ascii") + b'",' + tail


def _read_json(path: Path) -> tuple[dict, bool]:
    """``(object, verified)`` of a JSON file written by :func:`_json_bytes` (or an older, unsummed one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: file is missing") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc})") from exc
    verified = raw.startswith(_SUM_HEAD) and raw[_SUM_END:_SUM_END + 2] == b'",'
    if verified and hashlib.sha256(raw[_SUM_END + 2:]).hexdigest().encode("ascii") != raw[len(_SUM_HEAD):_SUM_END]:
        raise ModelLoadError(f"{path}: file is damaged or was edited (checksum mismatch); retrain the model "
                             "or activate another version")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ModelLoadError(f"{path}: cannot read (JSON nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    data.pop("sha256", None)
    return data, verified


def _config_of(meta: dict, path: Path) -> HybridConfig:
    """The ``config`` of ``config.json`` with every known field of its default's type."""
    saved = meta.get("config", {})
    if not isinstance(saved, dict):
        raise ModelLoadError(f"{path}: 'config' is not a JSON object")
    defaults = HybridConfig()
    for f in fields(HybridConfig):
        if f.name not in saved:
            continue
        value, default = saved[f.name], getattr(defaults, f.name)
        if default is None:
            ok = value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (isinstance(value, int) or isinstance(default, float)))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ModelLoadError(f"{path}: config field {f.name!r} has the value {str(value)[:80]!r}, "
                                 f"not a {type(default).__name__ if default is not None else 'text or number'}")
    return HybridConfig.from_dict(saved)


def _all_finite(arr: np.ndarray, block: int = 1 << 20) -> bool:
    flat = arr.reshape(-1)
    return all(np.isfinite(flat[i:i + block]).all() for i in range(0, flat.size, block))


def _check_values(arrays: dict, n_u: int, n_i: int, path: Path) -> None:
    """Array shapes against the ids, finite floats, history keys in range (:class:`ModelLoadError` if not)."""
    def fail(what: str):
        raise ModelLoadError(f"{path}: {what}; the file is damaged or was edited (retrain the model)")

    for name, arr in arrays.items():
        if name == "hist_keys":
            if arr.dtype.kind not in "iu":
                fail(f"{name} holds {arr.dtype} values, not whole numbers")
        elif arr.dtype.kind != "f":
            fail(f"{name} holds {arr.dtype} values, not floats")
        elif not _all_finite(arr):
            fail(f"{name} holds NaN or infinite values")
    a = arrays
    d = a["P"].shape[-1] if a["P"].ndim else 0
    t = a["T_i"].shape[-1] if a["T_i"].ndim else 0
    want = {"P": (n_u, d), "Q": (n_i, d), "T_u": (n_u, t), "T_i": (n_i, t), "A": (d, t), "B": (d, t),
            "W": (d, d), "b_item": (n_i,), "b_user": (n_u,), "w_text_bias": (t,), "trend": (n_i, N_TREND)}
    if ("base_user" in a) != ("base_item" in a):
        fail("only one of the damped bias arrays base_user / base_item is there")
    want.update({name: (n_u,) if name == "base_user" else (n_i,) for name in OPTIONAL_BASES if name in a})
    if "base_taste" in a:  # explicit models with the user-taste part; older files: none
        if "base_user" not in a:
            fail("base_taste is there without the damped biases base_user / base_item")
        want["base_taste"] = (n_u, t)
    if "unsold_at_fit" in a:  # since the related-items fallback; older files: every item counts as sold
        want["unsold_at_fit"] = (n_i,)
    for name, shape in want.items():
        if a[name].shape != shape:
            fail(f"{name} has shape {a[name].shape}, expected {shape} ({n_u} users and {n_i} items in ids.json)")
    meta = a.get("hist_meta")
    if meta is None or meta.shape != (3,) or meta[1] != n_u or meta[2] != n_i:
        fail(f"hist_meta {None if meta is None else meta.tolist()} does not match {n_u} users and {n_i} items")
    keys = a.get("hist_keys")
    if keys is None or keys.ndim != 1:
        fail("hist_keys is missing or not a list")
    if len(keys) and (keys[0] < 0 or keys[-1] >= n_u * n_i or not bool(np.all(keys[1:] > keys[:-1]))):
        fail("history keys are not sorted, repeat, or point outside the user x item range")
    for name in ("count", "recent", "last_age", "days", "span", "abs_age", "last_year", "xmas"):
        arr = a.get("hist_" + name)
        if arr is not None and arr.shape != keys.shape:
            fail(f"hist_{name} has {arr.size} values for {keys.size} history keys")
    for name, shape in (("hist_item_repeat", (n_i,)), ("hist_item_sales", (n_i, 3))):
        if name in a and a[name].shape != shape:
            fail(f"{name} has shape {a[name].shape}, expected {shape}")


def _check_ids(ids: dict, path: Path) -> tuple[list, list]:
    users, items = ids.get("user_ids"), ids.get("item_ids")
    if not isinstance(users, list) or not isinstance(items, list):
        raise ModelLoadError(f"{path}: user_ids / item_ids lists missing")
    for what, values in (("user", users), ("item", items)):
        if values and set(map(type, values)) != {str}:  # map(type): C speed (a million ids: ~10 ms)
            raise ModelLoadError(f"{path}: {what} ids must be text")
        if len(set(values)) != len(values):
            raise ModelLoadError(f"{path}: {what} ids repeat; the file is damaged or was edited (retrain the model)")
    return users, items


def save_model(model, folder: Path) -> None:
    """Write ``config.json``, ``ids.json`` and ``arrays.safetensors`` of ``model`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, "kind": "hybrid", "config": model.config.to_dict(),
            "explicit": model.explicit, "n_users": len(model.user_ids), "n_items": model.n_items,
            "best_epoch": model.best_epoch, "history": model.history}
    (folder / "config.json").write_bytes(_json_bytes(meta, indent=2))
    ids = {"user_ids": [str(u) for u in model.user_ids], "item_ids": [str(i) for i in model.item_ids]}
    (folder / "ids.json").write_bytes(_json_bytes(ids))
    write_arrays({**model.arrays, **model.state.arrays()}, folder / "arrays.safetensors")  # with checksums


def load_model_files(cls, folder: Path):
    """A ``cls`` model read from ``folder`` (see ``HybridModel.load``); :class:`ModelLoadError` if anything is off."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: model folder does not exist")
    (meta, meta_ok), (ids, ids_ok) = (_read_json(folder / name) for name in ("config.json", "ids.json"))
    user_ids, item_ids = _check_ids(ids, folder / "ids.json")
    fmt = meta.get("format")
    if fmt != FORMAT_VERSION and fmt not in OLD_FORMATS:
        raise ModelLoadError(f"{folder / 'config.json'}: model format {fmt!r} is not "
                             f"{FORMAT_VERSION} (saved by another merch_app version); retrain the model")
    path = folder / "arrays.safetensors"
    try:
        arrays, verify_arrays = read_arrays_deferred(path)  # large tensors still being hashed
    except (OSError, SafetensorError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read model arrays ({exc})") from exc
    try:
        model = _build(cls, meta, fmt, user_ids, item_ids, arrays, path)
    except ModelLoadError:  # a damaged file says so rather than what it broke
        _verified(verify_arrays, path)
        raise
    arrays_ok = _verified(verify_arrays, path)  # always waited for: a damaged tensor fails the load
    model.checksums_verified = meta_ok and ids_ok and arrays_ok  # False: a folder saved before checksums
    return model


def _verified(verify, path: Path) -> bool:
    try:
        return verify()
    except ValueError as exc:
        raise ModelLoadError(f"{path}: cannot read model arrays ({exc})") from exc


def _build(cls, meta: dict, fmt, user_ids: list, item_ids: list, arrays: dict, path: Path):
    """The model of checked ids and arrays (their checksums may still be running)."""
    folder = path.parent
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ModelLoadError(f"{path}: missing arrays {', '.join(missing)}")
    n_hist, n_trend = OLD_FORMATS.get(fmt, (N_HIST, N_TREND))
    has_own = fmt == FORMAT_VERSION or fmt >= 3  # α_own since format 3
    has_cold = fmt == FORMAT_VERSION  # α_cold since format 6
    n_comb = 3 + n_hist + n_trend + int(has_own) + int(has_cold)
    if arrays["combiner"].shape != (n_comb,):
        raise ModelLoadError(f"{path}: combiner has {arrays['combiner'].size} weights, format {fmt} uses "
                             f"{n_comb}; retrain the model")
    if fmt != FORMAT_VERSION:  # older formats: the newer features (α_own before format 3, α_cold) get weight 0
        c = arrays["combiner"]
        gamma, eta, own = c[3:3 + n_hist], c[3 + n_hist:3 + n_hist + n_trend], c[3 + n_hist + n_trend:]
        arrays["combiner"] = np.concatenate([c[:3], gamma, np.zeros(N_HIST - n_hist, c.dtype), eta,
                                             np.zeros(N_TREND - n_trend, c.dtype),
                                             own if has_own else np.zeros(1, c.dtype), np.zeros(1, c.dtype)])
        trend = arrays["trend"]
        if trend.ndim == 2 and trend.shape[1] == n_trend:
            arrays["trend"] = np.hstack([trend, np.zeros((len(trend), N_TREND - n_trend), trend.dtype)])
    n_u, n_i = len(user_ids), len(item_ids)
    if arrays["P"].shape[:1] != (n_u,) or arrays["Q"].shape[:1] != (n_i,) or arrays["T_i"].shape[:1] != (n_i,):
        raise ModelLoadError(f"{path}: array shapes do not match ids.json ({n_u} users, {n_i} items)")
    _check_values(arrays, n_u, n_i, path)
    config = _config_of(meta, folder / "config.json")
    best_epoch, history = meta.get("best_epoch", 0), meta.get("history", [])
    if not isinstance(best_epoch, int) or not isinstance(history, list) \
            or not all(isinstance(h, dict) for h in history):
        raise ModelLoadError(f"{folder / 'config.json'}: best_epoch / history have the wrong type")
    model = cls(config)
    model.user_ids = np.asarray(user_ids, dtype=object)
    model.item_ids = np.asarray(item_ids, dtype=object)
    model.explicit = bool(meta.get("explicit"))
    model.best_epoch = best_epoch
    model.history = history
    try:
        model.state = HistoryState.from_arrays(arrays)
    except KeyError as exc:
        raise ModelLoadError(f"{path}: missing history arrays ({exc})") from exc
    model.arrays = {k: v for k, v in arrays.items() if not k.startswith("hist_")}
    model.combiner = model.arrays["combiner"].copy()
    model._derive(ids=True)  # meanwhile the second thread hashes the large tensors
    return model
