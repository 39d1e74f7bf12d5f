"""Parity comparison shared by the parity tests: max abs error printed, tight tolerance asserted."""
from __future__ import annotations

import torch

# (rtol, atol) per kind of computation, placeholders while measuring
TOLERANCES = {
    "normals": (0.0, 1e-4),
    "stage2": (0.0, 1e-4),
    "stage1": (0.0, 1e-3),
    "frames": (0.0, 1e-6),
    "pixels": (0.0, 1e-4),
    "forward": (0.0, 1e-4),
    "schedule": (0.0, 1e-4),
    "sampling": (0.0, 1e-4),
}


def check(actual: torch.Tensor, expected: torch.Tensor, kind: str, label: str) -> float:
    """Assert ``actual`` matches ``expected`` within the tolerance of ``kind``; return the max abs error."""
    rtol, atol = TOLERANCES[kind]
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert actual.shape == expected.shape, f"{label}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    print(f"PARITY {label}: max abs error {err:.3e} (|expected| max {expected.abs().max().item():.3g}, "
          f"rtol {rtol:g}, atol {atol:g})")
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{label}: {m}")
    return err
