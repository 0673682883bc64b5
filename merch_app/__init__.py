"""merch_app: an offline workbench for e-commerce search and recommendation.

Core packages (``data``, ``model``, ``ranking``, ``explain``, ``evaluation``,
``cli``) know nothing of Qt; only ``merch_app.ui`` imports PySide6.
"""
import os as _os

# OpenMP threads (torch, FAISS) sleep instead of spinning when they wait.  The app
# runs several jobs at once (training, as-you-type query encoding, the GUI) on a
# laptop's few cores; with the default busy-waiting, each job's idle threads burn
# the cores the others need: on 2 busy cores a one-query MiniLM encode took
# 1.4 s instead of 3 ms (docs/benchmarks.md, responsiveness).  Read by libgomp
# when it loads, so it is set before any module imports torch or faiss.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
