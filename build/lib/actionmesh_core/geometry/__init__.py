"""Geometry: SDF meshing, mesh clean-up, reference-mesh preparation, point sampling."""
