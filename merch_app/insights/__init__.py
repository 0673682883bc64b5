"""Insight views as plain data: user profiles, behaviour paths and funnels,
heatmaps, user segments, embedding maps and the catalogue doctor.

Every function here is Qt-free: it takes a workspace database (and, for the
vector views, a :class:`~merch_app.model.bundle.ModelBundle`) and returns
dataclasses, dicts or numpy arrays that the UI charts and the CLI prints.
"""
