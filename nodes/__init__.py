"""ComfyUI nodes of the ActionMesh pack (legacy ``NODE_CLASS_MAPPINGS`` API).

Import this package only relatively (``from .nodes import ...`` in the pack's
root ``__init__.py``): ComfyUI has its own top-level module called ``nodes``.
Only ``host.py`` touches ComfyUI; the node bodies call ``actionmesh_core``.
"""
from . import frame_nodes, generation_nodes, host, loader_nodes, output_nodes

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (loader_nodes, frame_nodes, generation_nodes, output_nodes):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

host.register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
