"""Write the pack's model download metadata (and current socket types / widget defaults) into example_workflows/*.json.

Run ``python3 tests/workflow_models.py`` after a loader's released entry or a node's inputs change;
``tests/unit/test_workflows.py`` fails until the shipped workflows carry what this writes:

* every ActionMesh/TripoSG/DINOv2 loader node: ``properties.models`` = ``loader_nodes.download_metadata``;
* the workflow's top-level ``models``: the union of those records (the frontend checks these against
  ``GET /experiment/models/<directory>`` and lists each missing file with its download link);
* every core loader that selects a core model of ``CORE_MODELS`` (Wan 2.1, UMT5-XXL, CLIP-ViT-H, SDXL,
  Hunyuan3D-2): the same records, with the links ComfyUI's own examples give;
* Encode Reference Mesh: ``model_3d`` socket type = the node's ``FILE_3D`` union; ``num_tokens`` appended
  to ``widgets_values`` (its default) where a workflow predates it;
* the workflow's Note: everything from ``MODELS_HEADING`` on is rewritten from ``MODEL_FAMILIES``, so the Note
  names every model file the workflow loads, with the GPU memory and time its model card states.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the shipped workflows: ComfyUI's template browser and the registry read this folder (custom_node_manager.py)
WORKFLOW_DIR = ROOT / "example_workflows"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import load_pack  # noqa: E402


WAN_REPACKAGED = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
# core model file (the value the shipped workflow selects) -> (models/ sub-folder, download link, family)
CORE_MODELS = {
    "wan2.1_i2v_480p_14B_fp16.safetensors": (
        "diffusion_models", WAN_REPACKAGED + "diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors", "wan"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (
        "text_encoders", WAN_REPACKAGED + "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan"),
    "wan_2.1_vae.safetensors": ("vae", WAN_REPACKAGED + "vae/wan_2.1_vae.safetensors", "wan"),
    "clip_vision_h.safetensors": ("clip_vision", WAN_REPACKAGED + "clip_vision/clip_vision_h.safetensors", "wan"),
    "sd_xl_base_1.0.safetensors": (
        "checkpoints", "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
                       "sd_xl_base_1.0.safetensors", "sdxl"),
    # ComfyUI's Hunyuan3D-2 example: the release's fp16 DiT checkpoint, saved under this name
    "hunyuan3d-dit-v2.safetensors": (
        "checkpoints", "https://huggingface.co/tencent/Hunyuan3D-2/resolve/main/hunyuan3d-dit-v2-0/"
                       "model.fp16.safetensors", "hunyuan3d"),
}
# core loader node -> the models/ sub-folder its first widget selects from
CORE_LOADERS = {"UNETLoader": "diffusion_models", "CLIPLoader": "text_encoders", "VAELoader": "vae",
                "CLIPVisionLoader": "clip_vision", "CheckpointLoaderSimple": "checkpoints",
                "ImageOnlyCheckpointLoader": "checkpoints"}
MODELS_HEADING = "Models and GPU needs"
# what the Note says of each family of models the workflow loads: files, then the figures of the model card
MODEL_FAMILIES = {
    "actionmesh": ("ActionMesh (models/actionmesh/ActionMesh), TripoSG (models/triposg/TripoSG), DINOv2-L "
                   "(models/dinov2/dinov2-large); README 'Models' has the download commands. The ActionMesh "
                   "release asks for a 32 GB GPU (12 GB in its low-RAM mode) and takes about 75 s per 16-frame "
                   "clip on an H100."),
    "wan": ("Wan 2.1 image-to-video 14B 480p: diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors, "
            "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors, vae/wan_2.1_vae.safetensors, "
            "clip_vision/clip_vision_h.safetensors. Its model card: I2V-14B, 81 frames at 720p on one H100: "
            "1492 s and 76.7 GB peak GPU memory (no 480p figure given; this workflow makes 33 frames at 512x512)."),
    "sdxl": ("SDXL base 1.0: checkpoints/sd_xl_base_1.0.safetensors (6.9 GB; its model card gives no memory or "
             "time figure)."),
    "hunyuan3d": ("Hunyuan3D-2 shape model: checkpoints/hunyuan3d-dit-v2.safetensors (the release's "
                  "hunyuan3d-dit-v2-0/model.fp16.safetensors, renamed). Its model card: 6 GB GPU memory for shape "
                  "generation (no time figure)."),
}


def core_model_record(node_type: str, value: str):
    """The download record of a core loader's selected file, or None (not one of ``CORE_MODELS``)."""
    directory = CORE_LOADERS.get(node_type)
    known = CORE_MODELS.get(value)
    if directory is None or known is None or known[0] != directory:
        return None
    return {"name": value, "url": known[1], "directory": directory}


def models_note(families) -> str:
    """The Note's models paragraph for the given families (``MODEL_FAMILIES`` keys, in that order)."""
    lines = [f"{MODELS_HEADING} (ComfyUI lists the missing files with their download links when the workflow "
             f"loads):"]
    lines += [f"- {MODEL_FAMILIES[name]}" for name in MODEL_FAMILIES if name in families]
    return "\n".join(lines)


def apply(workflow: dict, pack) -> dict:
    """Add the metadata to one UI-format workflow (in place) and return it."""
    loaders = sys.modules[pack.__name__ + ".nodes.loader_nodes"]
    records, families = [], set()
    for node in workflow["nodes"]:
        if node["type"] in CORE_LOADERS:
            record = core_model_record(node["type"], (node.get("widgets_values") or [""])[0])
            node.setdefault("properties", {})
            if record:
                node["properties"]["models"] = [record]
                records += [record] if record not in records else []
                families.add(CORE_MODELS[record["name"]][2])
            else:
                node["properties"].pop("models", None)
        if node["type"] in loaders.RELEASED:
            families.add("actionmesh")
            entry = (node.get("widgets_values") or [""])[0]
            models = loaders.download_metadata(node["type"], entry)
            node.setdefault("properties", {})
            if models:
                node["properties"]["models"] = models
                records += [m for m in models if m not in records]
            else:
                node["properties"].pop("models", None)
        if node["type"] == "ActionMeshEncodeReferenceMesh":
            declared = pack.NODES[node["type"]].INPUT_TYPES()
            for slot in node.get("inputs", []):
                if slot["name"] == "model_3d":
                    slot["type"] = declared["optional"]["model_3d"][0]
            values = node.setdefault("widgets_values", [])
            if len(values) == 6:  # frame_index, mesh_file, mesh_index, sample_posterior, seed, control
                values.append(declared["required"]["num_tokens"][1]["default"])
    others = [m for m in workflow.get("models", []) if m.get("directory") not in set(loaders.RELEASED_DIRS)
              and m.get("name") not in CORE_MODELS]
    if records or others:
        workflow["models"] = others + records
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    if notes and families:
        text = notes[0]["widgets_values"][0]
        prose = text[:text.index(MODELS_HEADING)] if MODELS_HEADING in text else text
        notes[0]["widgets_values"][0] = prose.rstrip() + "\n\n" + models_note(families)
    return workflow


def main() -> None:
    pack = load_pack()
    for path in sorted(WORKFLOW_DIR.glob("*.json")):
        before = path.read_text()
        after = json.dumps(apply(json.loads(before), pack), indent=2) + "\n"
        if after != before:
            path.write_text(after)
            print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
