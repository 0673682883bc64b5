"""Ranking metrics, baselines and evaluation protocols."""
