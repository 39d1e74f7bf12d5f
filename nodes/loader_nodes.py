"""Model loader nodes: ActionMesh denoiser/autoencoder, TripoSG VAE/DiT, DINOv2.

Each loader lists the entries of its model folder (``models/actionmesh/``,
``models/triposg/``, ``models/dinov2/``; see ``host.list_models``) whose
``config.json`` says they are its kind (``entry_kind``), loads the
chosen one on the offload device (CPU) in the chosen dtype, and hands the
module to the nodes that use it.  Inside ComfyUI each model is wrapped in
ComfyUI's model patcher and loaded by its memory manager when a node needs it
(``host.on_device``); outside, the nodes move it to the GPU only while they run.

Loader values saved by earlier versions (a model folder, e.g. ``ActionMesh/denoiser``) are not in the list;
``validate_inputs`` (V3's ``VALIDATE_INPUTS``) accepts any entry that resolves under the model folder.
"""
from __future__ import annotations

from . import datatypes as T
from . import host
from .host_io import io

CATEGORY = "ActionMesh/loaders"
DTYPES = ["auto", "fp32", "fp16", "bf16"]


def entry_kind(folder: str, name: str):
    """Model kind of a listed entry, from its ``config.json`` (weights header keys when the config is silent).

    Returns:
        ``actionmesh_denoiser``, ``actionmesh_autoencoder``, ``triposg_vae``, ``triposg_dit`` (see
        ``actionmesh_core.checkpoints.detect_kind``), ``transformers:<model_type>`` for a transformers folder
        (``transformers:dinov2``), or None when the entry has no readable config or is of no known kind.
    """
    from actionmesh_core.checkpoints import detect_kind

    config = host.entry_config(folder, name)
    if config is None:
        return None
    if "model_type" in config:
        return f"transformers:{config['model_type']}"
    kind = detect_kind((), config)
    if kind is None:
        kind = detect_kind(_weight_keys(host.resolve_model(folder, name)), config)
    return kind


def _weight_keys(path):
    """State-dict key names of a model entry (safetensors header only; empty when unreadable)."""
    from actionmesh_core.checkpoints import FOLDER_WEIGHT_FILES
    from safetensors import safe_open

    if path.is_dir():
        files = [path / n for n in FOLDER_WEIGHT_FILES if (path / n).is_file()]
        if not files:
            return ()
        path = files[0]
    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except Exception:  # not a safetensors file, truncated download: not offered
        return ()


def entries_of_kind(folder: str, kind: str, prefer=()):
    """Entries of ``models/<folder>/`` whose config says they are a ``kind`` model (see ``entry_kind``)."""
    return [entry for entry in host.list_models(folder, prefer) if entry_kind(folder, entry) == kind]


DTYPE_TOOLTIP = ("Weight precision. auto = bf16 on CUDA GPUs that support it (else fp16), fp32 on CPU/MPS. "
                 "fp32 is the reference precision; half precision halves memory.")


# loader node -> (models/ sub-folder, actionmesh_core.weights component) of the released weights it loads
RELEASED = {
    "ActionMeshLoadDenoiser": ("actionmesh", "denoiser"),
    "ActionMeshLoadAutoencoder": ("actionmesh", "autoencoder"),
    "ActionMeshLoadTripoSGVAE": ("triposg", "vae"),
    "ActionMeshLoadTripoSGDiT": ("triposg", "transformer"),
    "ActionMeshLoadDINOv2": ("dinov2", "dinov2"),
}
RELEASED_DIRS = tuple(sorted({directory for directory, _ in RELEASED.values()}))


def download_metadata(node_type: str, entry: str) -> list:
    """Model-file records of a loader's released entry, in the ComfyUI frontend's workflow format.

    A workflow that lists them in the loader node's ``properties.models`` and in its top-level ``models``
    makes the frontend's missing-models panel name every weights file that is not installed, with its
    download link and target folder (``directory``; ``name`` is the file's path inside it, as
    ``GET /experiment/models/<directory>`` lists installed files).

    Args:
        node_type: a key of :data:`RELEASED` (other nodes have none: returns []).
        entry: the loader's ``model_name`` value; only the released entry (``released_entry``, e.g.
            ``ActionMesh/denoiser/model.safetensors``, or its folder) has a known download source (any other:
            returns []).

    Returns:
        list of ``{"name", "url", "directory"}`` dicts.
    """
    from actionmesh_core.weights import COMPONENTS

    if node_type not in RELEASED:
        return []
    directory, component = RELEASED[node_type]
    folder, repo, _ = COMPONENTS[component]
    name = released_entry(node_type)
    if entry not in (name, folder):  # the folder: a workflow saved before files were listed
        return []
    weights = name[len(folder) + 1:]
    inside_repo = folder.split("/", 1)[1] + "/" if "/" in folder else ""  # dinov2-large is the repo root
    return [{"name": name, "url": f"https://huggingface.co/{repo}/resolve/main/{inside_repo}{weights}",
             "directory": directory}]


def released_entry(node_type: str) -> str:
    """The ``model_name`` value that selects a loader's released weights, as ``host.list_models`` lists it
    (``ActionMesh/denoiser/model.safetensors``, ``dinov2-large/model.safetensors``)."""
    from actionmesh_core.checkpoints import WEIGHT_FILES
    from actionmesh_core.weights import COMPONENTS

    component = RELEASED[node_type][1]
    folder = COMPONENTS[component][0]
    kind = {"denoiser": "actionmesh_denoiser", "autoencoder": "actionmesh_autoencoder", "vae": "triposg_vae",
            "transformer": "triposg_dit"}.get(component)
    return f"{folder}/{WEIGHT_FILES[kind] if kind else 'model.safetensors'}"  # transformers layout for DINOv2


def validate_model_name(folder: str, model_name) -> "bool | str":
    """The loaders' ``validate_inputs`` (V1 ``VALIDATE_INPUTS``): True when ``model_name`` resolves under
    ``models/<folder>/``.

    Declaring it makes ComfyUI skip its own "value not in list" check, so a workflow saved when the loaders
    listed folders (``ActionMesh/denoiser``) still runs; anything else gets one line saying where to put it.
    """
    try:
        host.resolve_model(folder, model_name)
    except (ValueError, FileNotFoundError) as exc:
        return str(exc)
    return True


def _loader_schema(cls, options: list, model_tooltip: str, output, output_tooltip: str):
    return io.Schema(
        node_id=cls.NODE_ID, display_name=DISPLAY_NAMES[cls.NODE_ID], category=CATEGORY, description=cls.DESCRIPTION_TEXT,
        search_aliases=list(cls.ALIASES),
        inputs=[io.Combo.Input("model_name", options=options, tooltip=model_tooltip),
                io.Combo.Input("dtype", options=DTYPES, default="auto", tooltip=DTYPE_TOOLTIP)],
        outputs=[output.Output(cls.OUTPUT_NAME, tooltip=output_tooltip)])


class _CheckpointLoader(io.ComfyNode):
    """Shared body of the loaders backed by ``actionmesh_core.checkpoints.load_model``."""

    FOLDER = "actionmesh"
    KIND = "actionmesh_denoiser"
    PREFER: tuple = ()
    WHAT = ""
    SOCKET = T.Denoiser
    OUTPUT_NAME = "denoiser"
    OUTPUT_TOOLTIP = ""
    DESCRIPTION_TEXT = ""
    ALIASES: tuple = ()

    @classmethod
    def define_schema(cls):
        return _loader_schema(cls, entries_of_kind(cls.FOLDER, cls.KIND, cls.PREFER),
                              f"{cls.WHAT}: the weights of a model folder (config.json beside them) or a "
                              f".safetensors file under models/{cls.FOLDER}/.", cls.SOCKET, cls.OUTPUT_TOOLTIP)

    @classmethod
    def validate_inputs(cls, model_name):
        return validate_model_name(cls.FOLDER, model_name)

    @classmethod
    def load_module(cls, model_name, dtype):
        """Load the chosen entry on the CPU in the chosen dtype (``checkpoints.load_model``), wrapped for
        ComfyUI's memory manager.

        Raises ValueError/FileNotFoundError for a missing or unsafe model name.
        """
        from actionmesh_core.checkpoints import load_model

        path = host.resolve_model(cls.FOLDER, model_name)
        model = load_model(str(path), cls.KIND, device="cpu", dtype=_dtype(cls.KIND, dtype))
        if hasattr(model, "eval"):
            model.eval()
        host.model_patcher(model)  # inside ComfyUI: wrapped for its memory manager (see host.on_device)
        return model

    @classmethod
    def execute(cls, model_name, dtype):
        return io.NodeOutput(cls.load_module(model_name, dtype))


def _dtype(kind: str, choice: str) -> str:
    """Weights dtype of a loader's choice; ``auto`` keeps the TripoSG VAE in float32, as the pipeline does
    (it decodes SDFs and encodes meshes: thin, accuracy-sensitive)."""
    if choice == "auto" and kind == "triposg_vae":
        return "fp32"
    return host.resolve_dtype(choice)


class ActionMeshLoadDenoiser(_CheckpointLoader):
    """Load the stage I temporal 3D denoiser (``ActionMesh/denoiser``)."""

    NODE_ID = "ActionMeshLoadDenoiser"
    KIND = "actionmesh_denoiser"
    PREFER = ("denoiser",)
    WHAT = "ActionMesh temporal 3D denoiser (stage I), e.g. ActionMesh/denoiser/model.safetensors"
    SOCKET = T.Denoiser
    OUTPUT_NAME = "denoiser"
    OUTPUT_TOOLTIP = "The stage I denoiser that generates one 3D latent per video frame."
    DESCRIPTION_TEXT = "Loads the ActionMesh temporal 3D denoiser (stage I) from models/actionmesh/."
    ALIASES = ("actionmesh model", "stage 1")


class ActionMeshLoadAutoencoder(_CheckpointLoader):
    """Load the stage II temporal 3D autoencoder (``ActionMesh/autoencoder``)."""

    NODE_ID = "ActionMeshLoadAutoencoder"
    KIND = "actionmesh_autoencoder"
    PREFER = ("autoencoder",)
    WHAT = "ActionMesh temporal 3D autoencoder (stage II), e.g. ActionMesh/autoencoder/model.safetensors"
    SOCKET = T.Autoencoder
    OUTPUT_NAME = "autoencoder"
    OUTPUT_TOOLTIP = "The stage II autoencoder that turns latents into vertex motion of a reference mesh."
    DESCRIPTION_TEXT = "Loads the ActionMesh temporal 3D autoencoder (stage II) from models/actionmesh/."
    ALIASES = ("actionmesh model", "stage 2")


class ActionMeshLoadTripoSGVAE(_CheckpointLoader):
    """Load the TripoSG shape VAE (``TripoSG/vae``)."""

    NODE_ID = "ActionMeshLoadTripoSGVAE"
    FOLDER = "triposg"
    KIND = "triposg_vae"
    PREFER = ("vae",)
    WHAT = "TripoSG shape VAE, e.g. TripoSG/vae/diffusion_pytorch_model.safetensors"
    SOCKET = T.TripoSGVAE
    OUTPUT_NAME = "vae"
    OUTPUT_TOOLTIP = "The TripoSG shape VAE: encodes meshes to 3D latents and decodes latents to SDFs."
    DESCRIPTION_TEXT = "Loads the TripoSG shape VAE from models/triposg/."
    ALIASES = ("shape vae", "sdf")


class ActionMeshLoadTripoSGDiT(_CheckpointLoader):
    """Load the TripoSG image-to-3D transformer (``TripoSG/transformer``) and TripoSG's own image encoder."""

    NODE_ID = "ActionMeshLoadTripoSGDiT"
    FOLDER = "triposg"
    KIND = "triposg_dit"
    PREFER = ("transformer", "dit")
    WHAT = "TripoSG image-to-3D transformer, e.g. TripoSG/transformer/diffusion_pytorch_model.safetensors"
    SOCKET = T.TripoSGDiT
    OUTPUT_NAME = "dit"
    OUTPUT_TOOLTIP = ("The TripoSG image-to-3D diffusion transformer (stage 0: the anchor mesh), with TripoSG's "
                      "own DINOv2 image encoder when it is installed beside it.")
    DESCRIPTION_TEXT = ("Loads the TripoSG image-to-3D transformer from models/triposg/, and TripoSG's own image "
                        "encoder from image_encoder_dinov2/ beside its folder (as the Hugging Face download "
                        "lays it out): the anchor is conditioned on it, as in the release.")
    ALIASES = ("image to 3d", "triposg")

    @classmethod
    def execute(cls, model_name, dtype):
        from actionmesh_core.models.dino import DinoV2Encoder
        from actionmesh_core.weights import COMPONENTS

        transformer = cls.load_module(model_name, dtype)
        path = host.resolve_model(cls.FOLDER, model_name)
        name = COMPONENTS["triposg_dinov2"][0].rsplit("/", 1)[-1]  # image_encoder_dinov2
        bases = [path.parent] if path.is_dir() else [path.parent, path.parent.parent]
        encoder = None
        for folder in (base / name for base in bases):
            if (folder / "config.json").is_file():
                encoder = DinoV2Encoder.from_pretrained(str(folder), device="cpu", dtype=host.resolve_dtype(dtype))
                encoder.eval()
                host.model_patcher(encoder)
                break
        return io.NodeOutput(T.ImageTo3DModel(transformer=transformer, image_encoder=encoder))


class ActionMeshLoadDINOv2(io.ComfyNode):
    """Load the DINOv2-L/14 image encoder (transformers folder ``dinov2-large``)."""

    NODE_ID = "ActionMeshLoadDINOv2"
    DESCRIPTION_TEXT = "Loads the DINOv2-large image encoder (facebook/dinov2-large) from models/dinov2/."
    ALIASES = ("image encoder", "dino")
    OUTPUT_NAME = "dinov2"

    @classmethod
    def define_schema(cls):
        return _loader_schema(cls, entries_of_kind("dinov2", "transformers:dinov2", ("large",)),
                              "DINOv2-large weights in the transformers layout (config.json + model.safetensors) "
                              "under models/dinov2/, e.g. dinov2-large/model.safetensors.", T.DinoV2,
                              "The DINOv2 image encoder that turns frames into conditioning features.")

    @classmethod
    def validate_inputs(cls, model_name):
        return validate_model_name("dinov2", model_name)

    @classmethod
    def execute(cls, model_name, dtype):
        """Load DINOv2 on the CPU (``DinoV2Encoder.from_pretrained``).

        Raises ValueError/FileNotFoundError for a missing or unsafe model name.
        """
        from actionmesh_core.models.dino import DinoV2Encoder

        path = host.resolve_model("dinov2", model_name)
        encoder = DinoV2Encoder.from_pretrained(str(path), device="cpu", dtype=host.resolve_dtype(dtype))
        encoder.eval()
        host.model_patcher(encoder)
        return io.NodeOutput(encoder)


DISPLAY_NAMES = {
    "ActionMeshLoadDenoiser": "Load ActionMesh Denoiser",
    "ActionMeshLoadAutoencoder": "Load ActionMesh Autoencoder",
    "ActionMeshLoadTripoSGVAE": "Load TripoSG VAE",
    "ActionMeshLoadTripoSGDiT": "Load TripoSG Image-to-3D",
    "ActionMeshLoadDINOv2": "Load DINOv2 Image Encoder",
}
NODES = [ActionMeshLoadDenoiser, ActionMeshLoadAutoencoder, ActionMeshLoadTripoSGVAE, ActionMeshLoadTripoSGDiT,
         ActionMeshLoadDINOv2]
