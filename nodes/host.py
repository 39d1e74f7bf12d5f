"""The pack's single door to ComfyUI (the ``nodes/host*.py`` family is the only code that imports it).

Everything host-specific goes through here: model folders (``folder_paths``),
the output and input folders, the torch device and cache
(``comfy.model_management``), progress bars (``comfy.utils.ProgressBar``),
interruption, and the core ``MESH`` type.  When ComfyUI is not importable
(tests, scripts) every function falls back to a plain equivalent:

* models folder: ``$ACTIONMESH_MODELS_DIR`` or ``./models`` (with the
  sub-folders ``actionmesh/``, ``triposg/``, ``dinov2/``);
* output folder: ``$ACTIONMESH_OUTPUT_DIR`` or ``./output``; input folder:
  ``$ACTIONMESH_INPUT_DIR`` or ``./input``;
* device: CUDA if available, else MPS, else CPU; progress: tqdm;
* ``MESH``: a minimal class with the same attributes as ComfyUI's.

Verified against ComfyUI 0.27.0 (and the 0.3.x ``comfy_extras.nodes_hunyuan3d.MESH``).

The code lives in one module per concern; this module re-exports it so node
modules keep calling ``host.<name>``:

* ``host_base``: host detection (``folder_paths_module``, ``model_management``, ``has_comfy``);
* ``host_paths``: model folders and entries, input/output folders, ``filename_prefix`` checks
  (``sanitize_prefix``, ``next_output_path``);
* ``host_device``: devices, dtypes and memory (``model_patcher``, ``on_device``: ComfyUI's memory manager);
* ``host_progress``: progress bars and interruption;
* ``host_types``: core types (``MESH``, the ``FILE_3D*`` socket types);
* ``host_io``: the V3 node schema (``comfy_api.latest.io``, ``ComfyExtension``) or its stand-in outside ComfyUI.
"""
from .host_base import _import, folder_paths_module, has_comfy, model_management  # noqa: F401
from .host_device import (  # noqa: F401
    NodeModels, model_patcher, module_dtype, offload_device, on_device, resolve_dtype, soft_empty_cache, torch_device)
from .host_io import HOST_V3, ComfyExtension, io  # noqa: F401
from .host_paths import (  # noqa: F401
    MESH_EXTENSIONS, MODEL_FOLDERS, WEIGHT_EXTENSIONS, entry_config, input_directory, list_input_frame_sources,
    list_input_meshes, list_models, model_roots, models_dir, next_output_path, output_directory,
    register_model_folders, resolve_input_file, resolve_model, sanitize_prefix, _inside)
from .host_progress import (  # noqa: F401
    Interrupted, Progress, check_interrupted, processing_interrupted, request_interrupt)
from .host_types import (  # noqa: F401
    FILE_3D_ANY, FILE_3D_TYPES, FallbackFile3D, FallbackMesh, file_3d, make_mesh, mesh_batch_size, mesh_class,
    mesh_item)
