"""ActionMesh core: a plain-torch implementation of ActionMesh (CVPR 2026).

Video of a moving object -> animated 3D mesh with one fixed topology
(a reference/anchor mesh plus per-frame vertex positions).

This package never imports ComfyUI; the ComfyUI adapters live in ``nodes/``.
"""

__version__ = "0.1.0"
