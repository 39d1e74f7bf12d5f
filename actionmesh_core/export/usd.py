"""USD export (``.usdc`` / ``.usda`` / ``.usdz``) through Pixar's ``usd-core`` (``pxr``).

One ``UsdGeomMesh`` whose ``points``, ``normals`` and ``extent`` are
time-sampled, one sample per frame (a point cache: the topology is fixed, as
ActionMesh's output is), UVs as the ``primvars:st`` primvar (vertex
interpolation), vertex colours as ``primvars:displayColor``, and the texture as
a ``UsdPreviewSurface`` material (``UsdUVTexture`` reading ``st``).

Stage metadata: ``upAxis = Y`` (the mesh is written in glTF's Y-up frame),
``metersPerUnit`` as given (default 1: one model unit is one metre),
``timeCodesPerSecond = framesPerSecond = fps``, time code of frame k =
``times[k] * fps`` (``k`` for regular clips), ``startTimeCode``/``endTimeCode``
= first/last frame.

``.usda``/``.usdc`` write the texture beside the file (``<stem>_texture.png``,
referenced by a relative path); ``.usdz`` packs the layer and the texture into
one archive (what Apple Quick Look and the ComfyUI 3D viewer open).

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..io.atomic import atomic_write
from ._common import animation_fps, check_animation, frame_codes, named_atomic_path, require, texture_name
from .glb import frame_normals

__all__ = ["export_usd", "USD_SUFFIXES", "write"]

USD_SUFFIXES = (".usdc", ".usda", ".usd", ".usdz")


def _build_stage(pxr, anim, layer_path: Path, fps: float, codes: np.ndarray, meters_per_unit: float,
                 texture_file: Optional[str], name: str, include_normals: bool):
    Usd, UsdGeom, UsdShade, Sdf, Vt, Gf = pxr.Usd, pxr.UsdGeom, pxr.UsdShade, pxr.Sdf, pxr.Vt, pxr.Gf
    stage = Usd.Stage.CreateNew(str(layer_path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    stage.SetStartTimeCode(float(codes[0]))
    stage.SetEndTimeCode(float(codes[-1]))
    root = UsdGeom.Xform.Define(stage, f"/{name}")
    stage.SetDefaultPrim(root.GetPrim())
    mesh = UsdGeom.Mesh.Define(stage, f"/{name}/mesh")
    faces = np.asarray(anim.faces, np.int32)
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.reshape(-1)))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    verts = np.asarray(anim.vertices, np.float32)
    normals = frame_normals(faces, verts) if include_normals else None
    points_attr = mesh.CreatePointsAttr()
    extent_attr = mesh.CreateExtentAttr()
    normals_attr = None
    if normals is not None:
        normals_attr = mesh.CreateNormalsAttr()
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    for k, code in enumerate(codes):
        time = Usd.TimeCode(float(code))
        points_attr.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(verts[k])), time)
        lo, hi = verts[k].min(0), verts[k].max(0)
        extent_attr.Set(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]), time)
        if normals_attr is not None:
            normals_attr.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(normals[k])), time)
    primvars = UsdGeom.PrimvarsAPI(mesh)
    if anim.uv is not None:
        st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(np.asarray(anim.uv, np.float32))))
    if anim.vertex_colors is not None:
        col = np.asarray(anim.vertex_colors, np.float64)
        col = col[:, :3] / (255.0 if np.asarray(anim.vertex_colors).dtype == np.uint8 or col.max() > 1.0 else 1.0)
        dc = primvars.CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex)
        dc.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(col.astype(np.float32))))

    material = UsdShade.Material.Define(stage, f"/{name}/Looks/material")
    surface = UsdShade.Shader.Define(stage, f"/{name}/Looks/material/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    if texture_file is not None and anim.uv is not None:
        reader = UsdShade.Shader.Define(stage, f"/{name}/Looks/material/stReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        st_name = material.CreateInput("frame:stPrimvarName", Sdf.ValueTypeNames.Token)
        st_name.Set("st")
        reader.CreateInput("varname", Sdf.ValueTypeNames.Token).ConnectToSource(st_name)
        tex = UsdShade.Shader.Define(stage, f"/{name}/Looks/material/baseColorTexture")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(f"./{texture_file}"))
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(tex.ConnectableAPI(), "rgb")
    elif anim.vertex_colors is not None:
        reader = UsdShade.Shader.Define(stage, f"/{name}/Looks/material/colorReader")
        reader.CreateIdAttr("UsdPrimvarReader_float3")
        reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("displayColor")
        reader.CreateOutput("result", Sdf.ValueTypeNames.Float3)
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(reader.ConnectableAPI(),
                                                                                        "result")
    else:
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(0.8, 0.8, 0.8))
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()


def export_usd(
    anim,
    path: Union[str, Path],
    *,
    fps: Optional[float] = None,
    meters_per_unit: float = 1.0,
    include_normals: bool = True,
    name: str = "ActionMesh",
) -> list[Path]:
    """Write the animation as a USD point cache (time-sampled points/normals) with UVs and texture material.

    Args:
        anim: :class:`~actionmesh_core.io.animated_mesh.AnimatedMesh` (faces
            (F, 3), vertices (T, V, 3) in model units, times (T,) seconds,
            optional uv (V, 2) with v up, texture, vertex colours).
        path: ``.usdc``, ``.usd`` (binary crate), ``.usda`` (text) or
            ``.usdz`` (zip package with the texture inside); its folder is created.
        fps: frames per second (``timeCodesPerSecond``); default from
            ``anim.times`` (frame k at time code ``times[k] * fps``).
        meters_per_unit: the stage's ``metersPerUnit`` (1.0: one unit = 1 m).
        include_normals: also write time-sampled vertex normals.
        name: root prim name (the default prim), a valid USD identifier.

    Returns:
        The written files: the USD file first, then the texture when written
        beside it (``.usda``/``.usdc``).

    Raises:
        MissingDependency: ``usd-core`` is not installed (one line: ``pip install usd-core``).
        TypeError / ValueError: not an AnimatedMesh, unsupported suffix, bad
            fps / meters_per_unit / name, non-increasing frame times.
    """
    pxr = require("pxr", "USD export")
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt  # noqa: F401  (submodules onto pxr)

    anim = check_animation(anim, "export_usd")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in USD_SUFFIXES:
        raise ValueError(f"export_usd: the path must end in one of {USD_SUFFIXES}, got {path.name!r}")
    if not float(meters_per_unit) > 0:
        raise ValueError(f"export_usd: meters_per_unit must be > 0, got {meters_per_unit}")
    if not Sdf.Path.IsValidIdentifier(name):
        raise ValueError(f"export_usd: name {name!r} is not a valid USD identifier (letters, digits, '_')")
    rate = animation_fps(anim, fps)
    codes = frame_codes(anim, fps)
    image = anim.texture_image() if anim.uv is not None else None
    tex_name = texture_name(path) if image is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path]
    if suffix == ".usdz":
        with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=str(path.parent)) as staging:
            layer = Path(staging) / f"{path.stem}.usdc"
            if image is not None:
                image.save(Path(staging) / tex_name, format="PNG")
            _build_stage(pxr, anim, layer, rate, codes, meters_per_unit, tex_name, name, include_normals)
            with named_atomic_path(path) as tmp:
                if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(layer)), str(tmp)):
                    raise OSError(f"export_usd: pxr could not package {path}")
        return written
    if image is not None:
        tex_path = path.with_name(tex_name)
        with atomic_write(tex_path) as handle:
            image.save(handle, format="PNG")
        written.append(tex_path)
    with named_atomic_path(path) as tmp:
        if suffix == ".usd":
            # a .usd file may be text or crate; we write crate (binary), like .usdc
            crate = tmp.with_suffix(".usdc")
            _build_stage(pxr, anim, crate, rate, codes, meters_per_unit, tex_name, name, include_normals)
            crate.rename(tmp)
        else:
            _build_stage(pxr, anim, tmp, rate, codes, meters_per_unit, tex_name, name, include_normals)
    return written


def write(anim, path: Path, options) -> tuple[list[Path], dict]:
    """Registry writer of ``usdc`` / ``usda`` / ``usdz`` (the suffix of ``path`` decides)."""
    return export_usd(anim, path, fps=options.fps, meters_per_unit=options.meters_per_unit), {}
