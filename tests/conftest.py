"""Shared fixtures: the node pack loaded exactly as ComfyUI loads it, real frame fixtures, fake folders.

Also the kind marker of every test (its sub-folder of ``tests/``: unit, parity, integration, host). pytest
imports this file in its default ``prepend`` mode with no ``__init__.py`` above it, so ``tests/`` itself goes
on ``sys.path``: the helper modules beside this file (``data_dirs``, ``tiny_models``, ``comfy_host``, ...)
import the same way from every sub-folder, and test file names stay unique across the sub-folders.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

import data_dirs

ROOT = data_dirs.REPO_ROOT
# tests/<kind>/test_*.py: the sub-folder is the test's kind, and its marker (``-m unit``, ``-m "not integration"``)
KINDS = ("unit", "parity", "integration", "host")
# FFmpeg's log level is read when OpenCV opens its first video; the library sets it before that in a fresh
# process (frames._load_video_file), but in this shared test process another test may open a video first
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
PACK_NAME = "actionmesh_pack"

# Installed model entries the shipped workflows refer to (released layouts), with a config.json that names
# their kind (loaders list only entries of their own kind).
FAKE_CONFIGS = {
    "ActionMesh/denoiser": {"inflated_layers": [0]},
    "ActionMesh/autoencoder": {"prediction_mode": "direct"},
    "TripoSG/vae": {"_class_name": "TripoSGVAEModel"},
    "TripoSG/transformer": {"_class_name": "TripoSGDiTModel"},
    "dinov2-large": {"model_type": "dinov2"},
}
FAKE_MODELS = {
    "actionmesh": ["ActionMesh/denoiser", "ActionMesh/autoencoder"],
    "triposg": ["TripoSG/vae", "TripoSG/transformer"],
    "dinov2": ["dinov2-large"],
}
FAKE_INPUT_MESHES = ["3d/my_mesh.glb"]
FAKE_INPUT_FRAMES = ["frames/my_object/0000.png", "frames/my_object/0001.png"]  # Load Frames' placeholder folder


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects (pytest's own modifyitems hook)
def pytest_collection_modifyitems(config, items):
    """Mark every test with its kind: the sub-folder of ``tests/`` its file lives in (pytest.ini describes each)."""
    for item in items:
        try:
            parts = Path(item.path).resolve().relative_to(data_dirs.TESTS_DIR).parts
        except ValueError:  # a file outside tests/ named on the command line
            continue
        if len(parts) == 2 and parts[0] in KINDS:
            item.add_marker(parts[0])


def combo_options(spec) -> list:
    """The choices of a combo input in a node's V1 view: ``("COMBO", {"options": [...]})`` (V3 nodes)."""
    kind, options = spec[0], spec[1]
    assert kind == "COMBO", spec
    return list(options["options"])


def load_pack():
    """Import the repository root as a ComfyUI custom-node package (same call as ComfyUI's loader)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    """The loaded pack module (``NODES``: node id -> V3 node class, ``DISPLAY_NAMES``, ``comfy_entrypoint``)."""
    return load_pack()


@pytest.fixture(scope="session")
def host(pack):
    """The pack's ComfyUI adapter module (``nodes/host.py``)."""
    return sys.modules[PACK_NAME + ".nodes.host"]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder with the real RGBA frame sequences ``davis_camel/`` and ``spring/`` (``$ACTIONMESH_FIXTURES_DIR``,
    default ``tests/data/fixtures``); missing data fails the test, it is never skipped."""
    path = data_dirs.fixtures_dir()
    for clip in ("davis_camel", "spring"):
        assert (path / clip).is_dir(), f"frame fixture {path / clip} missing (ACTIONMESH_FIXTURES_DIR)"
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """Parity vector folder (``$ACTIONMESH_PARITY_DIR``, default ``tests/data/parity``)."""
    return data_dirs.parity_dir()


@pytest.fixture()
def host_dirs(tmp_path, monkeypatch):
    """Empty models/input/output folders for the host fallbacks (environment variables)."""
    dirs = {name: tmp_path / name for name in ("models", "input", "output")}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.setenv("ACTIONMESH_MODELS_DIR", str(dirs["models"]))
    monkeypatch.setenv("ACTIONMESH_INPUT_DIR", str(dirs["input"]))
    monkeypatch.setenv("ACTIONMESH_OUTPUT_DIR", str(dirs["output"]))
    return dirs


@pytest.fixture()
def fake_model_tree(host_dirs):
    """Model folders (config.json + weights stub) and an input mesh as the shipped workflows expect."""
    for folder, entries in FAKE_MODELS.items():
        for entry in entries:
            path = host_dirs["models"] / folder / entry
            path.mkdir(parents=True)
            (path / "config.json").write_text(json.dumps(FAKE_CONFIGS[entry]))
            weights = "diffusion_pytorch_model.safetensors" if entry.startswith("TripoSG/") else "model.safetensors"
            (path / weights).write_bytes(b"")  # the released file names (what the loaders list)
    for name in FAKE_INPUT_MESHES + FAKE_INPUT_FRAMES:
        path = host_dirs["input"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return host_dirs
