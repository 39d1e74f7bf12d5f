"""ActionBench evaluation of a folder of predictions, as the release's ``actionbench/evaluate_dataset.py``.

Layouts (one folder per sample ``uid``):

* ground truth: ``GT_ROOT/<uid>/surfaces.npy``, a (T, N, 6) array of tracked
  surface points (xyz + normal) -- the ActionBench download's ``data/`` folder;
* predictions, per uid, the first that exists:
  ``PRED_ROOT/<uid>/mesh_*.glb`` (the release's per-frame files, natural
  order); ``PRED_ROOT/<uid>/<name>_<k>.glb`` (our ``--per-frame-dir``
  files, one numbered set); a single animated GLB ``PRED_ROOT/<uid>/<name>.glb``
  (our ``--out``); or ``PRED_ROOT/<uid>.glb``.

Per sample the first T predicted frames are scored (T = the ground truth's
frame count; fewer frames is an error of that sample), with
:func:`~actionmesh_core.eval.metrics.evaluate_sequence`. A sample that
fails gets ``status = "error"`` and its message, and the run goes on. The
results go to ``--out`` (CSV: ``uid, cd_3d, cd_4d, cd_motion, n_frames,
status, error_message``) and a summary beside it (``<out>.summary.json``:
counts, success rate, the means over successful samples, our settings),
both rewritten atomically after every sample; a second run with the same
``--out`` keeps the successful samples (``--recompute`` redoes them).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import metrics

__all__ = ["SampleResult", "find_samples", "load_ground_truth", "load_prediction", "evaluate_dataset",
           "summarize", "write_results", "add_evaluate_parser", "run_evaluate_command", "EXIT_SOME_FAILED"]

EXIT_SOME_FAILED = 3
COLUMNS = ["uid", "cd_3d", "cd_4d", "cd_motion", "n_frames", "status", "error_message"]


@dataclass
class SampleResult:
    """One sample's row of the results (the release's ``SampleResult``)."""

    uid: str
    cd_3d: float = float("nan")
    cd_4d: float = float("nan")
    cd_motion: float = float("nan")
    n_frames: int = 0
    status: str = "pending"
    error_message: str = ""


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _prediction_source(pred_root: Path, uid: str) -> Optional[Tuple[str, List[Path]]]:
    """("frames", ordered per-frame GLBs) or ("animated", [one GLB]) for ``uid``; None if there is none."""
    folder = pred_root / uid
    if folder.is_dir():
        release = sorted(folder.glob("mesh_*.glb"), key=_natural_key)
        if release:
            return "frames", release
        numbered: Dict[str, List[Path]] = {}
        others = []
        for p in folder.glob("*.glb"):
            m = re.fullmatch(r"(.*)_(\d+)", p.stem)
            if m:
                numbered.setdefault(m.group(1), []).append(p)
            else:
                others.append(p)
        if len(numbered) > 1:
            return "ambiguous", sorted(p for ps in numbered.values() for p in ps)
        if numbered:
            return "frames", sorted(next(iter(numbered.values())), key=_natural_key)
        if len(others) == 1:
            return "animated", others
        if others:
            return "ambiguous", sorted(others)
    single = pred_root / f"{uid}.glb"
    if single.is_file():
        return "animated", [single]
    return None


def find_samples(pred_root, gt_root) -> Tuple[List[str], List[str], List[str]]:
    """The sample uids to score: those with ground truth and a prediction.

    Args:
        pred_root: folder of predictions (layouts in the module docstring).
        gt_root: folder of ``<uid>/surfaces.npy``.

    Returns:
        ``(common uids sorted, uids with ground truth only, uids with a prediction only)``.

    Raises:
        InputError: a root is missing, holds no sample, or the two share none
            (one line saying what is expected).
    """
    from ..errors import InputError

    pred_root, gt_root = Path(pred_root), Path(gt_root)
    for name, root in (("PRED_ROOT", pred_root), ("GT_ROOT", gt_root)):
        if not root.is_dir():
            raise InputError(f"{name} {root} is not a folder")
    gt_uids = {p.parent.name for p in gt_root.glob("*/surfaces.npy")}
    if not gt_uids:
        raise InputError(f"no ground truth in {gt_root}: expected <uid>/surfaces.npy files (the ActionBench "
                         "download's data/ folder)")
    pred_uids = {p.name for p in pred_root.iterdir() if p.is_dir() and _prediction_source(pred_root, p.name)}
    pred_uids |= {p.stem for p in pred_root.glob("*.glb") if p.is_file()}
    if not pred_uids:
        raise InputError(f"no predictions in {pred_root}: expected <uid>/mesh_*.glb, <uid>/<name>_<k>.glb "
                         "(--per-frame-dir), <uid>/<name>.glb or <uid>.glb")
    common = gt_uids & pred_uids
    if not common:
        raise InputError(f"no sample has both ground truth and a prediction ({len(gt_uids)} ground-truth uids in "
                         f"{gt_root}, {len(pred_uids)} prediction uids in {pred_root}): name prediction folders by "
                         "the ActionBench uid")
    return sorted(common), sorted(gt_uids - pred_uids), sorted(pred_uids - gt_uids)


def load_ground_truth(path) -> np.ndarray:
    """ActionBench ground truth: positions of ``surfaces.npy``.

    Args:
        path: a ``surfaces.npy`` file holding (T, N, 6) (or (T, N, 3)) points.

    Returns:
        (T, N, 3) float32 positions.

    Raises:
        ValueError: not such an array.
        OSError: unreadable file.
    """
    data = np.load(path)
    if data.ndim != 3 or data.shape[-1] not in (3, 6) or 0 in data.shape:
        raise ValueError(f"{path} holds an array of shape {data.shape}, expected (T, N, 6) surface points")
    return np.asarray(data[..., :3], np.float32)


def load_prediction(pred_root, uid: str, num_frames: Optional[int] = None) -> list:
    """The predicted frames of ``uid`` as ``trimesh.Trimesh`` meshes (first ``num_frames`` of them).

    Per-frame GLBs are read as the release reads them
    (``trimesh.load(path, force="mesh")``); an animated GLB with
    :func:`~actionmesh_core.io.glb.read_animated_glb`.

    Args:
        pred_root: folder of predictions. uid: sample name.
        num_frames: frames wanted (None: all).

    Returns:
        list of meshes in frame order.

    Raises:
        FileNotFoundError: no prediction for ``uid``.
        ValueError: several candidate files, or fewer than ``num_frames`` frames.
    """
    import trimesh

    pred_root = Path(pred_root)
    source = _prediction_source(pred_root, uid)
    if source is None:
        raise FileNotFoundError(f"no prediction for {uid} in {pred_root}")
    kind, paths = source
    if kind == "ambiguous":
        raise ValueError(f"{pred_root / uid} holds several GLB sets ({', '.join(p.name for p in paths[:4])}, ...): "
                         "keep one (mesh_*.glb, one numbered per-frame set, or one animated GLB)")
    if kind == "frames":
        count = len(paths)
        if num_frames is not None and count < num_frames:
            raise ValueError(f"Not enough meshes: found {count}, need {num_frames}")
        # mesh_*.glb as the release loads them; our numbered frames unprocessed (their vertex order is shared)
        options = {} if paths[0].name.startswith("mesh_") else {"process": False}
        return [trimesh.load(p, force="mesh", **options) for p in paths[:num_frames]]
    from ..io.glb import read_animated_glb

    anim = read_animated_glb(paths[0])
    if num_frames is not None and anim.num_frames < num_frames:
        raise ValueError(f"Not enough frames in {paths[0].name}: found {anim.num_frames}, need {num_frames}")
    count = anim.num_frames if num_frames is None else num_frames
    return metrics.as_mesh_list([trimesh.Trimesh(np.asarray(anim.vertices[k], np.float64), anim.faces, process=False)
                                 for k in range(count)])


def summarize(results: List[SampleResult]) -> dict:
    """Counts, success rate and the means over successful samples (the release's ``DatasetResults.summary``)."""
    ok = [r for r in results if r.status == "success"]
    out = {"n_total": len(results), "n_success": len(ok), "n_failed": len(results) - len(ok),
           "success_rate": len(ok) / len(results) if results else 0.0}
    for key in ("cd_3d", "cd_4d", "cd_motion"):
        out[f"{key}_mean"] = float(np.mean([getattr(r, key) for r in ok])) if ok else float("nan")
    return out


def _csv_value(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_results(results: List[SampleResult], out_csv, settings: Optional[dict] = None) -> Path:
    """Write the CSV and ``<out>.summary.json`` atomically; returns the summary's path.

    Raises:
        OSError: a file cannot be written (the previous files are intact).
    """
    from ..io.atomic import atomic_write

    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_csv, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in results:
            writer.writerow([_csv_value(getattr(r, c)) for c in COLUMNS])
    summary = summarize(results)
    if settings is not None:
        summary["settings"] = settings
    summary_path = out_csv.with_suffix(".summary.json")
    with atomic_write(summary_path, "w") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    return summary_path


def _read_previous(out_csv: Path, settings: dict) -> Dict[str, SampleResult]:
    """Successful rows of an earlier run with the same settings (resume)."""
    from ..errors import InputError

    if not out_csv.is_file():
        return {}
    summary_path = out_csv.with_suffix(".summary.json")
    if summary_path.is_file():
        try:
            before = json.loads(summary_path.read_text()).get("settings")
        except (OSError, ValueError):
            before = None
        if before is not None and before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise InputError(f"{out_csv} was computed with other settings ({', '.join(changed)}): use --recompute "
                             "or another --out")
    rows = {}
    with open(out_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("status") != "success":
                continue
            rows[row["uid"]] = SampleResult(row["uid"], float(row["cd_3d"]), float(row["cd_4d"]),
                                            float(row["cd_motion"]), int(row["n_frames"]), "success", "")
    return rows


def evaluate_dataset(pred_root, gt_root, out_csv=None, *, device=None, num_icp_points: int = metrics.N_PTS_ICP,
                     num_points: int = metrics.N_PTS_CHAMFER, seed: int = metrics.SEED,
                     icp_iterations: int = metrics.ICP_ITERATIONS, motion: bool = True, recompute: bool = False,
                     log: Optional[Callable[[str], None]] = None) -> List[SampleResult]:
    """Score every sample that has ground truth and a prediction (the release's ``evaluate_dataset``).

    Args:
        pred_root, gt_root: folders (module docstring).
        out_csv: results CSV (None: nothing written); rewritten after every sample.
        device: where the ICP runs (None: CUDA when available).
        num_icp_points, num_points, seed, icp_iterations, motion: see
            :func:`~actionmesh_core.eval.metrics.evaluate_sequence`.
        recompute: redo samples an earlier run with this ``out_csv`` scored.
        log: ``log(line)`` for progress lines (None: silent).

    Returns:
        one :class:`SampleResult` per sample, in uid order.

    Raises:
        InputError: see :func:`find_samples`; ``out_csv`` holds results made with other settings.
    """
    say = log or (lambda line: None)
    uids, gt_only, pred_only = find_samples(pred_root, gt_root)
    if gt_only:
        say(f"warning: {len(gt_only)} ground-truth samples have no prediction")
    if pred_only:
        say(f"warning: {len(pred_only)} predictions have no ground truth")
    settings = {"num_icp_points": int(num_icp_points), "num_points": int(num_points), "seed": int(seed),
                "icp_iterations": int(icp_iterations), "motion": bool(motion)}
    out_path = None if out_csv is None else Path(out_csv)
    previous = {} if out_path is None or recompute else _read_previous(out_path, settings)
    results: List[SampleResult] = []
    for i, uid in enumerate(uids):
        if uid in previous:
            results.append(previous[uid])
            continue
        result = SampleResult(uid)
        start = time.perf_counter()
        try:
            gt = load_ground_truth(Path(gt_root) / uid / "surfaces.npy")
            result.n_frames = gt.shape[0]
            meshes = load_prediction(pred_root, uid, gt.shape[0])
            scores = metrics.evaluate_sequence(meshes, gt, num_points=num_points, num_icp_points=num_icp_points,
                                               seed=seed, icp_iterations=icp_iterations, motion=motion,
                                               device=device)
            result.cd_3d, result.cd_4d, result.cd_motion = scores["cd_3d"], scores["cd_4d"], scores["cd_m"]
            result.status = "success"
            say(f"[{i + 1}/{len(uids)}] {uid}: CD-3D {result.cd_3d:.3f}  CD-4D {result.cd_4d:.3f}  "
                f"CD-M {result.cd_motion:.3f}  ({time.perf_counter() - start:.0f} s)")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad sample does not stop the benchmark (as the release)
            from ..errors import one_line

            result.status = "error"
            result.error_message = one_line(str(exc) or type(exc).__name__)
            say(f"[{i + 1}/{len(uids)}] {uid}: error: {result.error_message}")
        results.append(result)
        if out_path is not None:
            write_results(results, out_path, settings)
    if out_path is not None:
        write_results(results, out_path, settings)
    return results


# ------------------------------------------------------------------ command line


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the CLI's subparsers; returns its parser."""
    e = sub.add_parser(
        "evaluate", help="score predictions on ActionBench (CD-3D, CD-4D, CD-M) as the release does",
        description="ActionBench metrics as the official release computes them (actionbench/ of the release): "
                    "ICP-aligned Chamfer distances per frame (CD-3D), with one alignment for the clip (CD-4D) and "
                    "along fixed correspondences (CD-M).",
        epilog="exit status: 0 every sample scored; 3 some samples failed (listed, and in the CSV's status "
               "column); 2 bad input (one line naming the option or folder); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP "
               "(one line; the CSV and summary are written atomically, a previous one stays unchanged); 1 a bug "
               "(with its traceback)")
    e.add_argument("pred_root", metavar="PRED_ROOT",
                   help="predictions: <uid>/mesh_*.glb (release), <uid>/<name>_<k>.glb (--per-frame-dir), "
                        "<uid>/<name>.glb or <uid>.glb (animated GLB)")
    e.add_argument("gt_root", metavar="GT_ROOT", help="ground truth: <uid>/surfaces.npy (ActionBench data/ folder)")
    e.add_argument("--out", required=True, help="results CSV; the summary goes to <out>.summary.json")
    e.add_argument("--device", default="auto", help="where the ICP runs: auto (CUDA when available), cpu, cuda[:N]")
    e.add_argument("--seed", type=int, default=metrics.SEED, help=f"sampling seed (default {metrics.SEED})")
    e.add_argument("--n-pts-icp", type=int, default=metrics.N_PTS_ICP,
                   help=f"points per frame for the ICP (default {metrics.N_PTS_ICP})")
    e.add_argument("--n-pts-chamfer", type=int, default=metrics.N_PTS_CHAMFER,
                   help=f"surface samples per predicted frame (default {metrics.N_PTS_CHAMFER})")
    e.add_argument("--icp-iterations", type=int, default=metrics.ICP_ITERATIONS,
                   help=f"Adam steps per ICP (default {metrics.ICP_ITERATIONS}; fewer only for quick looks)")
    e.add_argument("--recompute", action="store_true", help="redo samples already scored in --out")
    e.add_argument("--3d-only", dest="three_d_only", action="store_true",
                   help="skip CD-M (cd_motion = 0, as the release's --3d-only)")
    return e


def _device(value: str):
    import torch

    from ..errors import OptionError

    if value == "auto":
        return None
    try:
        dev = torch.device(value)
    except RuntimeError:
        raise OptionError(f"--device {value!r} is not a device: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA device is available here; use --device cpu (slower ICP)")
    if dev.type not in ("cpu", "cuda"):
        raise OptionError(f"--device {value!r}: the evaluation runs on cpu or cuda")
    return dev


def run_evaluate_command(args) -> int:
    """Entry point of ``python -m actionmesh_core evaluate``; returns the exit status.

    Raises:
        InputError: bad options or folders (the CLI prints one line, status 2).
    """
    from ..errors import OptionError, OutputPathError

    for name in ("n_pts_icp", "n_pts_chamfer", "icp_iterations"):
        if getattr(args, name) < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise OutputPathError(f"--out {out}: give a .csv file (the summary goes beside it as .summary.json)")
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a folder: give a .csv file")
    device = _device(args.device)
    results = evaluate_dataset(args.pred_root, args.gt_root, out, device=device, num_icp_points=args.n_pts_icp,
                               num_points=args.n_pts_chamfer, seed=args.seed, icp_iterations=args.icp_iterations,
                               motion=not args.three_d_only, recompute=args.recompute,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    s = summarize(results)
    print(f"samples: {s['n_total']} total, {s['n_success']} scored, {s['n_failed']} failed")
    if s["n_success"]:
        print(f"CD-3D {s['cd_3d_mean']:.4f}  CD-4D {s['cd_4d_mean']:.4f}  CD-M {s['cd_motion_mean']:.4f}  "
              f"(means over scored samples)")
    for r in results:
        if r.status != "success":
            print(f"  [{r.uid}] {r.status}: {r.error_message}")
    print(f"wrote {out} and {out.with_suffix('.summary.json')}")
    return EXIT_SOME_FAILED if s["n_failed"] else 0
