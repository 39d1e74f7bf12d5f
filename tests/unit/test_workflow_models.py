"""Shipped workflows carry the download metadata that makes ComfyUI's missing-models panel list our weights.

The frontend (comfyui-frontend-package 1.45) reads ``properties.models`` of a node and the workflow's
top-level ``models`` (records ``{name, url, directory}``); a record referenced by an active node whose
``name`` is not among the files of ``GET /experiment/models/<directory>`` is shown as missing with its
link.  ``tests/workflow_models.py`` writes the records; this test fails when a workflow lacks them.
"""
from __future__ import annotations

import copy
import json
import sys

import pytest

import workflow_models

WORKFLOWS = sorted(workflow_models.WORKFLOW_DIR.glob("*.json"))
RELEASED_FILES = {
    "ActionMeshLoadDenoiser": ("actionmesh", "ActionMesh/denoiser/model.safetensors",
                               "https://huggingface.co/facebook/ActionMesh/resolve/main/denoiser/model.safetensors"),
    "ActionMeshLoadAutoencoder": ("actionmesh", "ActionMesh/autoencoder/model.safetensors",
                                  "https://huggingface.co/facebook/ActionMesh/resolve/main/autoencoder/model.safetensors"),
    "ActionMeshLoadTripoSGVAE": ("triposg", "TripoSG/vae/diffusion_pytorch_model.safetensors",
                                 "https://huggingface.co/VAST-AI/TripoSG/resolve/main/vae/diffusion_pytorch_model.safetensors"),
    "ActionMeshLoadTripoSGDiT": ("triposg", "TripoSG/transformer/diffusion_pytorch_model.safetensors",
                                 "https://huggingface.co/VAST-AI/TripoSG/resolve/main/transformer/"
                                 "diffusion_pytorch_model.safetensors"),
    "ActionMeshLoadDINOv2": ("dinov2", "dinov2-large/model.safetensors",
                             "https://huggingface.co/facebook/dinov2-large/resolve/main/model.safetensors"),
}


def test_download_metadata_names_the_released_files(pack):
    loaders = sys.modules[pack.__name__ + ".nodes.loader_nodes"]
    for node_type, (directory, name, url) in RELEASED_FILES.items():
        record = [{"name": name, "url": url, "directory": directory}]
        assert loaders.released_entry(node_type) == name  # the loader's value selects the released file itself
        assert loaders.download_metadata(node_type, name) == record
        # a workflow saved when the loaders listed folders keeps its download source
        assert loaders.download_metadata(node_type, name.rsplit("/", 1)[0]) == record
        assert loaders.download_metadata(node_type, "my/own/copy") == []  # no known source for a user's entry
    assert loaders.download_metadata("LoadImage", "x.png") == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_lists_every_pack_weight_with_its_source(path, pack):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    loaders = [n for n in workflow["nodes"] if n["type"] in RELEASED_FILES]
    assert loaders, "every shipped workflow loads pack models"
    top = workflow.get("models", [])
    for node in loaders:
        directory, name, url = RELEASED_FILES[node["type"]]
        record = {"name": name, "url": url, "directory": directory}
        # the value is the released weights file, as the loader lists it: the frontend's missing-models check
        # compares it with the loader's list and takes the download link from properties.models by this name
        assert node["widgets_values"][0] == name, f"node {node['id']} does not use the release"
        assert node["properties"].get("models") == [record], f"node {node['id']} ({node['type']}) lacks its models"
        assert record in top, f"top-level models lack {name}"
    # writing the metadata again changes nothing: the shipped file is what the script writes
    assert workflow_models.apply(copy.deepcopy(workflow), pack) == workflow


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_lists_every_core_model_with_its_source(path):
    """Core loaders (Wan 2.1, UMT5, CLIP vision, SDXL, Hunyuan3D-2) carry the same records, so the panel lists them."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    for node in workflow["nodes"]:
        if node["type"] not in workflow_models.CORE_LOADERS:
            continue
        name = node["widgets_values"][0]
        assert name in workflow_models.CORE_MODELS, f"node {node['id']} ({node['type']}) loads an unlisted {name}"
        directory, url, _ = workflow_models.CORE_MODELS[name]
        record = {"name": name, "url": url, "directory": directory}
        assert directory == workflow_models.CORE_LOADERS[node["type"]]
        assert node["properties"].get("models") == [record] and record in workflow["models"]
        assert url.startswith("https://huggingface.co/") and url.endswith(".safetensors")
