"""Parity with the reference implementation on every case of the parity vector set.

The vector folder comes from ``ACTIONMESH_PARITY_DIR`` (default ``tests/data/parity``).
Every size is read from the case's checkpoint config and ``io.safetensors``,
so the same tests run against other vector sets (other sizes, seeds, layers).
Checkpoints are loaded through :func:`actionmesh_core.checkpoints.load_model`,
the same path users' released weights take.
"""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

import data_dirs
from parity_tolerance import check

from actionmesh_core.checkpoints import load_model
from actionmesh_core.sampling.schedules import flow_timesteps
from actionmesh_core.sampling.stage1 import masked_flow_sampling

PARITY_DIR = data_dirs.parity_dir()
CASES = ["denoiser_forward", "denoiser_sampling", "autoencoder_forward", "vae_encode_decode", "triposg_dit_forward",
         "stage2_windows", "stage1_windows", "frames_preprocess", "dino_preprocess", "triposg_sampling"]


def _case(name):
    folder = PARITY_DIR / name
    if not folder.exists():
        pytest.fail(f"parity case {folder} missing: set ACTIONMESH_PARITY_DIR to the parity vector folder")
    spec = json.loads((folder / "case.json").read_text())
    io = load_file(str(folder / "io.safetensors"))
    model = load_model(folder / "checkpoint", kind=spec["model"])
    return spec, io, model


def _check(actual, expected, spec, label, kind="forward"):
    check(actual, expected, spec, kind, label)


def test_parity_dir_has_all_cases():
    found = sorted(p.name for p in PARITY_DIR.iterdir() if (p / "case.json").exists())
    assert set(CASES) <= set(found), f"missing parity cases: {set(CASES) - set(found)}"


@torch.no_grad()
def test_denoiser_forward():
    spec, io, model = _case("denoiser_forward")
    assert model.config["inflated_layers"] == spec["config"]["inflated_layers"]
    out = model(io["hidden_states"], io["context"], io["framestep"], io["diffusion_time"], io["mask"])
    _check(out, io["expected"], spec, "denoiser_forward")


@torch.no_grad()
def test_denoiser_forward_mask_matters():
    """The source mask changes the output (diffusion time 0 for source frames)."""
    _, io, model = _case("denoiser_forward")
    a = model(io["hidden_states"], io["context"], io["framestep"], io["diffusion_time"], io["mask"])
    b = model(io["hidden_states"], io["context"], io["framestep"], io["diffusion_time"], torch.zeros_like(io["mask"]))
    assert (a - b).abs().max() > 1e-3


def test_denoiser_sampling_schedules():
    spec, io, _ = _case("denoiser_sampling")
    sampler = spec["sampler"]
    checked = 0
    for key, value in io.items():
        match = re.fullmatch(r"timesteps_steps(\d+)_shift([\d.]+)", key)
        if match:
            steps, shift = int(match.group(1)), float(match.group(2))
            torch.testing.assert_close(flow_timesteps(steps, shift, sampler["num_train_timesteps"]).float(), value,
                                       rtol=1e-5, atol=1e-4)
            checked += 1
    assert checked >= 2
    torch.testing.assert_close(flow_timesteps(sampler["steps"], sampler["shift"]).float(), io["timesteps_case"],
                               rtol=1e-5, atol=1e-4)


def test_denoiser_sampling():
    spec, io, model = _case("denoiser_sampling")
    sampler = spec["sampler"]
    out = masked_flow_sampling(model, io["init_latent"], io["source_mask"], io["context"], io["framestep"],
                               steps=sampler["steps"], shift=sampler["shift"],
                               guidance_scale=sampler["guidance_scale"])
    _check(out, io["expected"], spec, "denoiser_sampling", "sampling")
    keep = io["source_mask"][..., None, None].expand_as(out) > 0.5
    assert torch.equal(out[keep], io["init_latent"][keep]), "source latents must stay exactly as given"


@torch.no_grad()
def test_autoencoder_forward():
    spec, io, model = _case("autoencoder_forward")
    out = model(io["latent"], io["framestep"], io["source_alpha"], io["target_alphas"], io["query"])
    assert out.shape == io["expected"].shape
    _check(out, io["expected"], spec, "autoencoder_forward")
    if "expected_vertices" in io:
        _check(out, io["expected_vertices"], spec, "autoencoder_forward vertices")


@torch.no_grad()
def test_autoencoder_per_target_equals_batched():
    """Batching target times (one pass) equals one pass per target time."""
    _, io, model = _case("autoencoder_forward")
    batched = model(io["latent"], io["framestep"], io["source_alpha"], io["target_alphas"], io["query"])
    single = torch.cat([model(io["latent"], io["framestep"], io["source_alpha"], io["target_alphas"][:, i:i + 1],
                              io["query"]) for i in range(io["target_alphas"].shape[1])], dim=1)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_vae_encode_decode():
    spec, io, model = _case("vae_encode_decode")
    if "query_indices" in io:
        assert torch.equal(io["surface"][:, io["query_indices"]], io["query_points"])
    mean, logvar = model.encode(io["surface"], io["query_points"])
    _check(mean, io["expected_mean"], spec, "vae mean")
    _check(logvar, io["expected_logvar"], spec, "vae logvar")
    sdf = model.decode(io["latent"], io["sdf_points"])
    _check(sdf, io["expected_sdf"], spec, "vae sdf")
    chunked = model.decode(io["latent"], io["sdf_points"], chunk_size=7)
    torch.testing.assert_close(chunked, sdf, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_triposg_dit_forward():
    spec, io, model = _case("triposg_dit_forward")
    out = model(io["hidden_states"], io["timestep"], io["encoder_hidden_states"])
    _check(out, io["expected"], spec, "triposg_dit_forward")
