"""ComfyUI entry point of the ActionMesh node pack.

ComfyUI loads this folder as a package (``custom_nodes/<folder>/__init__.py``).
The folder is appended to ``sys.path`` (once) so that the plain-torch library
``actionmesh_core`` shipped next to this file is importable by its absolute
name; the node package is imported relatively because ComfyUI already owns a
top-level module called ``nodes``.

The nodes are V3 nodes (``comfy_api.latest``): ComfyUI registers them through
``comfy_entrypoint``; ``NODES`` / ``DISPLAY_NAMES`` list them by id for scripts
and tests (the pack has no ``NODE_CLASS_MAPPINGS``: with one, ComfyUI would
take the legacy path and skip the entry point).
"""
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

if __package__:
    from .nodes import DISPLAY_NAMES, NODES, comfy_entrypoint
else:
    # Imported as a plain module, not as a package (pytest does this with the repository
    # root during collection): there is no package to import the nodes from.
    NODES = {}
    DISPLAY_NAMES = {}

# Frontend extension (web/js): flags placeholder input files when a workflow loads.
WEB_DIRECTORY = "./web"

__all__ = ["NODES", "DISPLAY_NAMES", "WEB_DIRECTORY", "comfy_entrypoint"]
