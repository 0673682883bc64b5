"""Headless command-line interface over the same core functions as the GUI."""
