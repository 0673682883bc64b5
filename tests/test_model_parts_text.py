"""The behaviour model's score parts as one readable line (explain panel and CLI explain)."""
from __future__ import annotations

from merch_app.explain.model_parts import model_parts_text


def test_parts_largest_first_with_signs_and_small_ones_left_out():
    cf = {"model_score": 4.01, "parts": {"global": 3.44, "user_bias": -0.21, "user_taste": 0.35,
                                        "bilinear": 0.0001, "item_bias": 0.43}}
    assert model_parts_text(cf) == ("model score 4.0100 = mean rating 3.4400 + item bias 0.4300"
                                    " + user taste 0.3500 − user bias 0.2100 (1 small part left out)")


def test_a_negative_first_part_and_no_parts():
    assert model_parts_text({"model_score": -0.5, "parts": {"trend": -0.5}}) == \
        "model score -0.5000 = −recent sales 0.5000"
    assert model_parts_text({"model_score": 0.0, "parts": {}}) == "model score 0.0000"
    assert model_parts_text({}) == ""  # anonymous request or no model
