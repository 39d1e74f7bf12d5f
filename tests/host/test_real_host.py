"""The pack in a real ComfyUI 0.27 (headless, CPU) driven through its real frontend in headless Chromium.

One server for the whole session (``comfy`` fixture, stopped by its process id), one browser page.
Checks: ``/object_info`` (every node registered through ``comfy_entrypoint`` as a V3 node, with the schema the
pack's stand-in declares outside ComfyUI); every shipped workflow and the workflows earlier versions shipped
(``tests/data/workflows_history``) load in the browser with no missing node type and no widget value of ours
rejected or moved (screenshot saved under the session's temporary folder, or ``$ACTIONMESH_SCREENSHOT_DIR``) and
convert with ``app.graphToPrompt()``; ``video_to_4d``, ``video_mesh_to_4d`` and the attention-chain graph run on
a fixture clip (background removal bypassed) with the settings of a ``python -m actionmesh_core video-to-4d`` run
on the same frames and give its animation (same vertex/face counts, positions within 1e-6; ``equivalence.py``),
with progress and previews on the page's websocket; the old workflows run too; the pack's models sit in
ComfyUI's loaded-model list while a run goes and leave it on ``POST /free``; an interrupted run stops cleanly
without a partial file; the missing-models panel names our weights with their download links; the placeholder
mesh and frames are flagged at load.
The template thumbnails are written with ``ACTIONMESH_UPDATE_THUMBNAILS=1``.

The chained workflows (Hunyuan3D-2 and Load 3D backbones, the three Wan 2.1 ones) run as shipped with tiny /
sparse stand-ins of the core models, shrunk only through node inputs; each run is followed on ComfyUI's websocket
(every node started or served from its cache) and checked end to end (frames through the chain, one morph
target per prepared frame at the video's rate, the preview, the anchor's vertices); the table of the runs is
printed at the end and saved as ``chained_workflows.md`` beside the screenshots. The Wan ones need about 16 GB
of memory: without it they are skipped with the reason, or fail under ``CI=true``. A workflow run again executes
only what changed (ComfyUI's cache); the template browser lists every workflow with its thumbnail.

Skipped with the reason when ComfyUI, its requirements, chromium or playwright are missing; with
``CI=true`` those are failures (``.ci/run`` installs them).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import comfy_host
import data_dirs
import equivalence as eq
from comfy_host import ComfyServer, need
from workflow_models import WORKFLOW_DIR

# every test needs the real ComfyUI (marker host); those that open its frontend also chromium + playwright (browser)
pytestmark = [pytest.mark.host,
              pytest.mark.skipif(comfy_host.OPTED_OUT, reason="ACTIONMESH_REAL_HOST=0 (outside CI)")]

ROOT = data_dirs.REPO_ROOT
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
OLD_WORKFLOWS = sorted((data_dirs.DATA_DIR / "workflows_history").glob("*.json"))
CLIP = "actionmesh_test_camel.mp4"
FRAMES = "frames/actionmesh_test_camel"
MESH = "3d/actionmesh_test_mesh.glb"
IMAGE = "actionmesh_test_object.png"  # the first camel frame on white: the start image of the image workflow
PACK_MODEL_CLASSES = {"TemporalDenoiser", "TemporalAutoencoder", "TripoSGVAE", "TripoSGDiT", "DinoV2Encoder"}
BACKGROUND_REMOVAL = ("LoadBackgroundRemovalModel", "RemoveBackground")
# small settings for a CPU run with the tiny weights, by node type then input name
SMALL = {
    "ActionMeshLoadFrames": {"source": FRAMES, "max_frames": 4},
    "ActionMeshPrepareFrames": {"size": 128, "max_frames": 4, "frame_stride": 1},
    "ActionMeshEncodeFrames": {"batch_size": 4},
    "ActionMeshImageTo3DAnchor": {"steps": 2, "num_tokens": 256, "octree_depth": 5, "refine_depth": 6,
                                  "target_faces": 2000},
    "ActionMeshEncodeReferenceMesh": {"num_tokens": 256},
    "ActionMeshTemporalDenoise": {"steps": 2},
    "ActionMeshRenderPreview": {"size": 64},
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, fixtures_dir):
    source = comfy_host.comfyui_source()
    need(source is not None, "no ComfyUI source: set ACTIONMESH_COMFYUI_DIR or put it at ../shared/hosts/comfyui")
    missing = comfy_host.missing_host_modules()
    need(not missing, f"ComfyUI's requirements are not installed (missing {missing}); see ../shared/hosts/README.md")
    base = tmp_path_factory.mktemp("comfyui_host")
    home = comfy_host.prepare_home(base, source)
    _make_inputs(home / "input", fixtures_dir)
    server = ComfyServer(home, comfy_host.placeholders_dir(source))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory) -> Path:
    path = Path(os.environ.get("ACTIONMESH_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need(sync_playwright is not None, "the playwright package is not installed (pip install playwright)")
    executable = comfy_host.chromium_path()
    need(executable is not None, "no chromium executable (apt-get install chromium, or set ACTIONMESH_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _open_page(browser, comfy):
    page = browser.new_page(viewport={"width": 2400, "height": 1350})
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(f"{message.type}: {message.text}"))
    page.goto(comfy.url, wait_until="commit", timeout=600_000)  # the app's own readiness is awaited below
    page.wait_for_function("() => window.app && window.app.vueAppReady && window.app.graph "
                           "&& window.LiteGraph && Object.keys(window.LiteGraph.registered_node_types).length > 100",
                           timeout=600_000)
    return page


@pytest.fixture(scope="session")
def page(browser, comfy):
    page = _open_page(browser, comfy)
    yield page
    page.close()


def _make_inputs(input_dir: Path, fixtures_dir: Path) -> None:
    """A fixture clip as a frame folder and as an MP4 (RGBA frames over white), a small mesh in ``input/3d/``."""
    import av
    import trimesh
    from PIL import Image

    input_dir.mkdir(parents=True, exist_ok=True)
    frames = sorted((fixtures_dir / "davis_camel").glob("*.png"))[:8]
    (input_dir / FRAMES).mkdir(parents=True)
    for path in frames:  # the RGBA frames themselves, for Load Frames (alpha = the object mask)
        (input_dir / FRAMES / path.name).write_bytes(path.read_bytes())
    with av.open(str(input_dir / CLIP), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        for path in frames:
            rgba = Image.open(path).convert("RGBA").resize((256, 256))
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    rgba = Image.open(frames[0]).convert("RGBA")
    Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB").save(
        input_dir / IMAGE)
    (input_dir / "3d").mkdir(exist_ok=True)
    body = trimesh.creation.capsule(height=1.0, radius=0.35, count=[12, 12])
    body.export(str(input_dir / MESH))


# --------------------------------------------------------------------------- helpers


def _load(page, workflow: dict) -> dict:
    """Load a UI-format workflow as a drop does; report what the frontend made of it."""
    return page.evaluate("""async (workflow) => {
        await window.app.loadGraphData(workflow);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const registered = window.LiteGraph.registered_node_types;
        const serialized = window.app.graph.serialize();
        return {
            missing: workflow.nodes.map((n) => n.type).filter((t) => !(t in registered)),
            nodes: Object.fromEntries(serialized.nodes.map((n) => [n.id, {type: n.type, mode: n.mode,
                                                                            widgets_values: n.widgets_values}])),
            flagged: window.app.graph._nodes.filter((n) => n.actionmeshMissingInput)
                         .map((n) => [n.id, n.actionmeshMissingInput]),
        };
    }""", workflow)


def _fit_and_screenshot(page, path: Path) -> None:
    """Fit the whole graph (groups and title bars included) with the frontend's own ``fitToBounds``, full
    detail at any zoom (``LiteGraph.Canvas.MinFontSizeForLOD`` = 0 in the test settings), toasts dismissed."""
    page.evaluate("""() => {
        window.app.extensionManager?.toast?.removeAll?.();
        const canvas = window.app.canvas;
        let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
        const boxes = window.app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30])
            .concat((window.app.graph._groups || []).map((g) => g._bounding || g.bounding));
        for (const [x, y, w, h] of boxes) {
            x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
        }
        canvas.ds.fitToBounds([x0 - 260, y0 - 40, x1 - x0 + 300, y1 - y0 + 80], {zoom: 0.97});  // room for the sidebar
        canvas.setDirty(true, true);
    }""")
    page.wait_for_timeout(700)
    page.screenshot(path=str(path))


def _converted(page, bypass=BACKGROUND_REMOVAL) -> dict:
    """``app.graphToPrompt()`` of the loaded graph after bypassing the given node types (API format)."""
    return page.evaluate("""async (bypass) => {
        for (const node of window.app.graph._nodes) if (bypass.includes(node.type)) node.mode = 4;
        const converted = await window.app.graphToPrompt();
        return converted.output;
    }""", list(bypass))


def _shrink(prompt: dict, small: dict = SMALL, **overrides) -> dict:
    """Point the converted prompt at the test clip/image/mesh and make it small through node inputs only (``small``:
    ``SMALL``, or ``CHAIN_SMALL`` for the chained workflows)."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "LoadVideo":
            inputs["file"] = CLIP
        if kind == "LoadImage":
            inputs["image"] = IMAGE
        if kind == "ActionMeshEncodeReferenceMesh" and not any(k in inputs for k in ("mesh", "model_3d")):
            inputs["mesh_file"] = MESH
        for name, value in {**small.get(kind, {}), **overrides.get(kind, {})}.items():
            if name in inputs and not isinstance(inputs[name], list):
                inputs[name] = value
    return prompt


def _workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / name).read_text(encoding="utf-8"))


def _outputs(comfy) -> set:
    root = comfy.home / "output"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- tests


def test_file_3d_types_match_the_host(comfy, pack, host):
    """The pack's FILE_3D union lists exactly the core ``FILE_3D*`` socket types of this ComfyUI."""
    import re

    source = (comfy.home / "comfy_api" / "latest" / "_io.py").read_text()
    core = set(re.findall(r'io_type="(FILE_3D[A-Z0-9_]*)"', source))
    assert core and core == set(host.FILE_3D_TYPES)


def test_object_info_lists_every_pack_node(comfy, pack):
    info = comfy.get("/object_info")
    ours = {name for name in info if name in pack.NODES}
    assert ours == set(pack.NODES), "a pack node failed to register: " + comfy.log_tail()
    # the loaders offer the tiny weights laid out as the README says, each only its own kind
    offered = {name: info[name]["input"]["required"]["model_name"][1]["options"] for name in (
        "ActionMeshLoadDenoiser", "ActionMeshLoadAutoencoder", "ActionMeshLoadTripoSGVAE",
        "ActionMeshLoadTripoSGDiT", "ActionMeshLoadDINOv2")}
    assert offered == {"ActionMeshLoadDenoiser": ["ActionMesh/denoiser/model.safetensors"],
                       "ActionMeshLoadAutoencoder": ["ActionMesh/autoencoder/model.safetensors"],
                       "ActionMeshLoadTripoSGVAE": ["TripoSG/vae/diffusion_pytorch_model.safetensors"],
                       "ActionMeshLoadTripoSGDiT": ["TripoSG/transformer/diffusion_pytorch_model.safetensors"],
                       "ActionMeshLoadDINOv2": ["dinov2-large/model.safetensors"]}
    mesh_input = info["ActionMeshEncodeReferenceMesh"]["input"]
    assert MESH in mesh_input["required"]["mesh_file"][1]["options"]
    assert "FILE_3D_GLB" in mesh_input["optional"]["model_3d"][0].split(",")
    import_lines = [line for line in comfy.log_tail(1_000_000).splitlines() if "custom_nodes" in line
                    and "ComfyUI-ActionMesh" in line]
    assert import_lines and not any("IMPORT FAILED" in line for line in import_lines), import_lines


# combos whose choices list files of this machine (the stand-in sees other folders than the server)
FILE_COMBOS = {"model_name", "source", "mesh_file"}


def _json(value):
    return json.loads(json.dumps(value))


def test_nodes_are_v3_nodes_with_the_schema_the_stand_in_declares(comfy, pack):
    """Every node is registered as a V3 node (``comfy_entrypoint``: ComfyUI reads its ``define_schema``), and the
    host serves exactly the inputs, outputs, names and flags the stand-in schema gives outside ComfyUI (which the
    other tests run on), so the two cannot drift apart."""
    info = comfy.get("/object_info")
    for name, cls in pack.NODES.items():
        served, schema = info[name], cls.GET_SCHEMA()
        declared = _json(cls.INPUT_TYPES())
        for section in ("required", "optional"):
            for key in FILE_COMBOS & set(declared.get(section, {})):
                declared[section][key][1].pop("options")
                served["input"][section][key][1].pop("options")
        assert served["input"] == declared, name
        assert served["output"] == list(cls.RETURN_TYPES) and served["output_name"] == list(cls.RETURN_NAMES), name
        assert served["output_tooltips"] == list(cls.OUTPUT_TOOLTIPS), name
        assert (served["display_name"], served["category"], served["description"]) == (
            schema.display_name, schema.category, schema.description), name
        assert served["search_aliases"] == schema.search_aliases and served["output_node"] == schema.is_output_node
        assert served["python_module"] == "custom_nodes.ComfyUI-ActionMesh", name
    expert = {(n, k) for n in pack.NODES for section in info[n]["input"].values() if isinstance(section, dict)
              for k, v in section.items() if isinstance(v, list) and len(v) > 1 and v[1].get("advanced")}
    assert ("ActionMeshTemporalDenoise", "window") in expert and ("ActionMeshEncodeFrames", "batch_size") in expert


@pytest.mark.browser
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_in_the_browser(path, page, shots_dir):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    loaded = _load(page, workflow)
    assert loaded["missing"] == [], f"node types missing in ComfyUI: {loaded['missing']}"
    for node in workflow["nodes"]:
        now = loaded["nodes"][str(node["id"])]
        assert now["type"] == node["type"]
        # a value the frontend rejected (reset to a default) or moved (shifted slot) shows up here
        assert now.get("widgets_values", []) == node.get("widgets_values", []), \
            f"node {node['id']} ({node['type']}): widgets_values changed on load"
    missing_ours = [m for m in page.evaluate(MISSING_MODELS_JS, 3000) if m["directory"] in PACK_DIRECTORIES]
    assert missing_ours == [], f"installed weights listed as missing (wrong file names?): {missing_ours}"
    _fit_and_screenshot(page, shots_dir / f"{path.stem}.png")
    converted = _converted(page, bypass=())
    active = {str(n["id"]) for n in workflow["nodes"] if n["type"] not in ("Note", "MarkdownNote") and n["mode"] == 0}
    assert set(converted) == active
    for node_id, node in converted.items():
        assert node["class_type"] == loaded["nodes"][node_id]["type"]


# ``ACTIONMESH_UPDATE_THUMBNAILS=1``: the template-browser test first writes each workflow's thumbnail
# (example_workflows/<name>.jpg, the name ComfyUI's frontend asks for) from what the frontend shows, with every input
# and model in place (no missing-file marks); run it after a layout change
UPDATE_THUMBNAILS = os.environ.get("ACTIONMESH_UPDATE_THUMBNAILS") == "1"
THUMBNAIL_SIZE = 960  # the longer side
WRAP_ASPECT = 3.2  # a graph wider than this is cut between two groups into two rows (the browser's cards are square)
# the placeholders a shipped workflow names, replaced by the test's inputs for its picture (no missing-file marks)
PICTURE_INPUTS = {"ActionMeshLoadFrames": {0: FRAMES}, "Load3DAdvanced": {0: MESH}, "LoadImage": {0: IMAGE}}


def _thumbnail(page, workflow: dict, target: Path) -> None:
    """The whole graph as the frontend draws it (toasts hidden), cropped to the graph, as a JPEG at ``target``."""
    from PIL import Image

    workflow = json.loads(json.dumps(workflow))
    for node in workflow["nodes"]:
        for index, value in PICTURE_INPUTS.get(node["type"], {}).items():
            node["widgets_values"][index] = value
        if node["type"] == "ActionMeshEncodeReferenceMesh" and node["widgets_values"][1] != "none":
            node["widgets_values"][1] = MESH
    _load(page, workflow)
    hidden = page.add_style_tag(content=".p-toast { display: none !important; }")
    shot = target.with_name(f".{target.stem}.png")
    _fit_and_screenshot(page, shot)
    box, gaps = page.evaluate("""() => {
        const canvas = window.app.canvas, rect = canvas.canvas.getBoundingClientRect();
        const screen = ([x, y]) => { const [a, b] = canvas.ds.convertOffsetToCanvas([x, y]);
                                     return [rect.left + a, rect.top + b]; };
        let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
        const groups = (window.app.graph._groups || []).map((g) => g._bounding || g.bounding);
        const boxes = window.app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30])
            .concat(groups);
        for (const [x, y, w, h] of boxes) {
            x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
        }
        // x of the gaps between groups that no group spans (where the picture may be cut)
        const gaps = groups.map(([x, y, w]) => x + w).filter((end) => !groups.some(([x, y, w]) => x < end + 10 && end + 10 < x + w))
            .filter((end) => end < x1 - 10).map((end) => screen([end + 10, 0])[0]);
        return [[...screen([x0 - 20, y0 - 20]), ...screen([x1 + 20, y1 + 20])], gaps];
    }""")
    hidden.evaluate("(element) => element.remove()")  # the page is shared: later tests look for toasts
    with Image.open(shot) as image:
        left, top = max(0, int(box[0])), max(0, int(box[1]))
        picture = image.convert("RGB").crop((left, top, min(image.width, int(box[2])), min(image.height, int(box[3]))))
    shot.unlink()
    if picture.width > WRAP_ASPECT * picture.height and gaps:  # two rows, cut at the gap nearest the middle
        cut = int(min(gaps, key=lambda x: abs(x - left - picture.width / 2)) - left)
        rows = [picture.crop((0, 0, cut, picture.height)), picture.crop((cut, 0, picture.width, picture.height))]
        wrapped = Image.new("RGB", (max(r.width for r in rows), 2 * picture.height), picture.getpixel((0, 0)))
        wrapped.paste(rows[0], (0, 0))
        wrapped.paste(rows[1], (0, picture.height))
        picture = wrapped
    scale = THUMBNAIL_SIZE / max(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
    partial = target.with_name(f".{target.name}.tmp")
    picture.save(partial, "JPEG", quality=85, optimize=True)
    os.replace(partial, target)


@pytest.mark.browser
def test_loader_folder_values_of_older_workflows_load_as_files(page):
    """A workflow saved when the loaders listed folders (``ActionMesh/denoiser``) loads with the listed weights files
    (web/js/actionmesh_model_names.js), so the frontend's missing-models check matches them: none of ours listed."""
    workflow = _workflow("video_to_4d.json")
    expected = {}
    for node in workflow["nodes"]:
        if node["type"].startswith("ActionMeshLoad") and node["type"] != "ActionMeshLoadFrames":
            expected[str(node["id"])] = node["widgets_values"][0]
            node["widgets_values"][0] = node["widgets_values"][0].rsplit("/", 1)[0]  # the folder, as saved before
    assert len(expected) == 5
    loaded = _load(page, workflow)
    assert {i: loaded["nodes"][i]["widgets_values"][0] for i in expected} == expected
    missing_ours = [m for m in page.evaluate(MISSING_MODELS_JS, 3000) if m["directory"] in PACK_DIRECTORIES]
    assert missing_ours == []


LOADERS = ("ActionMeshLoadDenoiser", "ActionMeshLoadAutoencoder", "ActionMeshLoadTripoSGVAE",
           "ActionMeshLoadTripoSGDiT", "ActionMeshLoadDINOv2")
RUNNABLE_OLD = [p for p in OLD_WORKFLOWS if p.stem.split("_", 1)[1] in ("video_to_4d", "video_mesh_to_4d")]


@pytest.mark.browser
@pytest.mark.parametrize("path", OLD_WORKFLOWS, ids=lambda p: p.stem)
def test_workflows_of_earlier_versions_load_unchanged(path, page, pack):
    """Workflows saved by earlier versions of the pack (git history) load: every node type known, every widget value
    of ours kept in place (loader folder values shown as their listed weights file; widgets added since then at
    their defaults), and they convert to a prompt ComfyUI accepts for our nodes."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    loaded = _load(page, workflow)
    assert loaded["missing"] == [], f"node types missing in ComfyUI: {loaded['missing']}"
    for node in workflow["nodes"]:
        if not node["type"].startswith("ActionMesh"):
            continue
        saved, now = node.get("widgets_values", []), loaded["nodes"][str(node["id"])]["widgets_values"]
        if node["type"] in LOADERS:
            assert now[0].startswith(saved[0].rstrip("/") + "/") or now[0] == saved[0], (node["type"], now)
            saved, now = saved[1:], now[1:]
        assert now[:len(saved)] == saved, f"node {node['id']} ({node['type']}): widgets_values moved on load"
        spec = pack.NODES[node["type"]].INPUT_TYPES()
        added = [name for name, (kind, *rest) in spec["required"].items() if rest and "default" in rest[0]]
        assert len(now) >= len(saved) and len(now) <= len(saved) + len(added) + 2, (node["type"], now)
    converted = _converted(page, bypass=())
    assert {n["class_type"] for n in converted.values() if n["class_type"].startswith("ActionMesh")} <= set(pack.NODES)


@pytest.mark.browser
def test_placeholder_inputs_are_flagged_at_load(page):
    """The shipped placeholders (mesh ``3d/my_mesh.glb``, frames ``frames/my_object``) are flagged when the
    workflow loads (node marked, a toast), as the frontend flags a missing video upload; real files are not."""
    workflow = _workflow("video_mesh_to_4d.json")
    mesh = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshEncodeReferenceMesh")
    frames = next(n for n in workflow["nodes"] if n["type"] == "ActionMeshLoadFrames")
    loaded = _load(page, workflow)
    assert sorted(loaded["flagged"]) == sorted([[mesh["id"], {"widget": "mesh_file", "value": "3d/my_mesh.glb"}],
                                                [frames["id"], {"widget": "source", "value": "frames/my_object"}]])
    assert page.locator("text=ActionMesh: input file missing").first.is_visible()
    mesh["widgets_values"][1] = MESH  # files that are there: no flag
    frames["widgets_values"][0] = FRAMES
    assert _load(page, workflow)["flagged"] == []


EVENTS_JS = """() => {
    // progress and preview messages of the prompts queued with this page's client id
    window.__actionmeshEvents = [];
    const api = window.app.api;
    if (!window.__actionmeshListening) {
        window.__actionmeshListening = true;
        api.addEventListener("progress", (e) => window.__actionmeshEvents.push(["progress", String(e.detail.node)]));
        api.addEventListener("b_preview_with_metadata",
                             (e) => window.__actionmeshEvents.push(["preview", String(e.detail.nodeId)]));
    }
    return api.clientId;
}"""


@dataclass
class Run:
    """One queued prompt: its history entry, wall time, new output files, the API prompt, and what was observed.

    Queued through a Python websocket client (``_queue(comfy, prompt)``): the nodes ComfyUI started and those it
    served from its cache, the server's peak resident memory meanwhile and each node's seconds. Queued for the
    browser page's own client (``_queue(comfy, prompt, page)``): the progress/preview messages the page received
    as ``events`` [(event, node id)] (ComfyUI sends a prompt's messages to one client only)."""
    entry: dict
    seconds: float
    new_files: set
    prompt: dict
    executed: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    peak_rss: int = 0
    node_seconds: dict = field(default_factory=dict)
    events: list = field(default_factory=list)


def _queue(comfy, prompt: dict, page=None, timeout: float = 900) -> Run:
    """Queue an API prompt and wait for it (see ``Run`` for what ``page`` changes)."""
    before = _outputs(comfy)
    start = time.time()
    if page is not None:
        client_id = page.evaluate(EVENTS_JS)
        entry = comfy.wait_history(comfy.queue_prompt(prompt, client_id=client_id), timeout=timeout)
        page.wait_for_timeout(500)
        events = [tuple(e) for e in page.evaluate("() => window.__actionmeshEvents")]
        return Run(entry, time.time() - start, _outputs(comfy) - before, prompt, events=events)
    with comfy_host.Watcher(comfy) as watch:
        prompt_id = comfy.queue_prompt(prompt, watch.client_id)
        entry = comfy.wait_history(prompt_id, timeout=timeout)
        if entry["status"]["status_str"] == "success":
            watch.wait_done(prompt_id)
    return Run(entry, time.time() - start, _outputs(comfy) - before, prompt, watch.executed(prompt_id),
               watch.cached(prompt_id), watch.peak_rss, watch.node_seconds(prompt_id))


def _run_workflow(comfy, page, workflow, small: dict = SMALL, widgets=None, observe=None, **overrides) -> Run:
    """Load ``workflow`` (a file name in the workflow folder, or a UI-format dict) in the browser (``widgets``:
    {node type: {widget index: value}} set in the UI workflow first, as a user picks a file), convert it
    (``_converted``), make it small (``_shrink``), queue it and wait. ``observe(prompt)`` may add observer nodes
    (core Preview Image on an output) to the converted prompt."""
    workflow = _workflow(workflow) if isinstance(workflow, str) else workflow
    for node in workflow["nodes"]:
        for index, value in (widgets or {}).get(node["type"], {}).items():
            node["widgets_values"][index] = value
    _load(page, workflow)
    prompt = _shrink(_converted(page), small, **overrides)
    if observe is not None:
        observe(prompt)
    return _queue(comfy, prompt)


def _node_id(prompt: dict, class_type: str) -> str:
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


def _with_settings(prompt: dict, settings: dict) -> dict:
    """Set every widget input named in ``settings`` (by node type) that the prompt's nodes have."""
    for node in prompt.values():
        for name, value in settings.get(node["class_type"], {}).items():
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = value
    return prompt


def _with_attention_chain(prompt: dict, settings: dict) -> dict:
    """The video_to_4d graph with Attention-Chain Animation in place of Temporal Denoise + Decode Deformation."""
    from actionmesh_core.attention_chain.pipeline import AttentionChainConfig

    denoise, decode = _node_id(prompt, "ActionMeshTemporalDenoise"), _node_id(prompt, "ActionMeshDecodeDeformation")
    anchor = _node_id(prompt, "ActionMeshImageTo3DAnchor")
    chain = {"denoiser": prompt[denoise]["inputs"]["denoiser"], "vae": prompt[anchor]["inputs"]["vae"],
             "context": prompt[denoise]["inputs"]["context"], "anchor": [anchor, 0], "reference": [anchor, 1],
             "num_landmarks": AttentionChainConfig().num_landmarks, **settings["ActionMeshAttentionChainAnimate"]}
    prompt["900"] = {"class_type": "ActionMeshAttentionChainAnimate", "inputs": chain}
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value and value[0] == decode:
                node["inputs"][name] = ["900", 0]
    for node_id in (denoise, decode, _node_id(prompt, "ActionMeshLoadAutoencoder")):
        del prompt[node_id]
    return prompt


EQUIVALENCE = {"video_to_4d": ("video_to_4d.json", "stage2", False),
               "video_mesh_to_4d": ("video_mesh_to_4d.json", "stage2", True),
               "attention_chain": ("video_to_4d.json", "attention-chain", False)}


def _equivalent_run(comfy, page, case: str, tmp_path: Path):
    """A shipped workflow with the settings of the small command-line run (``equivalence.py``), then that command
    line on the same frames and weights: the history entry, prompt, new files, progress/preview events, the
    comparison and ComfyUI's loaded-model classes right after the graph ran."""
    from actionmesh_core.cli import main

    name, mode, with_mesh = EQUIVALENCE[case]
    settings = eq.node_settings(comfy.weights)
    _load(page, _workflow(name))
    prompt = _with_settings(_shrink(_converted(page)), settings)
    if mode == "attention-chain":
        prompt = _with_attention_chain(prompt, settings)
    run = _queue(comfy, prompt, page)
    entry, seconds, new_files, events = run.entry, run.seconds, run.new_files, run.events
    loaded = {m["class"] for m in comfy.loaded_models()}  # ComfyUI's loaded-model list right after the run
    glb = _assert_success_with_glb(comfy, entry, new_files, prompt)
    mesh = comfy.home / "input" / MESH if with_mesh else None
    cli_glb = tmp_path / f"{case}.glb"
    assert main(eq.cli_args(comfy.home / "input" / FRAMES, comfy.weights, cli_glb, mode=mode, mesh=mesh)) == 0
    result = eq.compare_glbs(cli_glb, glb)
    command = " ".join(["python -m actionmesh_core"] + eq.cli_args("FRAMES", "WEIGHTS", "OUT.glb", mode=mode,
                                                                    mesh="MESH.glb" if with_mesh else None))
    print(f"\nequivalence | {case} | {command} | max abs {result['max_abs']:.3g} | {result['vertices']} vertices, "
          f"{result['faces']} faces | graph {seconds:.1f} s")
    return SimpleNamespace(entry=entry, prompt=prompt, new_files=new_files, events=events, result=result,
                           loaded=loaded)


@pytest.fixture(scope="session")
def video_to_4d_run(comfy, page, tmp_path_factory):
    """``video_to_4d`` from the browser's conversion with the small command-line run's settings."""
    return _equivalent_run(comfy, page, "video_to_4d", tmp_path_factory.mktemp("cli"))


def _assert_success_with_glb(comfy, entry, new_files, prompt):
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "success", json.dumps(errors or entry["status"])[:4000]
    export_id, preview_id = _node_id(prompt, "ActionMeshExportGLB"), _node_id(prompt, "Preview3D")
    files = entry["outputs"][export_id]["3d"]
    assert len(files) == 1 and files[0]["type"] == "output"
    relative = "/".join(p for p in (files[0]["subfolder"], files[0]["filename"]) if p)
    assert relative in new_files and relative.endswith(".glb")
    glb = comfy.home / "output" / relative
    import pygltflib

    gltf = pygltflib.GLTF2().load_binary(str(glb))
    assert gltf.animations and gltf.meshes
    # Preview 3D receives the exported file (the path string from Export Animated GLB)
    payload = entry["outputs"][preview_id]["result"]
    assert payload[0].replace("\\", "/").endswith(files[0]["filename"])
    return glb


@pytest.mark.browser
def test_video_to_4d_gives_the_cli_result(comfy, video_to_4d_run):
    prompt, new_files, events = video_to_4d_run.prompt, video_to_4d_run.new_files, video_to_4d_run.events
    assert video_to_4d_run.result["max_abs"] <= eq.TOLERANCE
    assert any(f.endswith(".webp") for f in new_files), "Render Preview's animated WEBP is missing"
    # progress through ComfyUI's progress API, with a preview where the stage has one
    for node_type in ("ActionMeshTemporalDenoise", "ActionMeshDecodeDeformation", "ActionMeshImageTo3DAnchor"):
        assert ("progress", _node_id(prompt, node_type)) in events, node_type
    for node_type in ("ActionMeshPrepareFrames", "ActionMeshImageTo3DAnchor", "ActionMeshRenderPreview"):
        assert ("preview", _node_id(prompt, node_type)) in events, (node_type, sorted(set(events)))


@pytest.mark.browser
def test_video_mesh_to_4d_gives_the_cli_result(comfy, page, tmp_path):
    result = _equivalent_run(comfy, page, "video_mesh_to_4d", tmp_path).result
    import trimesh

    # the user's mesh is animated: same vertex count as the capsule we gave (vertex order kept)
    capsule = trimesh.load(str(comfy.home / "input" / MESH), force="mesh", process=False)
    assert result["vertices"] == len(capsule.vertices)


@pytest.mark.browser
def test_pack_models_are_managed_by_comfyui(comfy, video_to_4d_run):
    """After the run ComfyUI lists our models as loaded (its memory manager holds them); /free evicts them.
    (Later runs of other graphs drop the loaders' outputs from ComfyUI's cache, and their models with them.)"""
    assert video_to_4d_run.entry["status"]["status_str"] == "success"
    assert PACK_MODEL_CLASSES <= video_to_4d_run.loaded, video_to_4d_run.loaded
    comfy.post("/free", {"unload_models": True, "free_memory": True})
    deadline = time.time() + 60
    while time.time() < deadline and {m["class"] for m in comfy.loaded_models()} & PACK_MODEL_CLASSES:
        time.sleep(0.5)
    assert not {m["class"] for m in comfy.loaded_models()} & PACK_MODEL_CLASSES


@pytest.mark.browser
def test_interrupt_stops_cleanly_without_a_partial_file(comfy, page, video_to_4d_run):
    _load(page, _workflow("video_to_4d.json"))
    # a long stage I (many steps, a new seed so it is not cached); stage 0 and the loaders are cached or fast
    prompt = _shrink(_converted(page), ActionMeshTemporalDenoise={"steps": 500, "seed": 12345})
    before = _outputs(comfy)
    prompt_id = comfy.queue_prompt(prompt)
    deadline = time.time() + 300
    during = set()
    while time.time() < deadline:  # wait until stage I holds the denoiser (ComfyUI loaded it)
        history = comfy.get(f"/history/{prompt_id}")
        assert prompt_id not in history, f"the run ended before it could be interrupted: {history}"[:4000]
        running = comfy.get("/queue")["queue_running"]
        during = {m["class"] for m in comfy.loaded_models()}
        if running and "TemporalDenoiser" in during:
            break
        time.sleep(0.3)
    assert "TemporalDenoiser" in during, "the denoiser never showed up in ComfyUI's loaded-model list during the run"
    time.sleep(2.0)
    comfy.post("/interrupt", {})
    stopped = time.time()
    entry = comfy.wait_history(prompt_id, timeout=300)
    print(f"interrupt: stopped {time.time() - stopped:.1f} s after POST /interrupt")
    assert entry["status"]["status_str"] == "error"
    kinds = [message[0] for message in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_error" not in kinds, kinds
    interrupted = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_interrupted")
    assert _node_id(prompt, "ActionMeshExportGLB") not in interrupted["executed"]
    # nodes that finished before the interrupt may have saved their files (POST /free emptied ComfyUI's cache,
    # so stage 0 ran again and saved its anchor): each must be complete; the interrupted export wrote nothing
    new_files = _outputs(comfy) - before
    assert not any(f.startswith("actionmesh/video_to_4d_") for f in new_files), new_files
    import trimesh

    for name in new_files:
        assert name.endswith(".glb"), new_files
        assert len(trimesh.load(str(comfy.home / "output" / name), force="mesh").faces) > 0
    leftovers = [p for p in (comfy.home / "output").rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    assert comfy.get("/queue")["queue_running"] == []


MISSING_MODELS_JS = """async (waitMs) => {
    // the frontend's missing-models store (pinia, id 'missingModel'): what its panel lists, once it has settled
    // (candidates are added first and the installed ones dropped after the model lists are fetched)
    const store = window.app.extensionManager._p._s.get('missingModel');
    const read = () => (store.missingModelCandidates || []).map((c) => ({name: c.name, url: c.url || null,
                                                                         directory: c.directory || null}));
    for (let i = 0; i < waitMs / 200 && !read().some((c) => c.url); i++)
        await new Promise((resolve) => setTimeout(resolve, 200));
    let last = JSON.stringify(read()), stable = 0;
    for (let i = 0; i < waitMs / 250 && stable < 8; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const now = JSON.stringify(read());
        stable = now === last ? stable + 1 : 0;
        last = now;
    }
    return read();
}"""
PACK_DIRECTORIES = ("actionmesh", "triposg", "dinov2")


@pytest.mark.browser
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_missing_models_panel_lists_every_model(path, comfy, browser):
    """Without the weights, loading a workflow lists every model file it needs (ours and the core ones: Wan 2.1,
    UMT5, CLIP vision, SDXL, Hunyuan3D-2) with its download link."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    models = comfy.home / "models"
    links = [models / link for link in comfy_host.MODEL_LINKS.values()]
    links += [models / m["directory"] / m["name"] for m in workflow["models"]
              if m["directory"] not in PACK_DIRECTORIES]  # core stand-ins, where the chained tests made them
    removed = {link: link.readlink() for link in links if link.is_symlink()}
    for link in removed:
        link.unlink()
    page = _open_page(browser, comfy)
    try:
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        # the panel also lists the models of the frontend's default graph, which the new page shows first
        shipped = [m for path in WORKFLOWS for m in json.loads(path.read_text(encoding="utf-8"))["models"]]
        listed = [m for m in page.evaluate(MISSING_MODELS_JS, 30_000) if m in shipped]
        assert len([m for m in workflow["models"] if m["directory"] in PACK_DIRECTORIES]) >= 3
        assert sorted(listed, key=lambda m: m["name"]) == sorted(workflow["models"], key=lambda m: m["name"])
    finally:
        page.close()
        for link, target in removed.items():
            link.symlink_to(target, target_is_directory=target.is_dir())


# ---- runs after the loaded-model and interrupt checks (they read the state the video_to_4d run left)


@pytest.mark.browser
def test_attention_chain_graph_gives_the_cli_result(comfy, page, tmp_path):
    assert ("progress", "900") in _equivalent_run(comfy, page, "attention_chain", tmp_path).events


@pytest.mark.browser
@pytest.mark.parametrize("path", RUNNABLE_OLD, ids=lambda p: p.stem)
def test_workflows_of_earlier_versions_run(path, comfy, page):
    """The video workflows of earlier versions run as they were saved (small settings, the test clip/mesh)."""
    run = _run_workflow(comfy, page, json.loads(path.read_text(encoding="utf-8")))
    _assert_success_with_glb(comfy, run.entry, run.new_files, run.prompt)
    print(f"{path.stem}: {run.seconds:.1f} s")


# --------------------------------------------------------------------------- chained workflows (core models)

# The chained workflows at CPU size, through node inputs only (../shared/hosts/coremodels/README.md): 2 sampler
# steps, Wan at 64x64 with its 33 frames kept (-> Prepare Frames' stride 2 -> 16 frames, as shipped), SDXL at
# 64x64, Hunyuan3D latent 256 / octree 32, the pack's small settings except the frame selection.
CHAIN_SMALL = {**{kind: values for kind, values in SMALL.items()
                  if kind not in ("ActionMeshLoadFrames", "ActionMeshPrepareFrames")},
               "ActionMeshLoadFrames": {"source": FRAMES},
               "ActionMeshPrepareFrames": {"size": 128},
               "WanImageToVideo": {"width": 64, "height": 64},
               "KSampler": {"steps": 2},
               "EmptyLatentImage": {"width": 64, "height": 64},
               "EmptyLatentHunyuan3Dv2": {"resolution": 256},
               "VAEDecodeHunyuan3D": {"octree_resolution": 32}}
WAN = ("image_to_video_to_4d.json", "text_to_image_to_video_to_4d.json", "mesh_prompt_to_4d.json")
# in this order: the Wan ones one after the other, so each reuses the previous one's models and negative prompt
CHAINED = ("backbone_swap_hunyuan3d.json", "backbone_swap_load3d.json") + WAN
# Peak resident memory of the server through one Wan workflow with the stand-ins (UMT5-XXL is built at its real
# size, 5.7 B parameters: ../shared/hosts/coremodels/README.md measures 13-15.3 GB): the Wan runs need the part of
# it the server does not hold yet, plus a margin, free on the machine
WAN_PEAK_GB = 16.0
WAN_MARGIN_GB = 1.0
WAN_SHARED = ("UNETLoader", "ModelSamplingSD3", "CLIPLoader", "VAELoader", "CLIPVisionLoader")


@pytest.fixture(scope="session")
def core_models(comfy):
    """The core models' stand-ins, linked into the server's ``models/`` (made once, ~10 s)."""
    source = comfy_host.comfyui_source()
    script = comfy_host.coremodels_script(source)
    need(script is not None, "no make_core_tiny_weights.py: set ACTIONMESH_COREMODELS_DIR or put it at "
                             "../shared/hosts/coremodels")
    return comfy_host.make_core_models(script, comfy.home, comfy_host.placeholders_dir(source))


@pytest.fixture(scope="session")
def chain_report(request, shots_dir):
    """Rows of the chained-workflow table; printed at the end of the session and saved as chained_workflows.md."""
    rows = {}
    yield rows
    if not rows:
        return
    lines = ["| workflow | nodes executed | frames through the chain | GLB morph targets | time | peak memory |",
             "|---|---|---|---|---|---|"] + [rows[name] for name in CHAINED if name in rows]
    (shots_dir / "chained_workflows.md").write_text("\n".join(lines) + "\n")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in ["chained workflows in the real ComfyUI (server's peak resident memory):"] + lines:
            reporter.write_line(line)


def _need_memory_for_wan(comfy) -> None:
    """Run the Wan 2.1 workflows only with the memory they need free; say why not (a failure in CI)."""
    held = comfy_host.tree_rss(comfy.process.pid) / 2 ** 30
    needed = max(WAN_PEAK_GB - held, 0.0) + WAN_MARGIN_GB
    available = comfy_host.available_memory_gb()
    if available >= needed:
        return
    reason = (f"the Wan 2.1 workflows need about {needed:.1f} GB of free memory (UMT5-XXL at full size; the server "
              f"holds {held:.1f} GB and peaks near {WAN_PEAK_GB:.0f} GB) but the machine has {available:.1f} GB "
              f"available")
    if comfy_host.IN_CI:
        pytest.fail(f"CI must run the chained Wan 2.1 workflows, but {reason}")
    pytest.skip(reason + " (skipped outside CI; free memory or run them alone)")


def _saved(comfy, entry: dict, node_id: str, key: str) -> list:
    """Paths of the files a node reported in its UI output (``key``: images / 3d)."""
    folders = {"output": comfy.home / "output", "temp": comfy.home / "temp"}
    return [folders[f["type"]] / f["subfolder"] / f["filename"] for f in entry["outputs"].get(node_id, {}).get(key, [])]


def _fed_by(prompt: dict, class_type: str, source: str) -> str:
    """The node of ``class_type`` whose first linked input comes from node ``source``."""
    return next(i for i, n in prompt.items() if n["class_type"] == class_type and any(
        isinstance(v, list) and str(v[0]) == source for v in n["inputs"].values()))


def _downstream(prompt: dict, start: str) -> set:
    """``start`` and every node of the API prompt that depends on it."""
    found, grown = {start}, True
    while grown:
        grown = False
        for node_id, node in prompt.items():
            if node_id not in found and any(isinstance(v, list) and len(v) == 2 and str(v[0]) in found
                                            for v in node["inputs"].values()):
                found.add(node_id)
                grown = True
    return found


# core Preview Images the test adds to count frames (one file per frame): on the decoded Wan video and on Render
# Preview's images. The workflows save both as animated WEBPs, which store identical neighbouring frames as one (the
# stand-in VAE draws the same picture in every frame; a tiny-weight animation may stand still for a frame).
VIDEO_OBSERVER, PREVIEW_OBSERVER = "actionmesh_test_video", "actionmesh_test_preview"
OBSERVERS = (VIDEO_OBSERVER, PREVIEW_OBSERVER)


def _observe_the_frames(prompt: dict) -> None:
    def observe(node_id: str, source: list) -> None:
        prompt[node_id] = {"class_type": "PreviewImage", "inputs": {"images": source}, "_meta": {"title": "test"}}

    if any(n["class_type"] == "WanImageToVideo" for n in prompt.values()):
        observe(VIDEO_OBSERVER, prompt[_node_id(prompt, "ActionMeshPrepareFrames")]["inputs"]["images"])
    render = next(i for i, n in prompt.items() if n["class_type"] == "ActionMeshRenderPreview"
                  and "animation" in n["inputs"])
    observe(PREVIEW_OBSERVER, [render, 0])


_WAN_RAN = []  # the Wan workflows run so far in this session (each later one reuses the first's models)


@pytest.mark.browser
@pytest.mark.parametrize("name", CHAINED, ids=lambda n: n.removesuffix(".json"))
def test_chained_workflow_runs_as_shipped(name, comfy, page, core_models, chain_report):
    """The workflow from the real frontend, with the core models' stand-ins, shrunk only through node inputs: every
    node runs (or comes from ComfyUI's cache of an earlier identical node), the frames go through the chain as
    shipped (video -> stride -> prepared frames -> one morph target each, at the video's rate), and the GLB animates
    the anchor's vertices."""
    if name in WAN:
        _need_memory_for_wan(comfy)
    run = _run_workflow(comfy, page, name, small=CHAIN_SMALL, widgets={"Load3DAdvanced": {0: MESH}},
                        observe=_observe_the_frames)
    entry, prompt = run.entry, run.prompt
    glb = _assert_success_with_glb(comfy, entry, run.new_files, prompt)
    # every node of the workflow executed: started now, or taken from ComfyUI's cache
    executed, cached = set(run.executed), set(run.cached)
    assert not executed & cached and executed | cached == set(prompt), (sorted(set(prompt) - executed - cached))
    active = {str(n["id"]) for n in _workflow(name)["nodes"] if n["type"] != "Note" and n["mode"] == 0}
    assert set(prompt) - set(OBSERVERS) == active
    if name in WAN and _WAN_RAN:  # models and the negative prompt's encoding are reused from the previous Wan run
        shared = {i for i, n in prompt.items() if n["class_type"] in WAN_SHARED}
        wan = _node_id(prompt, "WanImageToVideo")
        shared.add(str(prompt[wan]["inputs"]["negative"][0]))
        assert shared <= cached, f"re-executed although unchanged: {sorted(shared - cached)}"

    # frames through the chain
    prepare = _node_id(prompt, "ActionMeshPrepareFrames")
    stride, limit = prompt[prepare]["inputs"]["frame_stride"], prompt[prepare]["inputs"]["max_frames"]
    prepared = len(_saved(comfy, entry, _fed_by(prompt, "PreviewImage", prepare), "images"))
    if name in WAN:  # the decoded video: Wan's frame count, and the workflow's own WEBP of it
        decode = str(prompt[prepare]["inputs"]["images"][0])
        video = len(_saved(comfy, entry, VIDEO_OBSERVER, "images"))
        assert video == prompt[_node_id(prompt, "WanImageToVideo")]["inputs"]["length"] == 33
        assert len(_saved(comfy, entry, _fed_by(prompt, "SaveAnimatedWEBP", decode), "images")) == 1
        fps = prompt[prepare]["inputs"]["fps"] / stride
        assert (stride, limit, prepared) == (2, 16, 16), "33 Wan frames -> every 2nd -> the 16 trained frames"
    else:  # a frame folder through Load Frames (its rate divided by both strides)
        load = prompt[_node_id(prompt, "ActionMeshLoadFrames")]["inputs"]
        video = len(list((comfy.home / "input" / FRAMES).iterdir()))
        fps = load["fps"] / load["stride"] / stride
        selected = len(range(load["start"], video, load["stride"] * stride))
        assert prepared == min(n for n in (selected, load["max_frames"], limit) if n) == video
    from actionmesh_core.io.glb import read_animated_glb
    import pygltflib

    gltf = pygltflib.GLTF2().load_binary(str(glb))
    targets = len(gltf.meshes[0].primitives[0].targets or [])
    animation = read_animated_glb(glb)
    assert targets == prepared == animation.num_frames, (targets, prepared, animation.num_frames)
    assert np.allclose(np.diff(animation.times), 1.0 / fps, atol=1e-4), (animation.times, fps)
    render = next(i for i, n in prompt.items() if n["class_type"] == "ActionMeshRenderPreview"
                  and "animation" in n["inputs"])
    preview = _saved(comfy, entry, _fed_by(prompt, "SaveAnimatedWEBP", render), "images")
    assert len(preview) == 1 and preview[0].suffix == ".webp" and preview[0].stat().st_size > 0
    assert len(_saved(comfy, entry, PREVIEW_OBSERVER, "images")) == prepared, "Render Preview's frames"

    # the anchor mesh stage 0 made (saved by Save GLB) or was given is the one animated: its vertices, in the GLB
    saved_anchor = [i for i, n in prompt.items() if n["class_type"] == "SaveGLB"]
    if saved_anchor:
        (anchor_file,) = _saved(comfy, entry, saved_anchor[0], "3d")
    else:
        anchor_file = comfy.home / "input" / MESH  # Load 3D's / Encode Reference Mesh's file
    import trimesh

    anchor = trimesh.load(str(anchor_file), force="mesh", process=False)
    assert animation.vertices.shape[1] == len(anchor.vertices) > 0, (animation.vertices.shape, len(anchor.vertices))
    if name in WAN:
        _WAN_RAN.append(name)
    slowest = sorted(run.node_seconds.items(), key=lambda item: -item[1])[:6]
    print(f"{name}: {run.seconds:.1f} s, slowest nodes " + ", ".join(f"{prompt[i]['class_type']} {t:.1f} s"
                                                                   for i, t in slowest))
    chain = (f"{video} video -> stride {stride} -> {prepared} prepared" if name in WAN
             else f"{video}-frame clip -> {prepared} prepared")
    ran, reused = len(executed & active), len(cached & active)
    chain_report[name] = (f"| {name.removesuffix('.json')} | {ran + reused} of {len(active)} ({ran} run, {reused} "
                          f"from cache) | {chain} -> {animation.num_frames} frames at {fps:g} fps | "
                          f"{targets} | {run.seconds:.0f} s | {run.peak_rss / 2 ** 30:.1f} GB |")


# --------------------------------------------------------------------------- caching


@pytest.mark.browser
def test_a_second_run_re_executes_only_what_changed(comfy, page):
    """Our nodes keep ComfyUI's cache working: the same workflow run again (loaded and converted again, as after a
    page reload) executes nothing; a changed widget re-executes that node and what depends on it; a mesh file or a
    frame saved again under the same name re-executes its node (Encode Reference Mesh / Load Frames fingerprints)
    and what depends on it, nothing else."""
    import shutil

    import trimesh

    frames = "frames/actionmesh_cache_test"
    mesh = "3d/actionmesh_cache_test.glb"
    inputs = comfy.home / "input"
    shutil.copytree(inputs / FRAMES, inputs / frames, dirs_exist_ok=True)
    shutil.copyfile(inputs / MESH, inputs / mesh)
    ours = {"ActionMeshLoadFrames": {"source": frames}, "ActionMeshEncodeReferenceMesh": {"mesh_file": mesh}}

    def run(**overrides):
        result = _run_workflow(comfy, page, "video_mesh_to_4d.json", **{**ours, **overrides})
        assert result.entry["status"]["status_str"] == "success", json.dumps(result.entry["status"])[:3000]
        assert set(result.executed) | set(result.cached) == set(result.prompt)
        return result

    first = run()
    prompt = first.prompt
    again = run()
    assert again.executed == [], [prompt[i]["class_type"] for i in again.executed]

    reseeded = run(ActionMeshTemporalDenoise={"seed": 1})
    assert set(reseeded.executed) == _downstream(prompt, _node_id(prompt, "ActionMeshTemporalDenoise"))

    run()  # back to seed 0: cached again
    trimesh.creation.capsule(height=1.2, radius=0.3, count=[10, 10]).export(str(inputs / mesh))
    remeshed = run()
    assert set(remeshed.executed) == _downstream(prompt, _node_id(prompt, "ActionMeshEncodeReferenceMesh")), \
        [prompt[i]["class_type"] for i in remeshed.executed]

    first_frame = sorted((inputs / frames).iterdir())[0]
    first_frame.write_bytes(first_frame.read_bytes())  # saved again: a new modification time
    os.utime(first_frame, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    reframed = run()
    assert set(reframed.executed) == _downstream(prompt, _node_id(prompt, "ActionMeshLoadFrames")), \
        [prompt[i]["class_type"] for i in reframed.executed]
    print(f"caching: first run {len(first.executed)} nodes {first.seconds:.1f} s; identical run 0 nodes "
          f"{again.seconds:.1f} s; new seed {len(reseeded.executed)}, new mesh {len(remeshed.executed)}, "
          f"new frame {len(reframed.executed)} of {len(prompt)} nodes")


# --------------------------------------------------------------------------- template browser


@pytest.mark.browser
def test_template_browser_lists_every_workflow_with_its_thumbnail(comfy, page, request):
    """ComfyUI lists example_workflows/ in its template browser under the pack's folder name and serves each workflow
    and its thumbnail where the frontend asks for them (``/api/workflow_templates/<pack>/<name>.json`` / ``.jpg``)."""
    if UPDATE_THUMBNAILS:
        request.getfixturevalue("core_models")  # every model in place: no missing-model marks in the pictures
        page.evaluate("async () => { await window.app.refreshComboInNodes(); }")  # the frontend's file lists
        for path in WORKFLOWS:
            _thumbnail(page, json.loads(path.read_text(encoding="utf-8")), path.with_suffix(".jpg"))
    listed = comfy.get("/workflow_templates")
    packs = [name for name, workflows in listed.items() if set(workflows) & {p.stem for p in WORKFLOWS}]
    assert len(packs) == 1 and sorted(listed[packs[0]]) == sorted(p.stem for p in WORKFLOWS), listed
    for path in WORKFLOWS:
        served = comfy.get(f"/api/workflow_templates/{packs[0]}/{path.name}")
        assert served == json.loads(path.read_text(encoding="utf-8"))
    sizes = page.evaluate("""async ([pack, names]) => Promise.all(names.map((name) => new Promise((resolve) => {
        const image = new Image();
        image.onload = () => resolve([name, image.naturalWidth, image.naturalHeight]);
        image.onerror = () => resolve([name, 0, 0]);
        image.src = window.app.api.apiURL(`/workflow_templates/${pack}/${name}.jpg`);  // the frontend's thumbnail URL
    })))""", [packs[0], [p.stem for p in WORKFLOWS]])
    assert all(width > 0 and height > 0 for _, width, height in sizes), sizes
