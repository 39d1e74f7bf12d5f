"""Samplers: stage I masked flow matching, stage II windowed decoding, TripoSG image-to-3D."""
from .common import SamplingCancelled
from .schedules import flow_timesteps, triposg_sigmas
from .windows import Window, plan_windows

__all__ = ["SamplingCancelled", "flow_timesteps", "triposg_sigmas", "Window", "plan_windows"]
