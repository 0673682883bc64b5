"""Explanations of ranked results, returned as data for the UI to draw."""
from merch_app.explain.explanation import Explanation, explain_item
from merch_app.explain.why_not import ItemNotFound, WhyNot, why_not

__all__ = ["Explanation", "explain_item", "WhyNot", "why_not", "ItemNotFound"]
