"""Spatial code: points, distances, the ETA model and the PostGIS candidate search.

This package sits below `dispatch` and never imports it; it knows the database only through
the `workers` / `worker_skills` match index described in `geo.candidates`.
"""
