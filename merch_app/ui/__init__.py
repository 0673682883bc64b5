"""The Qt (PySide6) skin: screens start core jobs in workers and draw results."""
