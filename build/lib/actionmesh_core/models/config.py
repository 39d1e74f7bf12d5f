"""Config handling shared by the model classes."""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Dict


def split_config(cls, config: Dict[str, Any], tolerated: Dict[str, Any] = None) -> Dict[str, Any]:
    """Keep the keys of ``config`` that ``cls.__init__`` accepts.

    Keys starting with ``_`` (diffusers bookkeeping) are dropped silently;
    keys in ``tolerated`` are dropped when they hold a tolerated value
    (``None`` = any value); any
    other unknown key triggers a warning naming it.

    Raises:
        ValueError: a tolerated key holds a value this implementation cannot honour.
    """
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    tolerated = tolerated or {}
    kept, ignored = {}, []
    for key, value in config.items():
        if key.startswith("_"):
            continue
        if key in params:
            kept[key] = value
        elif key in tolerated:
            if tolerated[key] is not None and value not in tolerated[key]:
                raise ValueError(f"{cls.__name__}: config key {key}={value!r} is not supported "
                                 f"(supported values: {tolerated[key]})")
        else:
            ignored.append(key)
    if ignored:
        warnings.warn(f"{cls.__name__}: ignoring unknown config keys {sorted(ignored)}", stacklevel=3)
    return kept
