"""Batch conversion of many clips: local (models loaded once) or on a Ray cluster (one pipeline per actor).

Resumable (a content hash recorded beside each output; done clips are skipped),
failure-tolerant (a failing clip is recorded in ``report.jsonl`` and the batch goes
on), and safe to interrupt (every file is written atomically). See
:func:`run_batch` and ``python -m actionmesh_core batch --help``.

Modules: :mod:`.manifest` (inputs and CSV/JSONL manifests), :mod:`.state` (hashes,
records, report), :mod:`.worker` (one resident pipeline), :mod:`.engine` (driver and
local engine), :mod:`.ray_engine` (Ray actors), :mod:`.events` (events, console display, BatchError),
:mod:`.cli` (the subcommand).
"""
from importlib import import_module

# name -> submodule; imported on first use so that building the CLI parser does not import torch
_EXPORTS = {"BatchError": "events", "ConsoleProgress": "events", "BatchSettings": "engine", "BatchSummary": "engine", "RayOptions": "engine",
            "plan_batch": "engine", "run_batch": "engine", "ClipSpec": "manifest", "ManifestError": "manifest",
            "read_inputs": "manifest", "read_manifest": "manifest", "ClipJob": "worker", "ClipResult": "worker",
            "ClipRunner": "worker"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
