"""Node-side checks: output paths refused before any folder is made, Unicode prefixes, loaders check headers."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch


def test_unicode_letters_are_kept_and_hostile_prefixes_refused(host):
    assert host.sanitize_prefix("анимация/верблюд") == ("анимация", "верблюд")
    assert host.sanitize_prefix("日本/ラクダ_1") == ("日本", "ラクダ_1")
    assert host.sanitize_prefix("café/e\u0301t\u00e9") == ("café", "été")  # NFC
    assert host.sanitize_prefix("a__b") == ("", "a__b")
    assert host.sanitize_prefix("we<ird>|na:me*?") == ("", "we_ird_na_me_")
    for hostile in ("../x", "a/../../b", "/etc/x", "~/x", "C:\\x", "a\x00b", "a\nb", "run\x1b[31m", "a\u202eb"):
        with pytest.raises(ValueError):
            host.sanitize_prefix(hostile)


def test_symlink_outside_is_refused_before_any_folder_is_made(host, host_dirs, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (host_dirs["output"] / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the output folder"):
        host.next_output_path("link/deep/er/x", "glb")
    assert list(outside.iterdir()) == []  # no 'deep/er' created through the symlink
    path, filename, subfolder = host.next_output_path("ラクダ/run", "glb")
    assert path.parent == host_dirs["output"] / "ラクダ" and filename == "run_00001_.glb"


def test_export_node_writes_unicode_names_atomically(pack, host_dirs):
    import trimesh

    from actionmesh_core.io.animated_mesh import AnimatedMesh
    from actionmesh_core.io.glb import read_animated_glb

    node = pack.NODES["ActionMeshExportGLB"]
    box = trimesh.creation.box()
    anim = AnimatedMesh(faces=np.asarray(box.faces), vertices=np.stack([box.vertices] * 2).astype(np.float32),
                        times=np.array([0, 1 / 24], np.float32))
    result = node.execute(anim, "動き/camel", "STEP", True)
    rel = result[0]
    assert rel.startswith("動き/camel_00001_")
    assert read_animated_glb(host_dirs["output"] / rel).num_frames == 2
    leftovers = [p for p in host_dirs["output"].rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_loader_node_refuses_a_truncated_checkpoint_from_its_header(pack, host_dirs, tmp_path, monkeypatch):
    from actionmesh_core.checkpoints import CheckpointError
    from actionmesh_core.weights import make_tiny_weights

    weights = make_tiny_weights(tmp_path / "w")
    target = host_dirs["models"] / "actionmesh" / "denoiser"
    shutil.copytree(weights / "ActionMesh" / "denoiser", target)
    data = (target / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(data[: len(data) // 2])
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("tensors read before the check"))
    node = pack.NODES["ActionMeshLoadDenoiser"]
    with pytest.raises(CheckpointError, match="model.safetensors") as info:
        node.execute("denoiser", "fp32")
    assert "\n" not in str(info.value)
    dino = host_dirs["models"] / "dinov2" / "dinov2-large"
    shutil.copytree(weights / "dinov2-large", dino)
    (dino / "model.safetensors").rename(dino / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only .safetensors"):
        pack.NODES["ActionMeshLoadDINOv2"].execute("dinov2-large", "fp32")


def test_prepare_node_keeps_a_minimum_crop_for_a_tiny_object(pack):
    images = torch.zeros(3, 200, 300, 4)
    images[:, 100:102, 150:152] = 1.0
    node = pack.NODES["ActionMeshPrepareFrames"]
    with pytest.warns(UserWarning, match="only 2x2 px"):
        frames, preview, masks = node.execute(images, 256, 0.1, 0.1, 0, 1, 0, 24.0, False)
    x0, y0, x1, y1 = frames.crop_box
    assert x1 - x0 >= 63
    assert float(masks.sum(dim=(1, 2)).max()) < 0.01 * 256 * 256  # the speck stays small
