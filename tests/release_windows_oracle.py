"""Test oracle: a plain transcription of the official release's window loops (stage I and stage II).

Transcribed from facebookresearch/actionmesh (commit 66db12e):
``actionmesh/model/utils/timesteps.py`` (``chunk_right``, ``chunk_left``, ``chunk_from``),
``actionmesh/model/utils/embeddings.py`` (``get_scaling``, ``apply_scaling``, ``interpolate_timesteps``),
``actionmesh/model/utils/storage.py`` (``LatentBank`` / ``MeshBank``: a timestep is stored once, the first
write wins) and the two loops of ``actionmesh/pipeline.py`` (``generate_3d_latents``,
``generate_mesh_animation``). Only the bookkeeping is transcribed (which frames, in which order, which
source, which alphas, which frames are written); the models are replaced by callables where a test needs
them. This file exists only to test our own implementation (``actionmesh_core/sampling/windows.py``,
``stage2.py``) against the release's rules; it is not used by the library.

Torch indexing is kept: ``timesteps[window_indices]`` wraps negative indices and raises ``IndexError``
for indices >= T, as the release does (clips shorter than the window with an anchor that is neither the
first nor the last frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch


# ------------------------------------------------------------------ actionmesh/model/utils/timesteps.py


def chunk_right(start: int, end: int, size: int, slide: int) -> List[torch.Tensor]:
    assert 0 < slide <= size, f"Need slide <= size, got {slide} > {size}"
    chunks = []
    chunk_end = start
    while chunk_end < end:
        if not chunks:
            chunk_end = min(start + size, end)
        else:
            chunk_end = min(chunk_end + slide, end)
        chunk_start = max(start, chunk_end - size)
        chunks.append(torch.arange(chunk_start, chunk_end))
    return chunks


def chunk_left(start: int, end: int, size: int, slide: int) -> List[torch.Tensor]:
    right_chunks = chunk_right(start, end, size, slide)
    return [chunk.flip(0) for chunk in reversed(right_chunks)]


def chunk_from(start: int, total: int, size: int, slide: int) -> List[torch.Tensor]:
    context = size - slide
    if total == size:
        indices = torch.arange(total)
        return [torch.cat([indices[start:start + 1], indices[indices != start]])]
    if start == 0:
        return chunk_right(0, total, size, slide)
    if start == total - 1:
        return chunk_left(0, total, size, slide)
    left_first = start > total - start
    if left_first:
        left = chunk_left(0, start + 1, size, slide)
        right_start = min(max(0, start - context + 1), total - size)
        right = chunk_right(right_start, total, size, slide)
        return left + right
    right = chunk_right(start, total, size, slide)
    left_end = max(min(start + context, total), size)
    left = chunk_left(0, left_end, size, slide)
    return right + left


# ------------------------------------------------------------------ actionmesh/model/utils/embeddings.py


def get_scaling(timesteps: torch.Tensor):
    t_min = timesteps.min(dim=1).values
    t_max = timesteps.max(dim=1).values
    return t_min, t_max - t_min


def apply_scaling(timesteps: torch.Tensor, t_min: torch.Tensor, t_range: torch.Tensor) -> torch.Tensor:
    if timesteps.dim() == 1:
        return (timesteps - t_min) / t_range
    return (timesteps - t_min.unsqueeze(1)) / t_range.unsqueeze(1)


def get_n_subdivisions(start: int, end: int, level: int = 1) -> int:
    n_points = int(end - start + 1)
    for _ in range(1, level):
        n_points += n_points - 1
    return n_points


def interpolate_timesteps(timesteps: torch.Tensor, subsampling_level: int, drop_first: bool = False):
    t_min = timesteps.min().item()
    t_max = timesteps.max().item()
    n_steps = get_n_subdivisions(t_min, t_max, level=subsampling_level)
    output = torch.linspace(t_min, t_max, n_steps).reshape(1, -1)
    if drop_first:
        output = output[:, 1:]
    return output


# ------------------------------------------------------------------ actionmesh/model/utils/storage.py (bookkeeping)


class Bank:
    """Items indexed by float timestep; ``update`` adds a timestep once (first write wins)."""

    def __init__(self):
        self.items = {}

    def _key(self, timestep: float):
        for ts in self.items:
            if abs(ts - timestep) < 1e-5:
                return ts
        return None

    def update(self, timesteps: torch.Tensor, items: list) -> list:
        added = []
        for ts, item in zip(timesteps.flatten().tolist(), items):
            if self._key(ts) is None:
                self.items[ts] = item
                added.append(ts)
        return added

    def get(self, timestep: float):
        key = self._key(timestep)
        return None if key is None else self.items[key]


# ------------------------------------------------------------------ actionmesh/pipeline.py


@dataclass
class ReleaseWindow:
    """One window as the release runs it (frames are ints: the video timesteps are 0, 1, 2, ... in float32)."""

    order: List[int]  # input.timesteps[window_indices]: the window's frames in its own order
    stage1_sources: List[int]  # frames whose latent is in the bank (mask 1), in window order
    stage1_writes: List[int]  # frames whose latent this window adds to the bank
    stage2_source: int  # window_timesteps[:, 0]: the frame whose mesh is deformed
    stage2_source_alpha: torch.Tensor  # (1,) float32
    stage2_targets: List[int]  # output_timesteps: min+1 .. max
    stage2_target_alphas: torch.Tensor  # (T_out,) float32
    stage2_writes: List[int] = field(default_factory=list)  # frames this window adds to the mesh bank


@dataclass
class ReleaseRun:
    """The release's plan for one clip: ``error`` says why it cannot run (then ``windows`` may be partial)."""

    windows: List[ReleaseWindow]
    error: Optional[str] = None  # "IndexError" / "duplicate frames in a window" (stage I)
    missing_sources: List[int] = field(default_factory=list)  # windows whose source mesh is not in the mesh bank

    @property
    def stage2_fails_at(self) -> Optional[int]:
        """The window where the release stops (``assert anchor_mesh is not None``), None if it runs through."""
        return self.missing_sources[0] if self.missing_sources else None

    @property
    def stage2_written(self) -> List[int]:
        """Frames in the mesh bank at the end (the anchor and every window's writes; all windows, as if none failed)."""
        out = set()
        for w in self.windows:
            out.update(w.stage2_writes)
        return sorted(out)


def release_run(num_frames: int, anchor_idx: int, size: int = 16, slide: int = 15,
                decode: Optional[Callable] = None, subsampling_level: int = 1) -> ReleaseRun:
    """Run the release's bookkeeping of ``generate_3d_latents`` and ``generate_mesh_animation``.

    ``decode(order, source_mesh, source_alpha, target_alphas) -> list of meshes``, if given, stands in for
    ``_decode_displacement``; the mesh bank then holds its meshes (the anchor's is the string "anchor")
    and ``ReleaseRun.meshes`` maps frame -> mesh. Without ``decode`` the bank holds frame numbers.
    Stage II continues past a window whose source mesh is missing (recording ``missing_sources``) so that
    the later windows' rules can be compared too; with ``decode`` it stops there, as the release does.
    """
    timesteps = torch.arange(num_frames, dtype=torch.float32)  # load_frames: [0, 1, 2, ...] float32
    # -- stage I
    latent_bank = Bank()
    latent_bank.update(timesteps[[anchor_idx]], ["anchor"])
    windows: List[ReleaseWindow] = []
    ar_windows = chunk_from(start=anchor_idx, total=num_frames, size=size, slide=slide)
    for window_indices in ar_windows:
        try:
            window_timesteps = timesteps[window_indices]
        except IndexError:
            return ReleaseRun(windows, error="IndexError")
        order = [int(t) for t in window_timesteps.tolist()]
        if len(set(order)) != len(order):
            return ReleaseRun(windows, error="duplicate frames in a window")
        sources = [t for t in order if latent_bank.get(float(t)) is not None]
        added = latent_bank.update(window_timesteps, order)
        windows.append(ReleaseWindow(order, sources, [int(t) for t in added], -1, torch.zeros(1), [],
                                     torch.zeros(0)))
    # -- stage II
    mesh_bank = Bank()
    mesh_bank.update(timesteps[[anchor_idx]], ["anchor"])
    all_timesteps = torch.tensor(sorted(latent_bank.items))  # get_ordered_timesteps
    ar_windows = chunk_from(start=anchor_idx, total=len(latent_bank.items), size=size, slide=slide)
    missing = []
    for window_idx, window_indices in enumerate(ar_windows):
        window_timesteps = all_timesteps[window_indices][None]
        source_mesh = mesh_bank.get(float(window_timesteps[0, 0]))
        if source_mesh is None:
            missing.append(window_idx)
        output_timesteps = interpolate_timesteps(window_timesteps, subsampling_level=subsampling_level,
                                                 drop_first=True)
        t_min, t_range = get_scaling(window_timesteps)
        source_alpha = apply_scaling(window_timesteps[:, 0], t_min, t_range)
        target_alphas = apply_scaling(output_timesteps, t_min, t_range)
        win = windows[window_idx]
        assert win.order == [int(t) for t in window_timesteps[0].tolist()]
        win.stage2_source = int(window_timesteps[0, 0])
        win.stage2_source_alpha = source_alpha
        win.stage2_targets = [int(t) for t in output_timesteps[0].tolist()]
        win.stage2_target_alphas = target_alphas[0]
        if decode is not None:
            if source_mesh is None:
                break
            meshes = decode(win.order, source_mesh, source_alpha, target_alphas)
        else:
            meshes = win.stage2_targets
        win.stage2_writes = [int(t) for t in mesh_bank.update(output_timesteps[0], meshes)]
    run = ReleaseRun(windows, missing_sources=missing)
    run.meshes = {int(t): m for t, m in mesh_bank.items.items()}
    return run
