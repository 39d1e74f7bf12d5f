"""ComfyUI nodes of the ActionMesh pack, on ComfyUI's V3 schema (``comfy_api.latest``).

Every node is an ``io.ComfyNode`` (``define_schema`` + ``execute``) registered through
:func:`comfy_entrypoint`, as core's ``comfy_extras`` modules are; outside ComfyUI the same classes run on
the stand-in of ``host_io``. Import this package only relatively (``from .nodes import ...`` in the pack's
root ``__init__.py``): ComfyUI has its own top-level module called ``nodes``. Only the ``host*.py`` modules
touch ComfyUI; the node bodies call the stage layer of ``actionmesh_core`` (``actionmesh_core.stages``).
"""
from . import frame_nodes, generation_nodes, host, loader_nodes, output_nodes

host.register_model_folders()

#: every node class, in menu order
NODE_LIST = [*loader_nodes.NODES, *frame_nodes.NODES, *generation_nodes.NODES, *output_nodes.NODES]
#: node id -> class, and node id -> display name (what ComfyUI registers from the schemas)
NODES = {}
DISPLAY_NAMES = {}
for _cls in NODE_LIST:
    _schema = _cls.GET_SCHEMA()
    NODES[_schema.node_id] = _cls
    DISPLAY_NAMES[_schema.node_id] = _schema.display_name


class ActionMeshExtension(host.ComfyExtension):
    """The pack as a ComfyUI extension: its node list."""

    async def get_node_list(self) -> list:
        return list(NODE_LIST)


async def comfy_entrypoint() -> ActionMeshExtension:
    """ComfyUI's V3 entry point for a custom-node package (called once when the pack loads)."""
    return ActionMeshExtension()


__all__ = ["NODES", "DISPLAY_NAMES", "NODE_LIST", "comfy_entrypoint"]
