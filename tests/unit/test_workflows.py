"""Every shipped workflow (``example_workflows/*.json``, ComfyUI UI format) must load in ComfyUI.

Checks, per workflow: every node type exists (one of ours, or a core node
listed in ``CORE_NODES``), every link connects an output to an input of the
same type (and the node entries agree with the ``links`` table), required
inputs are connected, and ``widgets_values`` fit the widgets in order, type
and range.

``CORE_NODES`` is taken from ComfyUI 0.27.0 (upstream commit 77917ed3,
2026-07-03): ``nodes.py``, ``comfy_extras/nodes_video.py``,
``nodes_images.py``, ``nodes_bg_removal.py``, ``nodes_wan.py``,
``nodes_model_advanced.py``, ``nodes_video_model.py``,
``nodes_hunyuan3d.py``, ``nodes_save_3d.py``, ``nodes_load_3d.py`` and
``comfy/samplers.py``; Load 3D (Advanced)'s viewer widget as the frontend of that release saves it.  Frontend conventions (widget order, the
``control_after_generate`` slot after seeds, the preview slot the frontend
adds to SaveGLB/Preview3D, the upload-button slot older frontends saved
for LoadImage/LoadVideo) follow the ComfyUI frontend of the same period.
"""
from __future__ import annotations

import json

import pytest

import data_dirs
import workflow_models

ROOT = data_dirs.REPO_ROOT
WORKFLOW_DIR = workflow_models.WORKFLOW_DIR

EXPECTED_WORKFLOWS = {
    "video_to_4d.json",
    "video_mesh_to_4d.json",
    "image_to_video_to_4d.json",
    "text_to_image_to_video_to_4d.json",
    "backbone_swap_hunyuan3d.json",
    "mesh_prompt_to_4d.json",
    "backbone_swap_load3d.json",
}

# comfy/samplers.py (0.27.0)
SAMPLER_NAMES = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm",
    "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]
SCHEDULER_NAMES = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis",
              "longcat_image", "cogvideox", "lens", "pixeldit", "ideogram4", "boogu", "krea2"]
MAX_RES = 16384  # nodes.MAX_RESOLUTION
SEED_MAX = 0xFFFFFFFFFFFFFFFF
FILE_3D_TYPES = ("FILE_3D_GLB", "FILE_3D_GLTF", "FILE_3D_FBX", "FILE_3D_OBJ", "FILE_3D_STL", "FILE_3D_USDZ", "FILE_3D")
ANY_FILE = "<file list>"  # a combo filled from a models/input folder: any file name is acceptable


def _i(name, type_, **opts):
    return (name, type_, opts)


# Core nodes: {type: {"inputs": [(name, type, opts)], "outputs": [(name, type)], "injected": [slot names]}}.
# An input type is a socket type string, a list of combo options, ANY_FILE, or a tuple of accepted
# socket types (multi-type input); opts: default/min/max, optional, widget (a multi-type input shown
# as a widget of that type), control_after_generate.
CORE_NODES = {
    "LoadImage": {"inputs": [_i("image", ANY_FILE)], "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
                  "injected": ["upload"]},
    "LoadVideo": {"inputs": [_i("file", ANY_FILE)], "outputs": [("VIDEO", "VIDEO")], "injected": ["upload"]},
    "GetVideoComponents": {"inputs": [_i("video", "VIDEO")],
                           "outputs": [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"), ("bit_depth", "INT")]},
    "ImageFromBatch": {"inputs": [_i("image", "IMAGE"), _i("batch_index", "INT", default=0, min=-MAX_RES, max=MAX_RES),
                                  _i("length", "INT", default=1, min=1, max=4096)],
                       "outputs": [("IMAGE", "IMAGE")]},
    "LoadBackgroundRemovalModel": {"inputs": [_i("bg_removal_name", ANY_FILE)],
                                   "outputs": [("bg_model", "BACKGROUND_REMOVAL")]},
    "RemoveBackground": {"inputs": [_i("bg_removal_model", "BACKGROUND_REMOVAL"), _i("image", "IMAGE")],
                         "outputs": [("mask", "MASK")]},
    "PreviewImage": {"inputs": [_i("images", "IMAGE")], "outputs": [("images", "IMAGE")]},  # a SaveImage subclass
    "SaveImage": {"inputs": [_i("images", "IMAGE"), _i("filename_prefix", "STRING", default="ComfyUI")],
                  "outputs": [("images", "IMAGE")]},
    "SaveAnimatedWEBP": {"inputs": [_i("images", "IMAGE"), _i("filename_prefix", "STRING", default="ComfyUI"),
                                    _i("fps", "FLOAT", default=6.0, min=0.01, max=1000.0),
                                    _i("lossless", "BOOLEAN", default=True),
                                    _i("quality", "INT", default=80, min=0, max=100),
                                    _i("method", ["default", "fastest", "slowest"])],
                         "outputs": [("images", "IMAGE")]},
    "SaveGLB": {"inputs": [_i("mesh", ("MESH",) + FILE_3D_TYPES),
                           _i("filename_prefix", "STRING", default="3d/ComfyUI")],
                "outputs": [], "injected": ["image"]},
    "Preview3D": {"inputs": [_i("model_file", ("STRING",) + FILE_3D_TYPES, widget="STRING", default=""),
                             _i("camera_info", "LOAD3D_CAMERA", optional=True),
                             _i("bg_image", "IMAGE", optional=True)],
                  "outputs": [], "injected": ["image"]},
    "CheckpointLoaderSimple": {"inputs": [_i("ckpt_name", ANY_FILE)],
                               "outputs": [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]},
    "ImageOnlyCheckpointLoader": {"inputs": [_i("ckpt_name", ANY_FILE)],
                                  "outputs": [("MODEL", "MODEL"), ("CLIP_VISION", "CLIP_VISION"), ("VAE", "VAE")]},
    "UNETLoader": {"inputs": [_i("unet_name", ANY_FILE),
                              _i("weight_dtype", ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"])],
                   "outputs": [("MODEL", "MODEL")]},
    "CLIPLoader": {"inputs": [_i("clip_name", ANY_FILE), _i("type", CLIP_TYPES),
                              _i("device", ["default", "cpu"], optional=True)],
                   "outputs": [("CLIP", "CLIP")]},
    "VAELoader": {"inputs": [_i("vae_name", ANY_FILE)], "outputs": [("VAE", "VAE")]},
    "CLIPVisionLoader": {"inputs": [_i("clip_name", ANY_FILE)], "outputs": [("CLIP_VISION", "CLIP_VISION")]},
    "CLIPVisionEncode": {"inputs": [_i("clip_vision", "CLIP_VISION"), _i("image", "IMAGE"),
                                    _i("crop", ["center", "none"])],
                         "outputs": [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")]},
    "CLIPTextEncode": {"inputs": [_i("text", "STRING"), _i("clip", "CLIP")],
                       "outputs": [("CONDITIONING", "CONDITIONING")]},
    "EmptyLatentImage": {"inputs": [_i("width", "INT", default=512, min=16, max=MAX_RES),
                                    _i("height", "INT", default=512, min=16, max=MAX_RES),
                                    _i("batch_size", "INT", default=1, min=1, max=4096)],
                         "outputs": [("LATENT", "LATENT")]},
    "KSampler": {"inputs": [_i("model", "MODEL"),
                            _i("seed", "INT", default=0, min=0, max=SEED_MAX, control_after_generate=True),
                            _i("steps", "INT", default=20, min=1, max=10000),
                            _i("cfg", "FLOAT", default=8.0, min=0.0, max=100.0),
                            _i("sampler_name", SAMPLER_NAMES), _i("scheduler", SCHEDULER_NAMES),
                            _i("positive", "CONDITIONING"), _i("negative", "CONDITIONING"),
                            _i("latent_image", "LATENT"),
                            _i("denoise", "FLOAT", default=1.0, min=0.0, max=1.0)],
                 "outputs": [("LATENT", "LATENT")]},
    "VAEDecode": {"inputs": [_i("samples", "LATENT"), _i("vae", "VAE")], "outputs": [("IMAGE", "IMAGE")]},
    "ModelSamplingSD3": {"inputs": [_i("model", "MODEL"), _i("shift", "FLOAT", default=3.0, min=0.0, max=100.0)],
                         "outputs": [("MODEL", "MODEL")]},
    "ModelSamplingAuraFlow": {"inputs": [_i("model", "MODEL"),
                                         _i("shift", "FLOAT", default=1.73, min=0.0, max=100.0)],
                              "outputs": [("MODEL", "MODEL")]},
    "WanImageToVideo": {"inputs": [_i("positive", "CONDITIONING"), _i("negative", "CONDITIONING"), _i("vae", "VAE"),
                                   _i("width", "INT", default=832, min=16, max=MAX_RES),
                                   _i("height", "INT", default=480, min=16, max=MAX_RES),
                                   _i("length", "INT", default=81, min=1, max=MAX_RES),
                                   _i("batch_size", "INT", default=1, min=1, max=4096),
                                   _i("clip_vision_output", "CLIP_VISION_OUTPUT", optional=True),
                                   _i("start_image", "IMAGE", optional=True)],
                        "outputs": [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT")]},
    "Hunyuan3Dv2Conditioning": {"inputs": [_i("clip_vision_output", "CLIP_VISION_OUTPUT")],
                                "outputs": [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]},
    "EmptyLatentHunyuan3Dv2": {"inputs": [_i("resolution", "INT", default=3072, min=1, max=8192),
                                          _i("batch_size", "INT", default=1, min=1, max=4096)],
                               "outputs": [("LATENT", "LATENT")]},
    "VAEDecodeHunyuan3D": {"inputs": [_i("samples", "LATENT"), _i("vae", "VAE"),
                                      _i("num_chunks", "INT", default=8000, min=1000, max=500000),
                                      _i("octree_resolution", "INT", default=256, min=16, max=512)],
                           "outputs": [("VOXEL", "VOXEL")]},
    # "Load 3D (Advanced)": the plain "Load 3D & Animation" fails in 0.27 (it hands LoadImage an absolute temp path)
    "Load3DAdvanced": {"inputs": [_i("model_file", ANY_FILE),
                                  _i("viewport_state", "LOAD_3D_ADVANCED", widget="LOAD_3D_ADVANCED"),
                                  _i("width", "INT", default=1024, min=1, max=4096),
                                  _i("height", "INT", default=1024, min=1, max=4096)],
                       "outputs": [("model_3d", "FILE_3D"), ("model_3d_info", "LOAD3D_MODEL_INFO"),
                                   ("camera_info", "LOAD3D_CAMERA"), ("width", "INT"), ("height", "INT")]},
    "VoxelToMesh": {"inputs": [_i("voxel", "VOXEL"), _i("algorithm", ["surface net", "basic"]),
                               _i("threshold", "FLOAT", default=0.6, min=-1.0, max=1.0)],
                    "outputs": [("MESH", "MESH")]},
}
# Frontend-only nodes (no backend class): a text widget, no sockets.
FRONTEND_NODES = {"Note": {"inputs": [_i("text", "STRING")], "outputs": []},
                  "MarkdownNote": {"inputs": [_i("text", "STRING")], "outputs": []}}

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


def pack_node_spec(cls) -> dict:
    """Our node class -> the spec format of ``CORE_NODES`` (read from its ``INPUT_TYPES``)."""
    declared = cls.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, value in declared.get(section, {}).items():
            type_, opts = value[0], dict(value[1]) if len(value) > 1 else {}
            if type_ == "COMBO":  # a V3 combo: its choices in "options"
                type_ = list(opts.pop("options"))
            elif isinstance(type_, (list, tuple)):
                type_ = list(type_)
            if section == "optional":
                opts["optional"] = True
            inputs.append((name, type_, opts))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return {"inputs": inputs, "outputs": list(zip(names, cls.RETURN_TYPES))}


def is_widget(type_, opts) -> bool:
    if opts.get("forceInput"):
        return False
    return isinstance(type_, list) or type_ == ANY_FILE or type_ in WIDGET_TYPES or "widget" in opts


def socket_types(type_, opts) -> tuple:
    if isinstance(type_, tuple):
        return type_
    if isinstance(type_, list) or type_ == ANY_FILE:
        return ("COMBO",)
    return tuple(type_.split(","))  # a legacy comma-joined union accepts each of its types


def widget_slots(spec) -> list:
    """[(slot name, input type, opts)] in the order the frontend saves ``widgets_values``."""
    slots = []
    for name, type_, opts in spec["inputs"]:
        if not is_widget(type_, opts):
            continue
        slots.append((name, opts.get("widget", type_), opts))
        if opts.get("control_after_generate") or (type_ == "INT" and name in ("seed", "noise_seed")):
            slots.append(("control_after_generate", "CONTROL", {}))
    for name in spec.get("injected", []):
        slots.append((name, "INJECTED", {}))
    return slots


def check_widget_value(where: str, type_, opts, value) -> None:
    if type_ == "CONTROL":
        assert value in CONTROL_VALUES, f"{where}: control_after_generate value {value!r}"
    elif type_ == "INJECTED":
        assert value is None or isinstance(value, str), f"{where}: frontend slot value {value!r}"
    elif type_ == ANY_FILE:
        assert isinstance(value, str) and value, f"{where}: file name expected, got {value!r}"
    elif isinstance(type_, list):
        assert value in type_, f"{where}: {value!r} is not one of {type_[:12]}"
    elif type_ == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: INT expected, got {value!r}"
    elif type_ == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: FLOAT expected, got {value!r}"
    elif type_ == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: BOOLEAN expected, got {value!r}"
    elif type_ == "STRING":
        assert isinstance(value, str), f"{where}: STRING expected, got {value!r}"
    elif type_ == "LOAD_3D_ADVANCED":  # Load 3D's viewer state: empty when saved, filled in when converted
        assert value == "" or isinstance(value, dict), f"{where}: Load 3D viewer value {value!r}"
    else:
        raise AssertionError(f"{where}: widget of unknown type {type_!r}")
    if type_ in ("INT", "FLOAT"):
        if "min" in opts:
            assert value >= opts["min"], f"{where}: {value} < min {opts['min']}"
        if "max" in opts:
            assert value <= opts["max"], f"{where}: {value} > max {opts['max']}"


def validate_workflow(workflow: dict, specs: dict) -> None:
    """Assert that a UI-format workflow is consistent with the node specs (see module docstring)."""
    for key in ("nodes", "links", "last_node_id", "last_link_id", "version"):
        assert key in workflow, f"workflow has no {key!r}"
    nodes = {}
    for node in workflow["nodes"]:
        assert node["id"] not in nodes, f"duplicate node id {node['id']}"
        nodes[node["id"]] = node
    assert workflow["last_node_id"] >= max(nodes), "last_node_id below the largest node id"
    links = {}
    for link in workflow["links"]:
        assert len(link) == 6, f"link {link} is not [id, from_node, from_slot, to_node, to_slot, type]"
        assert link[0] not in links, f"duplicate link id {link[0]}"
        links[link[0]] = link
    if links:
        assert workflow["last_link_id"] >= max(links), "last_link_id below the largest link id"

    for node_id, node in nodes.items():
        where = f"node {node_id} ({node['type']})"
        assert node["type"] in specs, f"{where}: unknown node type"
        spec = specs[node["type"]]
        declared = {name: (type_, opts) for name, type_, opts in spec["inputs"]}
        for slot, entry in enumerate(node.get("inputs", [])):
            name = entry["name"]
            assert name in declared, f"{where}: input {name!r} is not declared by the node"
            type_, opts = declared[name]
            if is_widget(type_, opts):
                assert entry.get("widget", {}).get("name") == name, f"{where}: widget input {name!r} needs 'widget'"
            accepted = socket_types(type_, opts)
            assert entry["type"] in accepted or entry["type"] == ",".join(accepted), \
                f"{where}: input {name!r} has type {entry['type']!r}, declared {accepted}"
            if entry.get("link") is not None:
                link = links.get(entry["link"])
                assert link is not None, f"{where}: input {name!r} refers to missing link {entry['link']}"
                assert link[3] == node_id and link[4] == slot, f"{where}: link {link[0]} does not end at input {name!r}"
        linked = {e["name"] for e in node.get("inputs", []) if e.get("link") is not None}
        for name, type_, opts in spec["inputs"]:
            if not opts.get("optional") and not is_widget(type_, opts):
                assert name in linked, f"{where}: required input {name!r} is not connected"
        outputs = node.get("outputs", [])
        assert len(outputs) == len(spec["outputs"]), f"{where}: {len(outputs)} outputs, expected {len(spec['outputs'])}"
        for slot, (entry, (_, out_type)) in enumerate(zip(outputs, spec["outputs"])):
            assert entry["type"] == out_type, f"{where}: output {slot} type {entry['type']!r}, expected {out_type!r}"
            for link_id in entry.get("links") or []:
                link = links.get(link_id)
                assert link is not None and link[1] == node_id and link[2] == slot, \
                    f"{where}: output {slot} lists link {link_id} that does not start there"
        slots = widget_slots(spec)
        values = node.get("widgets_values", [])
        assert isinstance(values, list), f"{where}: widgets_values must be a list"
        required = [s for s in slots if s[1] != "INJECTED"]
        assert len(required) <= len(values) <= len(slots), \
            f"{where}: {len(values)} widget values for widgets {[s[0] for s in slots]}"
        for (name, type_, opts), value in zip(slots, values):
            check_widget_value(f"{where} widget {name!r}", type_, opts, value)

    for link_id, (_, src, src_slot, dst, dst_slot, type_) in links.items():
        assert src in nodes and dst in nodes, f"link {link_id} joins missing nodes"
        src_spec, dst_spec = specs[nodes[src]["type"]], specs[nodes[dst]["type"]]
        assert src_slot < len(src_spec["outputs"]), f"link {link_id} starts at a missing output"
        out_type = src_spec["outputs"][src_slot][1]
        assert type_ == out_type, f"link {link_id}: type {type_!r} but the output is {out_type!r}"
        dst_inputs = nodes[dst].get("inputs", [])
        assert dst_slot < len(dst_inputs), f"link {link_id} ends at a missing input slot"
        entry = dst_inputs[dst_slot]
        assert entry.get("link") == link_id, f"link {link_id} is not recorded on its target input"
        dst_type, dst_opts = {n: (t, o) for n, t, o in dst_spec["inputs"]}[entry["name"]]
        accepted = socket_types(dst_type, dst_opts)
        assert out_type in accepted, \
            f"link {link_id}: {nodes[src]['type']} output {out_type} -> {nodes[dst]['type']}.{entry['name']} {accepted}"
        assert link_id in (nodes[src]["outputs"][src_slot].get("links") or []), \
            f"link {link_id} is not recorded on its source output"


# --------------------------------------------------------------------------- tests


@pytest.fixture()
def specs(pack, fake_model_tree):
    """Specs of core nodes + ours (our model/file combos list the fake model tree)."""
    result = dict(CORE_NODES)
    result.update(FRONTEND_NODES)
    for name, cls in pack.NODES.items():
        assert name not in result, f"{name} clashes with a core node"
        result[name] = pack_node_spec(cls)
    return result


def _workflows():
    return sorted(WORKFLOW_DIR.glob("*.json"))


def test_all_expected_workflows_are_shipped():
    assert {p.name for p in _workflows()} == EXPECTED_WORKFLOWS


def test_every_workflow_has_its_template_thumbnail_and_nothing_else_is_in_the_folder():
    """ComfyUI's template browser shows ``<name>.jpg`` beside ``<name>.json`` (its frontend asks for that name); the
    thumbnails are screenshots of the real frontend (``ACTIONMESH_UPDATE_THUMBNAILS=1`` with the real-host tests), so
    each workflow has exactly one and the folder holds nothing else (every JSON there is listed as a workflow)."""
    from PIL import Image

    names = {p.name for p in WORKFLOW_DIR.iterdir()}
    assert names == {n for stem in (w[:-5] for w in EXPECTED_WORKFLOWS) for n in (f"{stem}.json", f"{stem}.jpg")}
    for name in EXPECTED_WORKFLOWS:
        with Image.open(WORKFLOW_DIR / name.replace(".json", ".jpg")) as image:
            assert image.format == "JPEG" and max(image.size) == 960 and min(image.size) >= 240, (name, image.size)


@pytest.mark.parametrize("path", _workflows(), ids=lambda p: p.name)
def test_workflow_is_valid(path, specs):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    validate_workflow(workflow, specs)
    types = {node["type"] for node in workflow["nodes"]}
    assert "ActionMeshExportGLB" in types and "ActionMeshDecodeDeformation" in types, \
        "every workflow must end in an animated mesh export"


def test_workflows_cover_the_advertised_routes(specs):
    by_name = {p.name: {n["type"] for n in json.loads(p.read_text())["nodes"]} for p in _workflows()}
    assert "ActionMeshImageTo3DAnchor" in by_name["video_to_4d.json"]
    assert "ActionMeshEncodeReferenceMesh" in by_name["video_mesh_to_4d.json"]
    assert "ActionMeshImageTo3DAnchor" not in by_name["video_mesh_to_4d.json"]
    assert "WanImageToVideo" in by_name["image_to_video_to_4d.json"]
    assert {"CheckpointLoaderSimple", "WanImageToVideo"} <= by_name["text_to_image_to_video_to_4d.json"]
    assert {"VoxelToMesh", "ActionMeshEncodeReferenceMesh"} <= by_name["backbone_swap_hunyuan3d.json"]
    assert "ActionMeshImageTo3DAnchor" not in by_name["backbone_swap_hunyuan3d.json"]
    assert {"ActionMeshEncodeReferenceMesh", "ActionMeshRenderPreview", "WanImageToVideo"} <= \
        by_name["mesh_prompt_to_4d.json"]
    assert "ActionMeshImageTo3DAnchor" not in by_name["mesh_prompt_to_4d.json"]
    assert {"Load3DAdvanced", "ActionMeshEncodeReferenceMesh"} <= by_name["backbone_swap_load3d.json"]
    assert "ActionMeshImageTo3DAnchor" not in by_name["backbone_swap_load3d.json"]
    for name in ("video_to_4d.json", "video_mesh_to_4d.json", "backbone_swap_hunyuan3d.json",
                 "backbone_swap_load3d.json"):
        assert "ActionMeshLoadFrames" in by_name[name], f"{name}: Load Frames is the default input"


def _links_by_target(workflow):
    nodes = {n["id"]: n for n in workflow["nodes"]}
    return {(l[3], nodes[l[3]]["inputs"][l[4]]["name"]): (nodes[l[1]], l[2]) for l in workflow["links"]}


def test_video_workflows_take_load_frames_and_keep_the_video_path_as_a_muted_option():
    for name in ("video_to_4d.json", "video_mesh_to_4d.json", "backbone_swap_hunyuan3d.json",
                 "backbone_swap_load3d.json"):
        workflow = _load(name)
        by_target = _links_by_target(workflow)
        prepare = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshPrepareFrames")
        for input_name in ("images", "mask", "fps"):
            source, _ = by_target[(prepare["id"], input_name)]
            assert source["type"] == "ActionMeshLoadFrames", f"{name}: Prepare Frames.{input_name}"
        for node in workflow["nodes"]:
            if node["type"] in ("LoadVideo", "GetVideoComponents", "LoadBackgroundRemovalModel", "RemoveBackground"):
                assert node["mode"] == 2, f"{name}: the optional video path ({node['type']}) is muted"
        note = next(n for n in workflow["nodes"] if n["type"] == "Note")["widgets_values"][0]
        assert "video" in note and "Ctrl+M" in note, f"{name}: the Note explains the video option"


def test_mesh_prompt_workflow_renders_the_same_mesh_it_animates():
    workflow = _load("mesh_prompt_to_4d.json")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    by_target = _links_by_target(workflow)
    encode = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshEncodeReferenceMesh")
    wan = next(n for n in workflow["nodes"] if n["type"] == "WanImageToVideo")
    render, _ = by_target[(wan["id"], "start_image")]
    assert render["type"] == "ActionMeshRenderPreview"
    assert by_target[(render["id"], "reference")] == (encode, 1)
    size, mode, azimuth, elevation, background, margin = render["widgets_values"]
    assert mode == "textured" and (azimuth, elevation) == (0.0, 0.0) and background == 1.0  # paper: front, white
    assert margin == pytest.approx(0.1) and wan["widgets_values"][:2] == [size, size]  # square: no centre crop
    decode = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshDecodeDeformation")
    denoise = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshTemporalDenoise")
    assert by_target[(decode["id"], "reference")] == (encode, 1)  # the same mesh is animated
    assert by_target[(denoise["id"], "anchor")] == (encode, 0)
    source, _ = by_target[(wan["id"], "positive")]
    assert source["type"] == "CLIPTextEncode" and source.get("title") == "Motion prompt"
    vision, _ = by_target[(wan["id"], "clip_vision_output")]
    assert by_target[(vision["id"], "image")][0] is render
    prepare = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshPrepareFrames")
    assert nodes[by_target[(prepare["id"], "images")][0]["id"]]["type"] == "VAEDecode"
    assert encode["widgets_values"][0] == 0 and prepare["widgets_values"][3] == 0  # anchor = frame 0 = the render


def test_load3d_workflow_animates_the_mesh_core_load_3d_gives():
    workflow = _load("backbone_swap_load3d.json")
    by_target = _links_by_target(workflow)
    load3d = next(n for n in workflow["nodes"] if n["type"] == "Load3DAdvanced")
    encode = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshEncodeReferenceMesh")
    assert by_target[(encode["id"], "model_3d")] == (load3d, 0)  # Load 3D's model_3d (FILE_3D)
    assert encode["widgets_values"][1] == "none", "the file widget must not compete with Load 3D's mesh"
    decode = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshDecodeDeformation")
    denoise = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshTemporalDenoise")
    assert by_target[(decode["id"], "reference")] == (encode, 1) and by_target[(denoise["id"], "anchor")] == (encode, 0)


WAN_WORKFLOWS = ("image_to_video_to_4d.json", "text_to_image_to_video_to_4d.json", "mesh_prompt_to_4d.json")
WAN_FPS = 16.0  # Wan 2.1 generates 16 frames per second (its examples and ComfyUI's save its videos at 16 fps)
TRAINED_FRAMES = 16  # ActionMesh's stage I and II are trained on 16-frame clips (paper, supplementary)


def test_wan_workflows_give_the_16_trained_frames_at_the_video_rate():
    """Wan's length, Prepare Frames' stride and max_frames select 16 frames spread over the whole clip, the GLB plays
    them at the video's own speed (16 fps / stride), and the raw video is saved at 16 fps beside them."""
    negatives, loaders = set(), set()
    for name in WAN_WORKFLOWS:
        workflow = _load(name)
        nodes = {n["id"]: n for n in workflow["nodes"]}
        by_target = _links_by_target(workflow)
        wan = next(n for n in workflow["nodes"] if n["type"] == "WanImageToVideo")
        width, height, length, batch = wan["widgets_values"]
        assert (length - 1) % 4 == 0, f"{name}: Wan's VAE makes 4k+1 frames, not {length}"
        prepare = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshPrepareFrames")
        size, margin, threshold, start, stride, max_frames, fps, invert = prepare["widgets_values"]
        decode, _ = by_target[(prepare["id"], "images")]
        assert decode["type"] == "VAEDecode" and (prepare["id"], "fps") not in by_target and fps == WAN_FPS
        selected = len(range(start, length, stride))
        assert max_frames == TRAINED_FRAMES and selected >= TRAINED_FRAMES, f"{name}: {selected} frames selected"
        assert selected - TRAINED_FRAMES < stride, f"{name}: the 16 frames cover only part of the video"
        videos = [n for n in workflow["nodes"] if n["type"] == "SaveAnimatedWEBP"
                  and by_target[(n["id"], "images")][0] is decode]
        assert len(videos) == 1 and videos[0]["widgets_values"][1] == WAN_FPS, f"{name}: the generated video"
        stage2 = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshDecodeDeformation")
        assert stage2["widgets_values"][3] == 0.0, "Decode Deformation takes the rate from Prepare Frames"
        negative, _ = by_target[(wan["id"], "negative")]
        negatives.add(negative["widgets_values"][0])
        loaders.add(tuple(sorted((n["type"], n["widgets_values"][0]) for n in nodes.values()
                                 if n["type"] in ("UNETLoader", "CLIPLoader", "VAELoader", "CLIPVisionLoader"))))
    # one negative prompt and one set of Wan files: ComfyUI reuses the loaded models and the encoded negative
    # prompt from one workflow to the next instead of encoding it again with UMT5-XXL
    assert len(negatives) == 1 and len(loaders) == 1, (negatives, loaders)


def test_notes_name_every_model_with_its_gpu_needs():
    for path in _workflows():
        workflow = json.loads(path.read_text(encoding="utf-8"))
        note = next(n for n in workflow["nodes"] if n["type"] == "Note")["widgets_values"][0]
        assert workflow_models.MODELS_HEADING in note, f"{path.name}: the Note has no models paragraph"
        for record in workflow["models"]:
            assert record["name"].split("/")[0] in note, f"{path.name}: the Note does not name {record['name']}"
            assert record["url"].startswith("https://huggingface.co/"), record
        assert " GB " in note and "GPU" in note


# --------------------------------------------------------------------------- layout

TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar is drawn above ``pos``
GROUP_TITLE_HEIGHT = 34  # a group's title bar (font 24)
STAGES = ("Input", "Stage I ", "Stage II", "Output")


def node_box(node):
    """(x0, y0, x1, y1) of a node on the canvas, title bar included."""
    x, y = node["pos"]
    w, h = node["size"]
    return (x, y - TITLE_HEIGHT, x + w, y + h)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_layout(workflow):
    """No two nodes overlap, every node lies inside exactly one group below its title, groups do not overlap."""
    boxes = [(n["id"], n["type"], node_box(n)) for n in workflow["nodes"]]
    for i, (id_a, type_a, a) in enumerate(boxes):
        for id_b, type_b, b in boxes[i + 1:]:
            assert not _overlap(a, b), f"nodes {id_a} ({type_a}) and {id_b} ({type_b}) overlap"
    groups = workflow.get("groups") or []
    assert groups, "the workflow has no groups"
    rects = []
    for group in groups:
        x, y, w, h = group["bounding"]
        rects.append((group["title"], (x, y, x + w, y + h)))
    for i, (title_a, a) in enumerate(rects):
        for title_b, b in rects[i + 1:]:
            assert not _overlap(a, b), f"groups {title_a!r} and {title_b!r} overlap"
    for node_id, type_, (x0, y0, x1, y1) in boxes:
        inside = [title for title, (gx0, gy0, gx1, gy1) in rects
                  if gx0 <= x0 and x1 <= gx1 and gy0 + GROUP_TITLE_HEIGHT <= y0 and y1 <= gy1]
        assert len(inside) == 1, f"node {node_id} ({type_}) lies in groups {inside}, expected exactly one"


@pytest.mark.parametrize("path", _workflows(), ids=lambda p: p.name)
def test_workflow_layout_is_grouped_by_stage_without_overlaps(path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    check_layout(workflow)
    titles = [g["title"] for g in workflow["groups"]]
    for stage in STAGES:
        assert any(t.startswith(stage) for t in titles), f"no {stage!r} group: {titles}"
    assert any("stage 0" in t.lower() for t in titles), f"no group for stage 0: {titles}"
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and len(notes[0]["widgets_values"][0]) > 100, "one Note that explains the workflow"


def test_layout_check_catches_overlaps_title_bars_and_stray_nodes():
    workflow = _load("video_to_4d.json")
    check_layout(workflow)
    nodes = sorted(workflow["nodes"], key=lambda n: n["pos"][1])
    column = [n for n in nodes if n["pos"][0] == nodes[0]["pos"][0]]
    upper, lower = column[0], column[1]
    # move the lower node up so only its title bar touches the upper node's body
    broken = json.loads(json.dumps(workflow))
    node = next(n for n in broken["nodes"] if n["id"] == lower["id"])
    node["pos"][1] = upper["pos"][1] + upper["size"][1] + TITLE_HEIGHT - 5
    with pytest.raises(AssertionError, match="overlap"):
        check_layout(broken)
    broken = json.loads(json.dumps(workflow))
    node = next(n for n in broken["nodes"] if n["id"] == upper["id"])
    node["pos"][0] -= 10_000  # outside every group
    with pytest.raises(AssertionError, match="expected exactly one"):
        check_layout(broken)
    broken = json.loads(json.dumps(workflow))
    broken["groups"][0]["bounding"][3] = 10  # the group no longer encloses its nodes
    with pytest.raises(AssertionError, match="expected exactly one"):
        check_layout(broken)


# The validator must reject broken graphs (otherwise the tests above prove nothing).


def _load(name):
    return json.loads((WORKFLOW_DIR / name).read_text())


def test_validator_rejects_a_type_mismatch(specs):
    workflow = _load("video_to_4d.json")
    link = next(l for l in workflow["links"] if l[5] == "ACTIONMESH_CONTEXT")
    link[5] = "IMAGE"
    with pytest.raises(AssertionError, match="type"):
        validate_workflow(workflow, specs)


def test_validator_rejects_an_unknown_node(specs):
    workflow = _load("video_to_4d.json")
    workflow["nodes"][0]["type"] = "VHS_LoadVideo"
    with pytest.raises(AssertionError, match="unknown node type"):
        validate_workflow(workflow, specs)


def test_validator_rejects_out_of_range_and_misplaced_widgets(specs):
    workflow = _load("video_to_4d.json")
    node = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshTemporalDenoise")
    node["widgets_values"][0] = 0  # steps min is 1
    with pytest.raises(AssertionError, match="min"):
        validate_workflow(workflow, specs)
    workflow = _load("video_to_4d.json")
    node = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshTemporalDenoise")
    node["widgets_values"] = node["widgets_values"][1:]  # shifted by one slot
    with pytest.raises(AssertionError):
        validate_workflow(workflow, specs)


def test_validator_rejects_a_missing_required_link(specs):
    workflow = _load("video_mesh_to_4d.json")
    node = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshDecodeDeformation")
    entry = next(e for e in node["inputs"] if e["name"] == "reference")
    link_id = entry["link"]
    entry["link"] = None
    workflow["links"] = [l for l in workflow["links"] if l[0] != link_id]
    for other in workflow["nodes"]:
        for out in other.get("outputs", []):
            if out.get("links") and link_id in out["links"]:
                out["links"].remove(link_id)
    with pytest.raises(AssertionError, match="required input 'reference'"):
        validate_workflow(workflow, specs)


def test_validator_rejects_a_model_that_is_not_installed(specs):
    workflow = _load("video_to_4d.json")
    node = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshLoadDenoiser")
    node["widgets_values"][0] = "ActionMesh/missing"
    with pytest.raises(AssertionError, match="not one of"):
        validate_workflow(workflow, specs)
