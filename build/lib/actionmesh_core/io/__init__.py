"""Mesh and animation input/output (animated mesh type, GLB export, mesh import)."""
