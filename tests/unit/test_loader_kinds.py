"""Loaders offer only the model entries of their own kind (read from each entry's config.json)."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from conftest import combo_options


def _entry(root, name, config, weights="model.safetensors", keys=("w",)):
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: torch.zeros(1) for k in keys}, str(path / weights))


def test_each_loader_lists_only_its_kind(pack, host_dirs):
    models = host_dirs["models"]
    # the released layouts: ActionMesh/{denoiser,autoencoder}, TripoSG/{vae,transformer,image_encoder_dinov2}
    _entry(models / "actionmesh", "ActionMesh/denoiser", {"inflated_layers": [0, 1], "width": 32})
    _entry(models / "actionmesh", "ActionMesh/autoencoder", {"prediction_mode": "direct", "width": 32})
    # a renamed copy whose config is silent: its weights' key names tell the kind
    _entry(models / "actionmesh", "mine/stage2", {"width": 32}, keys=("proj_query.weight", "post_quant.weight"))
    _entry(models / "triposg", "TripoSG/vae", {"_class_name": "TripoSGVAEModel"}, "diffusion_pytorch_model.safetensors")
    _entry(models / "triposg", "TripoSG/transformer", {"_class_name": "TripoSGDiTModel"},
           "diffusion_pytorch_model.safetensors")
    _entry(models / "triposg", "TripoSG/image_encoder_dinov2", {"model_type": "dinov2"})
    _entry(models / "dinov2", "dinov2-large", {"model_type": "dinov2"})
    _entry(models / "dinov2", "clip-vit", {"model_type": "clip_vision_model"})
    (models / "dinov2" / "broken").mkdir()
    (models / "dinov2" / "broken" / "config.json").write_text("{not json")
    (models / "dinov2" / "broken" / "model.safetensors").write_bytes(b"")

    def offered(node):
        return combo_options(pack.NODES[node].INPUT_TYPES()["required"]["model_name"])

    assert offered("ActionMeshLoadDenoiser") == ["ActionMesh/denoiser/model.safetensors"]
    assert offered("ActionMeshLoadAutoencoder") == ["ActionMesh/autoencoder/model.safetensors",
                                                    "mine/stage2/model.safetensors"]
    assert offered("ActionMeshLoadTripoSGVAE") == ["TripoSG/vae/diffusion_pytorch_model.safetensors"]
    assert offered("ActionMeshLoadTripoSGDiT") == ["TripoSG/transformer/diffusion_pytorch_model.safetensors"]
    assert offered("ActionMeshLoadDINOv2") == ["dinov2-large/model.safetensors"]


def test_loaders_accept_folder_values_of_older_workflows(pack, fake_model_tree):
    """Workflows saved when the loaders listed folders (``ActionMesh/denoiser``) still validate in ComfyUI
    (``validate_inputs``, V1's ``VALIDATE_INPUTS``, replaces its "value not in list" check) and resolve to the same folder; anything
    else gets one line that says where to put the weights."""
    import sys

    host = sys.modules[pack.__name__ + ".nodes.host"]
    for node_type, folder, legacy in (("ActionMeshLoadDenoiser", "actionmesh", "ActionMesh/denoiser"),
                                      ("ActionMeshLoadTripoSGVAE", "triposg", "TripoSG/vae"),
                                      ("ActionMeshLoadDINOv2", "dinov2", "dinov2-large")):
        cls = pack.NODES[node_type]
        listed, = combo_options(cls.INPUT_TYPES()["required"]["model_name"])
        assert listed.startswith(legacy + "/") and listed != legacy
        assert cls.validate_inputs(listed) is True and cls.validate_inputs(legacy) is True
        assert host.resolve_model(folder, listed) == host.resolve_model(folder, legacy)
        assert host.resolve_model(folder, legacy).is_dir()
        message = cls.validate_inputs(legacy + "_v9")
        assert isinstance(message, str) and "not found" in message and "\n" not in message
        assert "models/" in cls.validate_inputs("../outside")
