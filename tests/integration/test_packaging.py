"""The library installs like any package, its metadata is complete, and every README Python snippet runs as written.

``pip install`` goes into a temporary ``--target`` folder (never the shared site-packages);
the snippets then run in a fresh folder outside the repository, importing the installed copy.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import data_dirs

ROOT = data_dirs.REPO_ROOT
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_dependencies_match_requirements_and_leave_torch_out():
    deps = _pyproject()["project"]["dependencies"]
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert sorted(deps) == sorted(reqs)
    assert not any(re.match(r"torch\b", d) for d in deps)


def test_version_matches_the_package():
    import actionmesh_core

    assert _pyproject()["project"]["version"] == actionmesh_core.__version__


def test_comfy_registry_metadata():
    meta = _pyproject()
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].startswith("https://")
    urls = {m["model_url"] for m in comfy["Models"]}
    assert urls == {"https://huggingface.co/facebook/ActionMesh", "https://huggingface.co/VAST-AI/TripoSG",
                    "https://huggingface.co/facebook/dinov2-large"}
    assert all(m["location"].startswith("/") for m in comfy["Models"])
    assert meta["project"]["license"] == {"file": "LICENSE"} and (ROOT / "LICENSE").read_text().startswith("MIT License")
    # the registry's node id rules: letters, digits, - _ . ; no "ComfyUI" in it
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", meta["project"]["name"])
    assert "comfyui" not in meta["project"]["name"].lower()


def test_comfyui_reads_the_metadata():
    """ComfyUI's own parser (comfy_config) reads our [tool.comfy] when the host sources are beside the checkout."""
    hosts = [ROOT.parent / "shared" / "hosts" / "comfyui", Path("/work/shared/hosts/comfyui")]
    host = next((h for h in hosts if (h / "comfy_config").is_dir()), None)
    if host is None:
        pytest.skip("ComfyUI sources (shared/hosts/comfyui) not found")
    pytest.importorskip("pydantic_settings", reason="ComfyUI's config parser needs pydantic-settings")
    sys.path.insert(0, str(host))
    try:
        from comfy_config import config_parser

        cfg = config_parser.extract_node_configuration(str(ROOT))
    finally:
        sys.path.remove(str(host))
    assert cfg.tool_comfy.publisher_id == _pyproject()["tool"]["comfy"]["PublisherId"]
    assert len(cfg.tool_comfy.models) == 3
    assert cfg.project.license.file == "LICENSE"


def test_readme_install_commands_work_from_pypi_alone():
    """The README's torch command is pinned to the version CI installs, with no other package index; the model
    downloads use `hf download` (the command current huggingface_hub installs; `huggingface-cli` is gone), for
    the repositories the missing-weights error names."""
    from importlib.metadata import entry_points

    from actionmesh_core.weights import COMPONENTS

    ci = (ROOT / ".ci" / "run").read_text()
    pinned = re.search(r"install .*\btorch==([0-9.]+)", ci).group(1)
    torch_lines = [line for line in README.splitlines() if re.match(r"\s*pip install .*\btorch\b", line)]
    assert torch_lines and all(f"torch=={pinned}" in line for line in torch_lines), torch_lines
    assert "--index-url" not in README and "--extra-index-url" not in README
    assert "huggingface-cli" not in README
    assert "hf" in {ep.name for ep in entry_points(group="console_scripts") if ep.value.startswith("huggingface_hub")}
    downloads = set(re.findall(r"^hf download (\S+) --local-dir", README, flags=re.M))
    assert downloads == {repo for _, repo, _ in COMPONENTS.values()}, downloads


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install .`` into a temporary --target folder (no dependencies: they are already present)."""
    import shutil

    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "src"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache", ".benchmarks"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(source)],
                          capture_output=True, text=True, cwd=build, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / "actionmesh_core" / "validation.py").is_file()
    assert not (target / "nodes").exists() and not (target / "tests").exists()
    return target


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


def test_installed_cli_runs_from_any_folder(installed, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "actionmesh_core", "video-to-4d", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(installed), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--remove-background" in proc.stdout and "--frame-stride" in proc.stdout
    where = subprocess.run([sys.executable, "-c", "import actionmesh_core; print(actionmesh_core.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_env(installed), timeout=300)
    assert where.stdout.strip().startswith(str(installed))


def _python_snippets():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_snippets():
    assert len(_python_snippets()) >= 2


def test_every_readme_python_snippet_runs_as_written(installed, tmp_path):
    """Each ```python block, in order, in one folder outside the repository with the installed package.

    The folder holds what the snippets name: tiny random weights in ``WEIGHTS/``, a few frames in
    ``my_frames/`` and a mesh ``my_mesh.glb``.
    """
    import numpy as np
    import trimesh
    from PIL import Image

    from actionmesh_core.weights import make_tiny_weights

    make_tiny_weights(tmp_path / "WEIGHTS")
    frames = tmp_path / "my_frames"
    frames.mkdir()
    for i in range(3):
        img = np.zeros((64, 64, 4), np.uint8)
        img[12:52, 10 + 2 * i:50 + 2 * i] = (200, 80, 40, 255)
        Image.fromarray(img).save(frames / f"{i:03d}.png")
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "my_mesh.glb")  # 162 vertices: room for 32 bones
    for number, code in enumerate(_python_snippets()):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              env=_env(installed), timeout=600)
        assert proc.returncode == 0, f"README snippet {number} failed:\n{code}\n{proc.stderr[-3000:]}"
