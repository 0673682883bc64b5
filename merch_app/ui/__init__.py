"""The Qt (PySide6) skin: screens start core jobs in workers and draw results."""
from merch_app.ui.compat import shield_pyside_612_refcount

shield_pyside_612_refcount()
