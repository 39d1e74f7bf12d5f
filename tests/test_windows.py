"""Autoregressive window plans (REFERENCE §3): 16, 17, 31, 61 frames; anchor first, middle, last."""
from __future__ import annotations

import pytest

from actionmesh_core.sampling import plan_windows


def _check_plan(num_frames, anchor, window=16, slide=15):
    plan = plan_windows(num_frames, anchor, window, slide)
    size = min(window, num_frames)
    first = plan[0]
    assert anchor in first.frames and first.sources == (anchor,)
    known = {anchor}
    generated = []
    prev_starts = [first.frames[0]]
    for win in plan:
        assert len(win.frames) == size
        assert list(win.frames) == list(range(win.frames[0], win.frames[0] + size))
        assert set(win.sources) == known & set(win.frames), "sources are exactly the already-known frames"
        assert win.sources, "every window has at least one source frame"
        generated += list(win.targets)
        known |= set(win.frames)
        if win is not first:
            # consecutive windows of one direction start at most `slide` apart
            assert min(abs(win.frames[0] - s) for s in prev_starts) <= slide
            prev_starts.append(win.frames[0])
    assert sorted(generated + [anchor]) == list(range(num_frames)), "each frame generated exactly once"
    return plan


@pytest.mark.parametrize("num_frames", [16, 17, 31, 61])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_plan_covers_every_frame(num_frames, where):
    anchor = {"first": 0, "middle": num_frames // 2, "last": num_frames - 1}[where]
    plan = _check_plan(num_frames, anchor)
    expected_windows = {16: 1, 17: 2, 31: 2, 61: 4}[num_frames]
    if where == "middle" and num_frames == 61:
        expected_windows = 4
    if where == "middle" and num_frames == 17:
        expected_windows = 2
    assert len(plan) >= expected_windows


def test_known_plans():
    assert [w.frames[0] for w in plan_windows(16, 0)] == [0]
    p17 = plan_windows(17, 0)
    assert [(w.frames[0], w.frames[-1]) for w in p17] == [(0, 15), (1, 16)]
    assert p17[1].sources == tuple(range(1, 16)) and p17[1].targets == (16,)
    p31 = plan_windows(31, 0)
    assert [(w.frames[0], w.frames[-1], w.sources) for w in p31] == [(0, 15, (0,)), (15, 30, (15,))]
    p61_last = plan_windows(61, 60)
    assert [(w.frames[0], w.direction) for w in p61_last] == [(45, "anchor"), (30, "left"), (15, "left"), (0, "left")]
    assert all(w.sources == (w.frames[-1],) for w in p61_last[1:])
    # anchor left of the middle: the right side is built first
    p61_mid = plan_windows(61, 20)
    assert p61_mid[0].frames[0] == 20 and p61_mid[1].direction == "right"
    assert plan_windows(61, 40)[1].direction == "left"


def test_short_clip_single_window():
    plan = plan_windows(2, 1)
    assert len(plan) == 1 and plan[0].frames == (0, 1) and plan[0].targets == (0,)


@pytest.mark.parametrize("args,match", [((1, 0), "at least 2"), ((16, 16), "anchor_frame"),
                                        ((16, 0, 1), "window"), ((20, 0, 16, 16), "slide")])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        plan_windows(*args)
