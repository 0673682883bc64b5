"""Hybrid search, recommendation and related-item ranking."""
