"""merch_app: an offline workbench for e-commerce search and recommendation.

Core packages (``data``, ``model``, ``ranking``, ``explain``, ``evaluation``,
``cli``) know nothing of Qt; only ``merch_app.ui`` imports PySide6.
"""
__version__ = "0.1.0"
