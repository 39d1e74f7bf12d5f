"""Evaluation: Chamfer-based 3D / 4D / motion metrics (ActionBench protocol, REFERENCE §5)."""
