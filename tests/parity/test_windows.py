"""Autoregressive window plans against the release's window rules (``tests/release_windows_oracle.py``).

For every clip length 2..80 and every anchor frame (and, over shorter ranges, other window / slide
sizes), our stage I and stage II plans run the release's windows in the release's order, with the same
frame order inside each window, the same sources, the same alphas and the same frames written by each
window. Where we decode more than the release (frame 0 when the anchor is not 0; a source frame the
release never decoded; clips shorter than the window with an anchor inside the clip, where the release
indexes frames outside the clip), the extra frames are checked as properties, and a decode with a model
shows that they never change a frame the release writes.
"""
from __future__ import annotations

import pytest
import torch

import release_windows_oracle as oracle
from actionmesh_core.geometry.reference import query_normals
from actionmesh_core.sampling import plan_windows
from actionmesh_core.sampling.stage2 import decode_stage2, release_written_frames, stage2_schedule
from actionmesh_core.sampling.windows import window_alphas
from tiny_models import tiny_autoencoder

# (window, slide, clip lengths): the released 16 / 15 over 2..80 frames, other sizes over shorter ranges
SIZES = [(16, 15, range(2, 81)), (4, 3, range(2, 41)), (8, 5, range(2, 41)), (16, 12, range(2, 61)),
         (5, 1, range(2, 31))]


def _compare(num_frames, anchor, window, slide):
    """Differences between our plan and the release's for one clip (empty list: same rules)."""
    rel = oracle.release_run(num_frames, anchor, window, slide)
    plan = plan_windows(num_frames, anchor, window, slide)
    sched = stage2_schedule(num_frames, anchor, window, slide)
    errors = []
    if rel.error is not None:
        # the release cannot run this clip (shorter than a window, anchor inside): ours is one window,
        # anchor first, then the other frames ascending -- the release's own rule for a clip of `window` frames
        if not (num_frames < window and 0 < anchor < num_frames - 1):
            errors.append(f"release fails ({rel.error}) where it should not")
        if [w.order for w in plan] != [(anchor,) + tuple(f for f in range(num_frames) if f != anchor)]:
            errors.append(f"not one anchor-first window: {[w.order for w in plan]}")
        return errors, rel, sched
    if [list(w.order) for w in plan] != [w.order for w in rel.windows]:
        return [f"windows/run order/frame order: ours {[w.order for w in plan]} release "
                f"{[w.order for w in rel.windows]}"], rel, sched
    stage2_written = {anchor}
    for k, (win, step, ref) in enumerate(zip(plan, sched, rel.windows)):
        # stage I: sources (latent in the bank) and the frames the window adds to the bank
        if list(win.sources) != sorted(ref.stage1_sources):
            errors.append(f"window {k}: stage I sources {win.sources} != {sorted(ref.stage1_sources)}")
        if list(win.targets) != sorted(ref.stage1_writes):
            errors.append(f"window {k}: stage I writes {win.targets} != {sorted(ref.stage1_writes)}")
        # stage II: source frame, its alpha, the target alphas of the frames we decode
        if step.source != ref.stage2_source:
            errors.append(f"window {k}: stage II source {step.source} != {ref.stage2_source}")
        alphas = dict(zip(win.order, window_alphas(win.order).tolist()))
        if alphas[step.source] != float(ref.stage2_source_alpha):
            errors.append(f"window {k}: source alpha {alphas[step.source]} != {float(ref.stage2_source_alpha)}")
        ref_alpha = dict(zip(ref.stage2_targets, ref.stage2_target_alphas.tolist()))
        for f in step.release_frames:
            if alphas[f] != ref_alpha.get(f):
                errors.append(f"window {k}: alpha of frame {f} {alphas[f]} != {ref_alpha.get(f)}")
        # stage II: frames written. Before the release fails, exactly its writes; from the failing window on,
        # its rule's writes less the missing sources, which an earlier window decodes (our extra frames)
        failed = rel.stage2_fails_at is not None and k >= rel.stage2_fails_at
        if step.release_fails != (k in rel.missing_sources):
            errors.append(f"window {k}: release_fails {step.release_fails}, sources missing in {rel.missing_sources}")
        moved = set(ref.stage2_writes) - set(step.release_frames)
        if set(step.release_frames) - set(ref.stage2_writes) or (moved and not failed):
            errors.append(f"window {k}: stage II writes {step.release_frames} != {ref.stage2_writes}")
        if not all(f in stage2_written for f in moved):
            errors.append(f"window {k}: frames {sorted(moved)} neither written here nor before")
        for f in step.extra_frames:  # extra: the window's smallest frame, never written by the release before
            if f != min(win.order) or alphas[f] != 0.0:
                errors.append(f"window {k}: extra frame {f} is not the window's smallest frame")
            if f in set().union(*[r.stage2_writes for r in rel.windows[:k + 1]]):
                errors.append(f"window {k}: extra frame {f} is one the release wrote by then")
            if f != 0 and not any(later.stage2_source == f for later in rel.windows[k + 1:]):
                errors.append(f"window {k}: extra frame {f} is neither frame 0 nor a later window's source")
        if step.source not in stage2_written:
            errors.append(f"window {k}: our source {step.source} is not decoded yet")
        stage2_written |= set(step.frames)
    if stage2_written != set(range(num_frames)):
        errors.append(f"frames never decoded: {sorted(set(range(num_frames)) - stage2_written)}")
    if release_written_frames(num_frames, anchor, window, slide) != sorted(set(rel.stage2_written) | {anchor}):
        errors.append("release_written_frames differs from the release's written frames")
    return errors, rel, sched


@pytest.mark.parametrize("window,slide,lengths", SIZES, ids=[f"w{w}s{s}" for w, s, _ in SIZES])
def test_plans_follow_the_release_rules_for_every_clip_and_anchor(window, slide, lengths):
    failures, checked, release_cannot_run, release_fails = [], 0, 0, 0
    for num_frames in lengths:
        for anchor in range(num_frames):
            errors, rel, sched = _compare(num_frames, anchor, window, slide)
            checked += 1
            release_cannot_run += rel.error is not None
            release_fails += rel.stage2_fails_at is not None
            failures += [f"T={num_frames} anchor={anchor}: {e}" for e in errors]
    print(f"ORACLE window {window} slide {slide}: {checked} clips (lengths {lengths.start}..{lengths.stop - 1} x every "
          f"anchor); release cannot run {release_cannot_run} (clip shorter than a window, anchor inside), stage II "
          f"source missing in {release_fails}")
    assert not failures, f"{len(failures)} differences, first: " + "\n".join(failures[:10])


def test_oracle_coverage_of_released_sizes():
    """The released sizes: 79 clip lengths x every anchor = 3239 clips, every case the issue lists among them."""
    cases = [(t, a) for t in SIZES[0][2] for a in range(t)]
    assert len(cases) == sum(range(2, 81)) == 3239
    for known in [(17, 16), (46, 0), (20, 3), (31, 0), (16, 5)]:
        assert known in cases


def test_known_plans():
    # the release's docstring: 31 frames, anchor 0 -> [0..15] conditioned on 0, [15..30] conditioned on 15
    p31 = plan_windows(31, 0)
    assert [(w.order[0], w.order[-1], w.sources) for w in p31] == [(0, 15, (0,)), (15, 30, (15,))]
    # anchor on the last frame: a left-going run; its second window decodes frame 1 (the first window's
    # smallest frame) from frame 15, and frame 0 is ours alone
    p17 = plan_windows(17, 16)
    assert [w.order for w in p17] == [tuple(range(16, 0, -1)), tuple(range(15, -1, -1))]
    s17 = stage2_schedule(17, 16)
    assert [(s.source, s.release_frames, s.extra_frames) for s in s17] == [
        (16, tuple(range(2, 16)), ()), (15, (1,), (0,))]
    # 16 frames: one window, anchor first
    assert [w.order for w in plan_windows(16, 5)] == [(5, 0, 1, 2, 3, 4) + tuple(range(6, 16))]
    # a window can be shorter than 16 frames (20 frames, anchor 10: the right side runs first, to the clip end)
    assert [w.order for w in plan_windows(20, 10)] == [tuple(range(10, 20)), tuple(range(15, -1, -1))]
    # 31 frames, anchor 30: the release's second window deforms frame 15, which it never decodes (it fails);
    # we decode frame 15 in the first window (its smallest frame, alpha 0)
    s31 = stage2_schedule(31, 30)
    assert s31[0].extra_frames == (15,) and s31[1].release_fails and s31[1].source == 15
    assert oracle.release_run(31, 30).stage2_fails_at == 1
    # three windows (46 frames, anchor 0), each from the previous window's last frame
    assert [stage2_schedule(46, 0)[k].source for k in range(3)] == [0, 15, 30]


def test_short_clips():
    assert [w.order for w in plan_windows(2, 1)] == [(1, 0)] and plan_windows(2, 1)[0].targets == (0,)
    assert [w.order for w in plan_windows(7, 0)] == [tuple(range(7))]
    assert [w.order for w in plan_windows(7, 6)] == [tuple(range(6, -1, -1))]
    # anchor inside a clip shorter than the window: the release indexes outside the clip; ours is one window
    assert oracle.release_run(7, 2).error == "IndexError"
    assert oracle.release_run(10, 6).error == "duplicate frames in a window"
    assert [w.order for w in plan_windows(7, 2)] == [(2, 0, 1, 3, 4, 5, 6)]


@pytest.mark.parametrize("args,match", [((1, 0), "at least 2"), ((16, 16), "anchor_frame"),
                                        ((16, 0, 1), "window"), ((20, 0, 16, 16), "slide")])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        plan_windows(*args)


# ------------------------------------------------------------------ extra frames never change a release frame

# clips with extra frames of every kind: frame 0 (anchor not 0), the anchor on the last frame, a one-window
# clip with the anchor inside, a missing source (the release fails: frames before the failure compared),
# and a run where both sides have windows
EXTRA_CASES = [(17, 16, 16, 15), (20, 3, 16, 15), (16, 5, 16, 15), (31, 30, 16, 15), (40, 35, 16, 15),
               (11, 7, 4, 3), (9, 8, 4, 3), (13, 1, 4, 3)]


@pytest.mark.parametrize("num_frames,anchor,window,slide", EXTRA_CASES)
def test_extra_frames_never_change_a_frame_the_release_writes(num_frames, anchor, window, slide):
    """Our stage II decode equals the release's loop (run by the oracle with the same model) on every frame
    the release writes, and decodes every other frame too."""
    ae = tiny_autoencoder()
    gen = torch.Generator().manual_seed(num_frames * 100 + anchor)
    verts = torch.rand(9, 3, generator=gen) - 0.5
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [0, 4, 8]])
    latents = torch.randn(num_frames, 6, ae.config["latent_channels"], generator=gen)

    def release_decode(order, source_mesh, source_alpha, target_alphas):
        vertices = verts if isinstance(source_mesh, str) else source_mesh
        query = torch.cat([vertices, query_normals(vertices, faces)], -1)[None]
        with torch.no_grad():
            out = ae(latents[order][None], torch.tensor(order, dtype=torch.float32)[None], source_alpha,
                     target_alphas, query)
        return list(out[0])

    rel = oracle.release_run(num_frames, anchor, window, slide, decode=release_decode)
    ours = decode_stage2(ae, latents, torch.cat([verts, query_normals(verts, faces)], -1), faces=faces,
                         anchor_frame=anchor, window=window, slide=slide, batch_targets=True)
    written = sorted(rel.meshes)
    assert anchor in written and len(written) > 1
    for f in written:
        expected = verts if f == anchor else rel.meshes[f]
        torch.testing.assert_close(ours[f], expected, rtol=0, atol=2e-6, msg=lambda m: f"frame {f}: {m}")
    extra = sorted(set(range(num_frames)) - set(written))
    assert extra, "each case has frames the release does not write"
    for f in extra:
        assert (ours[f] - verts).abs().max() > 1e-4, f"extra frame {f} left undecoded"
    if rel.stage2_fails_at is not None:  # the release stopped: later frames are ours, from decoded sources
        assert stage2_schedule(num_frames, anchor, window, slide)[rel.stage2_fails_at].release_fails
