"""Bad inputs a new user tries, shared by tests/unit/test_validation.py and benchmarks/bad_inputs_table.py.

Each case builds the command line of a run from a small, valid "world" (frames,
tiny weights, output path) with ONE thing broken, and names the error type and
a fragment its one-line message must contain.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import numpy as np
from PIL import Image

GOOD_SIZE = 96

#: code run before the CLI to slow its per-frame GLB writes down (0.4 s after each, one stderr line each) so that a
#: signal lands between two per-frame files (tests/integration/test_signals.py, benchmarks/bad_inputs_table.py)
SLOW_PER_FRAME = """
import sys, time
import actionmesh_core.export.glb as glb
real = glb.atomic_write_bytes
def slow(path, data):
    out = real(path, data)
    print("PER-FRAME " + path.name, file=sys.stderr, flush=True)
    time.sleep(0.4)
    return out
glb.atomic_write_bytes = slow
"""


def write_frames(folder: Path, count: int = 4, size: int = GOOD_SIZE, box: int = 40, alpha: bool = True) -> Path:
    """``count`` RGBA (or RGB on white) frames with a moving dark square of ``box`` px."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = np.full((size, size, 4), 255, np.uint8)
        img[..., 3] = 0 if alpha else 255
        x = 10 + 3 * i
        img[20:20 + box, x:x + box] = (40, 60, 200, 255)
        Image.fromarray(img if alpha else img[..., :3]).save(folder / f"{i:04d}.png")
    return folder


@dataclass
class World:
    """A valid run: frames, weights, output; cases copy and break one piece."""

    tmp: Path
    frames: Path
    weights: Path
    out: Path

    def argv(self, *extra, frames=None, weights=None, out=None) -> List[str]:
        return ["video-to-4d", str(frames or self.frames), "--weights", str(weights or self.weights),
                "--out", str(out or self.out), "--device", "cpu", *map(str, extra)]

    def copy_weights(self, name: str) -> Path:
        """A fresh copy of the valid weights (each case breaks its own)."""
        dst = self.tmp / f"w_{name}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(self.weights, dst)
        return dst

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Case:
    name: str
    build: Callable[[World], List[str]]
    error: str  # class name of the expected InputError subclass
    fragment: str  # must appear in the message


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:max(8, int(len(data) * keep))])


def _edit_json(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def _weights_case(name, mutate):
    def build(w: World):
        root = w.copy_weights(name)
        mutate(root)
        return w.argv(weights=root)
    return build


def _frames_case(name, make):
    def build(w: World):
        folder = w.tmp / f"f_{name}"
        if not folder.exists():
            make(folder)
        return w.argv(frames=folder)
    return build


def _bin_only(folder: Path, weight_name: str) -> None:
    (folder / weight_name).rename(folder / "pytorch_model.bin")


def _latent_mismatch(root: Path) -> None:
    from actionmesh_core.checkpoints import save_model
    from actionmesh_core.models import TripoSGVAE

    vae = TripoSGVAE(latent_channels=4, num_attention_heads=2, width_encoder=32, width_decoder=32,
                     num_layers_encoder=1, num_layers_decoder=1, embed_frequency=4)
    shutil.rmtree(root / "TripoSG/vae")
    save_model(vae, root / "TripoSG/vae")


def _read_state(path: Path) -> dict:
    """Every tensor of a safetensors file (safe_open: the tests forbid safetensors.torch.load_file, a model load)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _poison(path: Path, value: float = float("nan"), key_part: str = "") -> None:
    """Set one value of the first float tensor (whose name contains ``key_part``) of a safetensors file."""
    from safetensors.torch import save_file

    state = _read_state(path)
    key = next(k for k in sorted(state) if key_part in k and state[k].is_floating_point() and state[k].numel() > 3)
    state[key].view(-1)[3] = value
    save_file(state, str(path), metadata={"format": "pt"})


def _retype(path: Path, key_part: str = "") -> None:
    """Store the first float tensor (whose name contains ``key_part``) as int64: same shape, wrong dtype."""
    import torch
    from safetensors.torch import save_file

    state = _read_state(path)
    key = next(k for k in sorted(state) if key_part in k and state[k].is_floating_point())
    state[key] = state[key].round().to(torch.int64)
    save_file(state, str(path), metadata={"format": "pt"})


def _dino_width(root: Path, width: int = 48) -> None:
    """A consistent DINOv2 of another width in dinov2-large (its own config and weights agree)."""
    from transformers import Dinov2Config, Dinov2Model

    from actionmesh_core.progress import quiet_library_bars

    folder = root / "dinov2-large"
    shutil.rmtree(folder)
    with quiet_library_bars():
        Dinov2Model(Dinov2Config(hidden_size=width, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 patch_size=14, image_size=224)).save_pretrained(str(folder))


def _mixed_alpha(folder: Path) -> None:
    write_frames(folder)
    rgb = np.asarray(Image.open(folder / "0002.png").convert("RGB"))
    (folder / "0002.png").unlink()
    Image.fromarray(rgb).save(folder / "0002.png")


def _broken_link(folder: Path) -> None:
    write_frames(folder)
    (folder / "0004.png").symlink_to(folder / "gone.png")


def _point_mesh() -> bytes:
    return b"v 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nf 1 2 3\nf 2 3 4\n"


def _png_as_video(w: "World") -> Path:
    path = w.tmp / "clip_png.mp4"
    if not path.exists():
        shutil.copy(w.frames / "0000.png", path)
    return path


def _mesh_file(w: "World", name: str, data: bytes) -> Path:
    path = w.tmp / name
    path.write_bytes(data)
    return path


def _same_file_as_mesh(w: "World") -> List[str]:
    import trimesh

    mesh = w.tmp / "anchor_in.glb"
    if not mesh.exists():
        mesh.write_bytes(trimesh.creation.icosphere(1).export(file_type="glb"))
    return w.argv("--mesh", mesh, out=mesh)


def _mixed_sizes(folder: Path) -> None:
    write_frames(folder, 3)
    write_frames(folder / "_tmp", 1, size=80)
    (folder / "_tmp" / "0000.png").rename(folder / "0003.png")
    shutil.rmtree(folder / "_tmp")


def _empty_alpha(folder: Path) -> None:
    write_frames(folder)
    Image.fromarray(np.zeros((GOOD_SIZE, GOOD_SIZE, 4), np.uint8)).save(folder / "0002.png")


def _noisy_rgb(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(120, 256, (GOOD_SIZE, GOOD_SIZE, 3), dtype=np.uint8)
        img[20:60, 10 + 3 * i:50 + 3 * i] = (20, 20, 20)
        Image.fromarray(img).save(folder / f"{i:04d}.png")


def _mask_dir(w: World, name: str, count: int, size: int = GOOD_SIZE) -> Path:
    folder = w.tmp / f"m_{name}"
    if not folder.exists():
        folder.mkdir()
        for i in range(count):
            Image.fromarray(np.full((size, size), 255, np.uint8)).save(folder / f"m{i}.png")
    return folder


def _unpaired(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((GOOD_SIZE, GOOD_SIZE, 3), 200, np.uint8)).save(folder / f"{i}_image.png")
        Image.fromarray(np.full((GOOD_SIZE, GOOD_SIZE), 255, np.uint8)).save(folder / f"{i}_mask.png")
    Image.fromarray(np.full((GOOD_SIZE, GOOD_SIZE), 255, np.uint8)).save(folder / "7_mask.png")


def _file(w: World, name: str, data: bytes) -> Path:
    path = w.tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png_frames_then(folder: Path, fn) -> None:
    write_frames(folder)
    fn(folder)


CASES: List[Case] = [
    # ------------------------------------------------------------------ options
    Case("steps 0", lambda w: w.argv("--steps", 0), "OptionError", "steps"),
    Case("fps 0", lambda w: w.argv("--fps", 0), "OptionError", "fps"),
    Case("fps negative", lambda w: w.argv("--fps", -5), "OptionError", "fps"),
    Case("fps nan", lambda w: w.argv("--fps", "nan"), "OptionError", "fps"),
    Case("octree depth 3", lambda w: w.argv("--octree-depth", 3, "--refine-depth", 3), "OptionError", "octree depth"),
    Case("refine < octree", lambda w: w.argv("--octree-depth", 8, "--refine-depth", 7), "OptionError", "refine depth"),
    Case("octree depth 12", lambda w: w.argv("--octree-depth", 12, "--refine-depth", 12), "OptionError", "octree depth"),
    Case("anchor frame past the clip", lambda w: w.argv("--anchor-frame", 10), "OptionError", "anchor frame 10"),
    Case("anchor frame negative", lambda w: w.argv("--anchor-frame", -1), "OptionError", "anchor frame"),
    Case("frame stride 0", lambda w: w.argv("--frame-stride", 0), "OptionError", "frame stride"),
    Case("frame start past the end", lambda w: w.argv("--frame-start", 50), "FramesError", "frame start 50"),
    Case("max frames -1", lambda w: w.argv("--max-frames", -1), "OptionError", "max frames"),
    Case("max frames 1", lambda w: w.argv("--max-frames", 1), "FramesError", "at least 2 frames"),
    Case("bg threshold 0", lambda w: w.argv("--bg-threshold", 0), "OptionError", "background threshold"),
    Case("min crop -1", lambda w: w.argv("--min-crop", -1), "OptionError", "minimum crop"),
    Case("fps 1e-300", lambda w: w.argv("--fps", "1e-300"), "OptionError", "fps"),
    Case("fps 1e6", lambda w: w.argv("--fps", "1e6"), "OptionError", "fps"),
    Case("fps / stride below 0.001", lambda w: w.argv("--fps", "0.002", "--frame-stride", 3), "OptionError",
         "fps / frame stride"),
    # ------------------------------------------------------------------ export options
    Case("skinned with --bones 0", lambda w: w.argv("--format", "glb-skinned", "--bones", 0), "OptionError",
         "bones must be an integer in [1, 1024]"),
    Case("skinned with --bones 1000000", lambda w: w.argv("--format", "glb-skinned", "--bones", 1000000),
         "OptionError", "bones must be an integer in [1, 1024]"),
    Case("skinned with --influences 9", lambda w: w.argv("--format", "glb-skinned", "--influences", 9),
         "OptionError", "influences must be an integer in [1, 8]"),
    Case("FBX rig with --bones -3", lambda w: w.argv("--format", "fbx-skinned", "--bones", -3, out=w.tmp / "r.fbx"),
         "OptionError", "bones"),
    # ------------------------------------------------------------------ output
    Case("out under /proc", lambda w: w.argv(out="/proc/nope/x.glb"), "OutputPathError", "/proc"),
    Case("out with an unknown suffix", lambda w: w.argv(out=w.tmp / "x.xyz"), "OutputPathError", "x.xyz"),
    Case("out x.usdz with --format glb", lambda w: w.argv("--format", "glb", out=w.tmp / "x.usdz"), "OutputPathError",
         "but format glb writes .glb"),
    Case("out x.glb with --format npy", lambda w: w.argv("--format", "npy", out=w.tmp / "x.glb"), "OutputPathError",
         "but format npy writes .npy"),
    Case("out is the input mesh", _same_file_as_mesh, "OutputPathError", "is an input of this run"),
    Case("out is a folder", lambda w: w.argv(out=w.folder("outdir.glb")), "OutputPathError", "is a folder"),
    Case("out parent is a file", lambda w: w.argv(out=_file(w, "afile", b"x") / "x.glb"), "OutputPathError",
         "is a file"),
    Case("per-frame dir is a file", lambda w: w.argv("--per-frame-dir", _file(w, "pf", b"x")), "OutputPathError",
         "is a file"),
    # ------------------------------------------------------------------ weights
    Case("weights root missing", lambda w: w.argv(weights=w.tmp / "no_weights"), "WeightsMissingError",
         "`hf download facebook/ActionMesh"),
    Case("weights root is a file", lambda w: w.argv(weights=_file(w, "wfile", b"x")), "WeightsError", "is a file"),
    Case("denoiser folder missing", _weights_case("nodenoiser", lambda r: shutil.rmtree(r / "ActionMesh/denoiser")),
         "WeightsMissingError", "facebook/ActionMesh"),
    Case("truncated safetensors", _weights_case("trunc", lambda r: _truncate(r / "ActionMesh/autoencoder/model.safetensors")),
         "CheckpointError", "autoencoder/model.safetensors"),
    Case("config with a wrong size", _weights_case("wrongsize", lambda r: _edit_json(
        r / "ActionMesh/autoencoder/config.json", width=48)), "CheckpointError", "shape mismatches"),
    Case("folder of the wrong model kind", _weights_case("wrongkind", lambda r: (
        shutil.rmtree(r / "ActionMesh/denoiser"), shutil.copytree(r / "TripoSG/vae", r / "ActionMesh/denoiser"))),
        "CheckpointError", "looks like a TripoSG shape VAE"),
    Case(".bin-only folder", _weights_case("binonly", lambda r: _bin_only(r / "ActionMesh/autoencoder", "model.safetensors")),
         "CheckpointError", "only safetensors"),
    Case("invalid config.json", _weights_case("badjson", lambda r: (r / "TripoSG/vae/config.json").write_text("{oops")),
         "CheckpointError", "not valid JSON"),
    Case("config.json is a list", _weights_case("listjson", lambda r: (r / "TripoSG/transformer/config.json").write_text("[1]")),
         "CheckpointError", "JSON object"),
    Case("DINOv2 .bin only", _weights_case("dinobin", lambda r: _bin_only(r / "dinov2-large", "model.safetensors")),
         "WeightsError", "pickle"),
    Case("DINOv2 folder of another model type", _weights_case("dinotype", lambda r: _edit_json(
        r / "dinov2-large/config.json", model_type="vit")), "WeightsError", "not DINOv2"),
    Case("DINOv2 truncated safetensors", _weights_case("dinotrunc", lambda r: _truncate(r / "dinov2-large/model.safetensors")),
         "CheckpointError", "dinov2-large/model.safetensors"),
    Case("DINOv2 config with a wrong size", _weights_case("dinosize", lambda r: _edit_json(
        r / "dinov2-large/config.json", hidden_size=64)), "WeightsError", "do not match the DINOv2"),
    Case("scheduler config invalid", _weights_case("sched", lambda r: (r / "TripoSG/scheduler/scheduler_config.json")
                                                   .write_text("nope")), "WeightsError", "scheduler config"),
    Case("components from different versions", _weights_case("latent", _latent_mismatch), "WeightsError",
         "latent channels"),
    Case("DINOv2 width != the denoiser's", _weights_case("dinowidth", _dino_width), "WeightsError",
         "48-wide image features"),
    Case("NaN in the denoiser", _weights_case("nan_den", lambda r: _poison(r / "ActionMesh/denoiser/model.safetensors")),
         "CheckpointError", "holds NaN or infinite values"),
    Case("inf in the autoencoder", _weights_case("inf_ae", lambda r: _poison(
        r / "ActionMesh/autoencoder/model.safetensors", float("inf"))), "CheckpointError", "NaN or infinite"),
    Case("NaN in the TripoSG transformer", _weights_case("nan_dit", lambda r: _poison(
        r / "TripoSG/transformer/diffusion_pytorch_model.safetensors")), "CheckpointError", "transformer/diffusion"),
    Case("NaN in DINOv2", _weights_case("nan_dino", lambda r: _poison(r / "dinov2-large/model.safetensors")),
         "CheckpointError", "dinov2-large/model.safetensors"),
    Case("int64 tensor in the denoiser", _weights_case("i64", lambda r: _retype(
        r / "ActionMesh/denoiser/model.safetensors")), "CheckpointError", "is I64, not a float tensor"),
    # ------------------------------------------------------------------ frames
    Case("frames path missing", lambda w: w.argv(frames=w.tmp / "nothing_here"), "FramesNotFoundError", "does not exist"),
    Case("empty frame folder", lambda w: w.argv(frames=w.folder("empty")), "FramesError", "no image frames"),
    Case("single image", lambda w: w.argv(frames=w.frames / "0000.png"), "FramesError", "single image"),
    Case("unsupported file type", lambda w: w.argv(frames=_file(w, "notes.txt", b"hello")), "FramesError",
         "unsupported frame input"),
    Case("truncated PNG", _frames_case("truncpng", lambda f: _png_frames_then(f, lambda d: _truncate(d / "0002.png"))),
         "FramesError", "0002.png"),
    Case("text file named .png", _frames_case("fakepng", lambda f: _png_frames_then(
        f, lambda d: (d / "0001.png").write_bytes(b"not an image"))), "FramesError", "0001.png"),
    Case("frames of mixed sizes", _frames_case("mixed", _mixed_sizes), "FramesError", "mixed sizes"),
    Case("empty object mask in a frame", _frames_case("emptyalpha", _empty_alpha), "FramesError", "empty in frames [2]"),
    Case("RGB frames on a busy background", _frames_case("noisy", _noisy_rgb), "FramesError", "--remove-background"),
    Case("mask folder missing", lambda w: w.argv("--mask-dir", w.tmp / "no_masks"), "FramesNotFoundError", "mask folder"),
    Case("mask folder with the wrong count", lambda w: w.argv("--mask-dir", _mask_dir(w, "count", 2)), "FramesError",
         "2 masks for 4 frames"),
    Case("masks of another size", lambda w: w.argv("--mask-dir", _mask_dir(w, "size", 4, 50)), "FramesError",
         "give masks of the frame size"),
    Case("unpaired *_mask file", _frames_case("unpaired", _unpaired), "FramesError", "7_mask.png"),
    Case("corrupt video file", lambda w: w.argv(frames=_file(w, "clip.mp4", b"\x00" * 1000)), "FramesError", "clip.mp4"),
    Case("PNG renamed .mp4", lambda w: w.argv(frames=_png_as_video(w)), "FramesError", "clip_png.mp4 is a PNG image"),
    Case("RGBA and RGB frames mixed", _frames_case("mixalpha", _mixed_alpha), "FramesError",
         "mix RGBA files whose alpha is the object mask"),
    Case("broken symlink among the frames", _frames_case("brokenlink", _broken_link), "FramesNotFoundError",
         "0004.png is a broken symbolic link"),
    # ------------------------------------------------------------------ mesh
    Case("mesh file missing", lambda w: w.argv("--mesh", w.tmp / "none.glb"), "MeshInputError", "none.glb"),
    Case("mesh path is a folder", lambda w: w.argv("--mesh", w.folder("meshdir.glb")), "MeshInputError", "is a folder"),
    Case("0-byte mesh file", lambda w: w.argv("--mesh", _mesh_file(w, "empty.glb", b"")), "MeshInputError",
         "empty (0 bytes)"),
    Case("mesh with every vertex at one point", lambda w: w.argv("--mesh", _mesh_file(w, "point.obj", _point_mesh())),
         "MeshInputError", "point.obj"),
    Case("mesh with an unknown extension", lambda w: w.argv("--mesh", _file(w, "m.fbx", b"x")), "MeshInputError",
         "unsupported mesh format"),
    Case("corrupt mesh file", lambda w: w.argv("--mesh", _file(w, "bad.glb", b"glTF garbage")), "MeshInputError",
         "bad.glb"),
    Case("point cloud as mesh", lambda w: w.argv("--mesh", _file(w, "pts.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n"
                                                       b"property float x\nproperty float y\nproperty float z\n"
                                                       b"end_header\n0 0 0\n1 0 0\n0 1 0\n")),
         "MeshInputError", "pts.ply"),
    # ------------------------------------------------------------------ background model
    Case("background model missing", lambda w: w.argv("--remove-background", w.tmp / "rmbg" / "model.onnx"),
         "BackgroundModelError", "briaai/RMBG-1.4"),
    Case("background model not ONNX", lambda w: w.argv("--remove-background", _file(w, "rmbg.onnx", b"PK\x03\x04zip")),
         "BackgroundModelError", "not an ONNX model"),
]
