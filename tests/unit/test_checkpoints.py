"""Strict checkpoint loading: official folders, single files, clear errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import data_dirs

from actionmesh_core.checkpoints import CheckpointError, detect_kind, load_model, save_model
from tiny_models import tiny_autoencoder, tiny_denoiser, tiny_dit, tiny_vae

PARITY_DIR = data_dirs.parity_dir()


def _copy_case(tmp_path, case):
    dst = tmp_path / case
    shutil.copytree(PARITY_DIR / case / "checkpoint", dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    weights = next(dst.glob("*.safetensors"))
    return dst, weights


@pytest.mark.parametrize("case,kind", [("denoiser_forward", "actionmesh_denoiser"),
                                       ("autoencoder_forward", "actionmesh_autoencoder"),
                                       ("vae_encode_decode", "triposg_vae"),
                                       ("triposg_dit_forward", "triposg_dit")])
def test_detects_kind_of_released_layouts(case, kind):
    model = load_model(PARITY_DIR / case / "checkpoint")
    assert model.kind == kind
    cfg = json.loads((PARITY_DIR / case / "checkpoint" / "config.json").read_text())
    assert detect_kind(load_file(str(next((PARITY_DIR / case / "checkpoint").glob("*.safetensors")))), cfg) == kind


def test_renamed_key_is_named(tmp_path):
    folder, weights = _copy_case(tmp_path, "denoiser_forward")
    state = load_file(str(weights))
    key = sorted(k for k in state if k.endswith(".s_attn.to_q.weight"))[-1]  # sizes come from the vector set
    renamed = key.replace("to_q", "to_qq")
    state[renamed] = state.pop(key)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    msg = str(err.value)
    assert key in msg and "missing" in msg
    assert renamed in msg and "unexpected" in msg
    assert "denoiser" in msg


def test_truncated_tensor_is_named(tmp_path):
    folder, weights = _copy_case(tmp_path, "vae_encode_decode")
    state = load_file(str(weights))
    key = "decoder.blocks.0.ff.net.2.weight"
    state[key] = state[key][:, :-5].contiguous()
    save_file(state, str(weights))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert key in str(err.value)
    assert "TripoSG shape VAE" in str(err.value)


def test_corrupt_file_is_reported(tmp_path):
    folder, weights = _copy_case(tmp_path, "triposg_dit_forward")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert weights.name in str(err.value)


def test_wrong_kind_is_reported():
    with pytest.raises(CheckpointError) as err:
        load_model(PARITY_DIR / "autoencoder_forward" / "checkpoint", kind="actionmesh_denoiser")
    assert "autoencoder" in str(err.value)


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="only safetensors"):
        load_model(tmp_path)


def test_missing_path_and_config(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    save_file({"a": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="no config"):
        load_model(tmp_path / "w.safetensors")


def test_single_file_with_config(tmp_path):
    src = PARITY_DIR / "denoiser_forward" / "checkpoint"
    single = tmp_path / "denoiser.safetensors"
    shutil.copy(src / "model.safetensors", single)
    cfg = json.loads((src / "config.json").read_text())
    a = load_model(single, config=cfg)
    shutil.copy(src / "config.json", tmp_path / "denoiser.json")
    b = load_model(single)
    ref = load_model(src)
    for m in (a, b):
        for (k, v), (_, w) in zip(m.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(v, w), k


@pytest.mark.parametrize("dtype,torch_dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_load(dtype, torch_dtype):
    model = load_model(PARITY_DIR / "autoencoder_forward" / "checkpoint", dtype=dtype)
    assert model.post_quant.weight.dtype == torch_dtype
    assert model.proj_query.weight.dtype == torch.float32, "stage II query path stays float32"
    assert model.blocks[-1].sub("x_attn").to_q.weight.dtype == torch.float32


@pytest.mark.parametrize("factory", [tiny_denoiser, tiny_autoencoder, tiny_vae, tiny_dit])
def test_save_load_round_trip(tmp_path, factory):
    model = factory()
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder)
    assert loaded.kind == model.family
    for (k, v), (k2, w) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, w)


def test_unknown_dtype_and_device():
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(PARITY_DIR / "autoencoder_forward" / "checkpoint", dtype="int3")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(PARITY_DIR / "autoencoder_forward" / "checkpoint", device="cuda")
