"""ComfyUI's V3 node schema (``comfy_api.latest``: ``io``, ``ComfyExtension``), or a stand-in outside ComfyUI.

Inside ComfyUI the nodes are ``io.ComfyNode`` classes of the host itself,
declared with ``define_schema`` and run through ``execute``, as core's
``comfy_extras`` modules are. Outside it (tests, scripts) the same node
classes run on :class:`FallbackIO`: the part of the V3 schema the pack uses,
with the same V1 view ComfyUI serves for a V3 node (``INPUT_TYPES()``,
``RETURN_TYPES``, ``FUNCTION = "EXECUTE_NORMALIZED"``, ``GET_SCHEMA()``).
``tests/host/test_real_host.py`` checks that this view equals what the real host
serves in ``/object_info`` for every node of the pack.

Verified against ComfyUI 0.27.0 (``comfy_api/latest/_io.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .host_base import _import, has_comfy

__all__ = ["io", "ComfyExtension", "HOST_V3", "FallbackIO"]


def _pruned(values: dict) -> dict:
    return {key: value for key, value in values.items() if value is not None}


class _Input:
    """One input socket or widget: the host's ``Input.as_dict`` keys, ``None`` values left out."""

    io_type = "*"
    widget = False
    fixed: dict = {}  # entries the host always serialises for this kind (e.g. a combo's multiselect False)

    def __init__(self, id: str, display_name: Optional[str] = None, optional: bool = False,
                 tooltip: Optional[str] = None, lazy: Optional[bool] = None, advanced: Optional[bool] = None,
                 **options):
        self.id, self.display_name, self.optional = id, display_name, optional
        self.tooltip, self.lazy, self.advanced = tooltip, lazy, advanced
        self.options = options

    def get_io_type(self) -> str:
        return self.io_type

    def as_dict(self) -> dict:
        names = {"control_after_generate": "control_after_generate", "display_mode": "display"}
        entries = _pruned({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy,
                           "advanced": self.advanced})
        if self.widget:
            entries.update(_pruned({"default": self.options.get("default")}))
            entries.update(self.fixed)
            entries.update(_pruned({names.get(k, k): v for k, v in self.options.items() if k != "default"}))
        return entries


class _Output:
    io_type = "*"

    def __init__(self, id: Optional[str] = None, display_name: Optional[str] = None, tooltip: Optional[str] = None,
                 is_output_list: bool = False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name or id, tooltip, is_output_list


def _socket_type(io_type: str, widget: bool = False, fixed: Optional[dict] = None):
    """A ComfyType stand-in: ``.io_type``, ``.Input`` and ``.Output`` bound to ``io_type``."""
    attrs = {"io_type": io_type, "widget": widget, "fixed": dict(fixed or {})}
    return type(f"Type_{io_type}", (), {"io_type": io_type, "Input": type("Input", (_Input,), attrs),
                                        "Output": type("Output", (_Output,), {"io_type": io_type})})


class _MultiType:
    io_type = "COMFY_MULTITYPED_V3"

    class Input(_Input):
        def __init__(self, id: str, types: list, **options):
            super().__init__(id, **options)
            self.types = list(types)

        def get_io_type(self) -> str:
            return ",".join(dict.fromkeys(t.io_type for t in self.types))


@dataclass
class _Schema:
    node_id: str
    display_name: Optional[str] = None
    category: str = "sd"
    inputs: List[Any] = field(default_factory=list)
    outputs: List[Any] = field(default_factory=list)
    hidden: List[Any] = field(default_factory=list)
    description: str = ""
    search_aliases: List[str] = field(default_factory=list)
    is_output_node: bool = False
    not_idempotent: bool = False


class _NodeOutput:
    """``io.NodeOutput``: the outputs in order (``result``, ``node_output[i]``) and an optional UI payload."""

    def __init__(self, *args: Any, ui: Optional[dict] = None, expand: Optional[dict] = None,
                 block_execution: Optional[str] = None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class _NodeType(type):
    """The V1 class attributes ComfyUI derives from a V3 node's schema."""

    def _schema(cls):
        return cls.GET_SCHEMA()

    @property
    def RETURN_TYPES(cls):  # noqa: N802 (ComfyUI's names)
        return [o.io_type for o in cls._schema().outputs]

    @property
    def RETURN_NAMES(cls):  # noqa: N802
        return [o.display_name or o.io_type for o in cls._schema().outputs]

    @property
    def OUTPUT_TOOLTIPS(cls):  # noqa: N802
        return [o.tooltip for o in cls._schema().outputs]

    @property
    def OUTPUT_IS_LIST(cls):  # noqa: N802
        return [o.is_output_list for o in cls._schema().outputs]

    @property
    def CATEGORY(cls):  # noqa: N802
        return cls._schema().category

    @property
    def DESCRIPTION(cls):  # noqa: N802
        return cls._schema().description

    @property
    def OUTPUT_NODE(cls):  # noqa: N802
        return cls._schema().is_output_node


class _ComfyNode(metaclass=_NodeType):
    """``io.ComfyNode`` outside ComfyUI: ``define_schema`` + ``execute`` classmethods, the V1 view derived."""

    FUNCTION = "EXECUTE_NORMALIZED"

    @classmethod
    def define_schema(cls):
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls):  # noqa: N802
        schema = cls.define_schema()
        if schema.is_output_node:
            schema.hidden = list(dict.fromkeys(list(schema.hidden) + ["PROMPT", "EXTRA_PNGINFO"]))
        for what, ids in (("input", [i.id for i in schema.inputs]), ("output", [o.id for o in schema.outputs])):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{schema.node_id}: {what} ids must be unique")
        return schema

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # noqa: N802
        schema = cls.GET_SCHEMA()
        declared: dict = {"required": {}}
        for item in schema.inputs:
            section = declared.setdefault("optional" if item.optional else "required", {})
            section[item.id] = (item.get_io_type(), item.as_dict())
        for hidden in schema.hidden:
            declared.setdefault("hidden", {})[str(hidden).lower()] = (hidden,)
        return declared

    @classmethod
    def EXECUTE_NORMALIZED(cls, **kwargs):  # noqa: N802
        output = cls.execute(**kwargs)
        if output is None:
            return _NodeOutput()
        if isinstance(output, tuple):
            return _NodeOutput(*output)
        if isinstance(output, dict):
            return _NodeOutput(*output.get("result", ()), ui=output.get("ui"))
        return output


class FallbackIO:
    """The subset of ``comfy_api.latest.io`` the pack's nodes use, for running them without ComfyUI."""

    ComfyNode = _ComfyNode
    Schema = _Schema
    NodeOutput = _NodeOutput
    MultiType = _MultiType
    Int = _socket_type("INT", widget=True)
    Float = _socket_type("FLOAT", widget=True)
    Boolean = _socket_type("BOOLEAN", widget=True)
    String = _socket_type("STRING", widget=True, fixed={"multiline": False})
    Combo = _socket_type("COMBO", widget=True, fixed={"multiselect": False})
    Image = _socket_type("IMAGE")
    Mask = _socket_type("MASK")
    Mesh = _socket_type("MESH")

    @staticmethod
    def Custom(io_type: str):  # noqa: N802 (the host's name)
        return _socket_type(io_type)


class FallbackExtension:
    """``comfy_api.latest.ComfyExtension`` outside ComfyUI."""

    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list:
        raise NotImplementedError


def _host_api():
    if not has_comfy():
        return None
    latest = _import("comfy_api.latest")
    return latest if latest is not None and hasattr(latest, "io") else None


_LATEST = _host_api()
#: True inside ComfyUI: the nodes are the host's own V3 ``io.ComfyNode`` classes
HOST_V3 = _LATEST is not None
io = _LATEST.io if HOST_V3 else FallbackIO
ComfyExtension = _LATEST.ComfyExtension if HOST_V3 else FallbackExtension
