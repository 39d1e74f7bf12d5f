"""ComfyUI entry point of the ActionMesh node pack.

ComfyUI loads this folder as a package (``custom_nodes/<folder>/__init__.py``).
The folder is appended to ``sys.path`` (once) so that the plain-torch library
``actionmesh_core`` shipped next to this file is importable by its absolute
name; the node package is imported relatively because ComfyUI already owns a
top-level module called ``nodes``.
"""
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Imported as a plain module, not as a package (pytest does this with the repository
    # root during collection): there is no package to import the nodes from.
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}

# Frontend extension (web/js): flags placeholder input files when a workflow loads.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
