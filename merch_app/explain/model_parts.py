"""The behaviour model's own score parts, named for people: "model score 4.31 = mean rating 3.44 + …"."""
from __future__ import annotations

from typing import Any

# HybridModel.score_parts keys -> what a merchandiser reads
PART_LABELS = {
    "bilinear": "co-behaviour (uᵀWv)",
    "item_bias": "item bias",
    "history": "own history",
    "trend": "recent sales",
    "global": "mean rating",
    "user_bias": "user bias",
    "user_taste": "user taste",
    "item_bias_damped": "item's rating bias",
}
SHOWN_BELOW = 5e-4  # parts smaller than this are left out of the sentence (they still count in the score)


def model_parts_text(cf: dict[str, Any]) -> str:
    """One line: the model score and its parts, largest first (empty without a model score).

    Parameters
    ----------
    cf
        An :class:`~merch_app.explain.explanation.Explanation`'s ``cf`` dict (``model_score``, ``parts``).

    Returns
    -------
    str
        E.g. ``"model score 4.0100 = mean rating 3.4400 + user taste 0.3500 − user bias 0.2100"``; parts
        under :data:`SHOWN_BELOW` in size are left out and counted as "(n small parts left out)".
    """
    if not cf or "model_score" not in cf:
        return ""
    parts = {k: float(v) for k, v in (cf.get("parts") or {}).items()}
    shown = sorted(((k, v) for k, v in parts.items() if abs(v) >= SHOWN_BELOW), key=lambda kv: -abs(kv[1]))
    sum_text = ""
    for n, (k, v) in enumerate(shown):
        sign = ("−" if v < 0 else "") if n == 0 else (" − " if v < 0 else " + ")
        sum_text += f"{sign}{PART_LABELS.get(k, k)} {abs(v):.4f}"
    text = f"model score {float(cf['model_score']):.4f}" + (" = " + sum_text if sum_text else "")
    hidden = len(parts) - len(shown)
    return text + (f" ({hidden} small part{'s' if hidden != 1 else ''} left out)" if hidden and shown else "")
