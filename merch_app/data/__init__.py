"""Workspace storage (SQLite) and CSV import."""
