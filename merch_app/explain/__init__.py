"""Explanations of ranked results, returned as data for the UI to draw."""
