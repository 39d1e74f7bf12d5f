"""A real ComfyUI (0.27) started headless on the CPU with this pack, for ``test_real_host.py``.

Where the host comes from:

* ComfyUI source: ``$ACTIONMESH_COMFYUI_DIR``, else ``../shared/hosts/comfyui`` beside the checkout
  (its README: how to install its requirements); the stand-ins for torchvision/torchaudio:
  ``$ACTIONMESH_COMFYUI_PLACEHOLDERS``, else ``placeholders/`` beside the ComfyUI folder;
* browser: Debian's ``chromium`` (``$ACTIONMESH_CHROMIUM``, else ``/usr/bin/chromium``) driven by the PyPI
  ``playwright`` package.

Outside CI a missing piece skips the tests with the reason; with ``CI=true`` it fails them.
The server runs from a copy of the source in a temporary folder, with the pack symlinked into
``custom_nodes/``, tiny random weights (``python -m actionmesh_core make-tiny-weights``) linked into
``models/`` as the README's Models section lays them out, and a test-only probe node that reports
ComfyUI's loaded-model list (``GET /actionmesh_test/loaded_models``).  It is stopped by its process id.

The chained workflows (Wan 2.1, SDXL, Hunyuan3D-2) load core models: ``make_core_models`` writes their tiny / sparse
stand-ins with ``make_core_tiny_weights.py`` (``$ACTIONMESH_COREMODELS_DIR``, else ``coremodels/`` beside the ComfyUI
folder) and links them into the copy's ``models/``.  ``Watcher`` follows a run on ComfyUI's websocket (which nodes
started, which came from its cache) and samples the server's memory meanwhile.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
# The tests run whenever a ComfyUI source is found (README test command and .ci/run); ACTIONMESH_REAL_HOST=0
# skips them outside CI (about 20 minutes on 2 busy cores, 15 of them the three Wan 2.1 workflows: one server start,
# seven workflows in a browser, ten runs).
OPTED_OUT = os.environ.get("ACTIONMESH_REAL_HOST", "") == "0" and not IN_CI
# top-level modules of ComfyUI's requirements that its start-up imports (README of the hosts folder)
HOST_MODULES = ("aiohttp", "yaml", "sqlalchemy", "alembic", "av", "einops", "torchsde", "psutil", "blake3",
                "comfyui_frontend_package", "comfy_kitchen", "comfy_aimdo", "simpleeval", "requests")
# tiny-weights folder -> link inside ComfyUI's models/ (README, "Models")
MODEL_LINKS = {"ActionMesh": "actionmesh/ActionMesh", "TripoSG": "triposg/TripoSG", "dinov2-large": "dinov2/dinov2-large"}

PROBE = '''"""Test-only probe (written by tests/comfy_host.py): ComfyUI's loaded-model list as JSON."""
import comfy.model_management as mm
import server
from aiohttp import web


@server.PromptServer.instance.routes.get("/actionmesh_test/loaded_models")
async def loaded_models(request):
    names = []
    for loaded in list(mm.current_loaded_models):
        patcher = loaded.model
        if patcher is not None:
            names.append({"class": type(patcher.model).__name__, "device": str(patcher.current_loaded_device())})
    return web.json_response(names)


NODE_CLASS_MAPPINGS = {}
'''


def need(condition, reason: str) -> None:
    """Skip (outside CI) or fail (``CI=true``) unless ``condition``."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run the real-host tests, but {reason}")
    pytest.skip(reason)


def comfyui_source() -> Optional[Path]:
    """The ComfyUI source folder, or None."""
    env = os.environ.get("ACTIONMESH_COMFYUI_DIR")
    candidates = [Path(env)] if env else [ROOT.parent / "shared" / "hosts" / "comfyui"]
    for candidate in candidates:
        if (candidate / "main.py").is_file() and (candidate / "comfy").is_dir():
            return candidate
    return None


def placeholders_dir(source: Path) -> Optional[Path]:
    env = os.environ.get("ACTIONMESH_COMFYUI_PLACEHOLDERS")
    path = Path(env) if env else source.parent / "placeholders"
    return path if path.is_dir() else None


def missing_host_modules() -> list:
    return [name for name in HOST_MODULES if importlib.util.find_spec(name) is None]


def chromium_path() -> Optional[str]:
    path = os.environ.get("ACTIONMESH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's child process: get SIGTERM when the test process dies (Linux), so a killed
    pytest never leaves a ComfyUI behind; the finalizer still stops it by pid in every normal case."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ComfyServer:
    """One ComfyUI process on a free local port (``start``/``stop``) and small JSON helpers."""

    def __init__(self, home: Path, placeholders: Optional[Path]):
        self.home = home  # the copied ComfyUI folder
        self.placeholders = placeholders
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.parent / "server.log"
        self.process: Optional[subprocess.Popen] = None
        # the tiny weights linked into models/ (README "Models"): the command line runs on the same files
        self.weights = (home / "models" / MODEL_LINKS["ActionMesh"]).resolve().parent

    # ----------------------------------------------------------------- process
    def start(self, timeout: float = 900.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONMESH_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.placeholders or ""), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch"],
            cwd=self.home, env=env, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=5)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(1.0)
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server by its process id (SIGTERM, then SIGKILL after 20 s)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ----------------------------------------------------------------- HTTP
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def post(self, path: str, payload: dict, timeout: float = 30):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')[:4000]}") from None
        try:
            return json.loads(body or b"null")
        except ValueError:
            return body.decode(errors="replace")

    def queue_prompt(self, prompt: dict, client_id: str = "actionmesh-tests") -> str:
        """Queue an API-format prompt; progress and previews go to the websocket client ``client_id``."""
        return self.post("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]

    def wait_history(self, prompt_id: str, timeout: float = 600.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_tail()}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{self.log_tail()}")

    def loaded_models(self) -> list:
        return self.get("/actionmesh_test/loaded_models")


def prepare_home(base: Path, source: Path) -> Path:
    """Copy ComfyUI into ``base/ComfyUI``, link the pack, tiny weights, the probe; return the ComfyUI folder."""
    home = base / "ComfyUI"
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "user", "output", "temp"))
    (home / "custom_nodes").mkdir(exist_ok=True)
    (home / "custom_nodes" / "ComfyUI-ActionMesh").symlink_to(ROOT, target_is_directory=True)
    (home / "custom_nodes" / "actionmesh_test_probe.py").write_text(PROBE)
    weights = Path(os.environ.get("ACTIONMESH_TINY_WEIGHTS_DIR") or base / "tiny_weights")  # reuse one if given
    if not (weights / "ActionMesh" / "denoiser" / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "actionmesh_core", "make-tiny-weights", str(weights)], cwd=ROOT,
                       check=True, capture_output=True, timeout=1200)
    for name, link in MODEL_LINKS.items():
        target = home / "models" / link
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(weights / name, target_is_directory=True)
    # a user who finished the first-run tour: no template browser over the canvas
    settings = home / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    # full node detail at any zoom, so a screenshot of a whole workflow shows its widgets
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "LiteGraph.Canvas.MinFontSizeForLOD": 0}))
    return home


# --------------------------------------------------------------------------- chained workflows


def coremodels_script(source: Path) -> Optional[Path]:
    """``make_core_tiny_weights.py`` (``$ACTIONMESH_COREMODELS_DIR``, else ``coremodels/`` beside ``source``), or None."""
    env = os.environ.get("ACTIONMESH_COREMODELS_DIR")
    path = (Path(env) if env else source.parent / "coremodels") / "make_core_tiny_weights.py"
    return path if path.is_file() else None


def make_core_models(script: Path, home: Path, placeholders: Optional[Path]) -> dict:
    """Write the core-model stand-ins beside ``home`` and link each into ``home/models/`` under the file name the
    shipped workflows select; returns {path inside models/: link}.  The script also writes a tokenizer into
    ``home/comfy/sd1_tokenizer`` (the copy, never the source).  Raises RuntimeError with the script's output."""
    target = home.parent / "core_models"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(placeholders or ""), os.environ.get(
        "PYTHONPATH", "")) if p))
    done = subprocess.run([sys.executable, str(script), str(home), "--models", str(target)], cwd=home, env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    links = {}
    for line in done.stdout.splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        for relative, info in record.items():
            if isinstance(info, dict) and "file" in info:
                link = home / "models" / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(info["file"])
                links[relative] = link
    return links


def available_memory_gb() -> float:
    """Memory the system can still give (``MemAvailable``), in GiB."""
    import psutil

    return psutil.virtual_memory().available / 2 ** 30


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, in bytes (0 once it is gone)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process] + process.children(recursive=True))
    except psutil.Error:
        return 0


class Watcher:
    """ComfyUI's websocket messages for one client id, and the server's peak resident memory, while it is open.

    ``with Watcher(server) as watch: server.queue_prompt(prompt, watch.client_id)``; then ``watch.executed(id)``
    (nodes that started, in order), ``watch.cached(id)`` (nodes ComfyUI took from its cache), ``watch.peak_rss``.
    """

    def __init__(self, server: ComfyServer, interval: float = 0.25):
        self.server, self.interval = server, interval
        self.client_id = f"actionmesh-tests-{os.getpid()}-{time.time_ns()}"
        self.messages: list = []
        self.peak_rss = 0
        self._stop, self._ready = threading.Event(), threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"no websocket connection to ComfyUI: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._listen())
        except BaseException as exc:  # reported by __enter__ / the assertions on the messages
            self._error = exc
            self._ready.set()

    async def _listen(self) -> None:
        import asyncio

        import aiohttp

        url = self.server.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, heartbeat=30, max_msg_size=0) as socket_:
                self._ready.set()
                while not self._stop.is_set():
                    self.peak_rss = max(self.peak_rss, tree_rss(self.server.process.pid))
                    try:
                        message = await socket_.receive(timeout=self.interval)
                    except asyncio.TimeoutError:
                        continue
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self.messages.append(dict(json.loads(message.data), received=time.time()))
                    elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break

    def wait_done(self, prompt_id: str, timeout: float = 60.0) -> None:
        """Wait for the run's last message (``executing`` with no node, sent once every node has finished): the
        history entry can be written before the websocket has delivered the last nodes' messages."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(data.get("node") is None for data in self._of("executing", prompt_id)):
                return
            if self._error is not None or not self._thread.is_alive():
                break
            time.sleep(0.1)
        raise TimeoutError(f"no end-of-run message for prompt {prompt_id} on the websocket ({self._error!r})")

    def _of(self, kind: str, prompt_id: str) -> list:
        return [m["data"] for m in list(self.messages)
                if m.get("type") == kind and m.get("data", {}).get("prompt_id") == prompt_id]

    def executed(self, prompt_id: str) -> list:
        """Node ids ComfyUI started for ``prompt_id`` (``executing`` messages), in order."""
        return [data["node"] for data in self._of("executing", prompt_id) if data.get("node") is not None]

    def node_seconds(self, prompt_id: str) -> dict:
        """Seconds from each node's start to the next node's start (the last one: to the end of the run)."""
        starts = [(m["data"].get("node"), m["received"]) for m in list(self.messages) if m.get("type") == "executing"
                  and m.get("data", {}).get("prompt_id") == prompt_id]
        return {node: round(nxt[1] - t, 2) for (node, t), nxt in zip(starts, starts[1:]) if node is not None}

    def cached(self, prompt_id: str) -> list:
        """Node ids ComfyUI served from its cache for ``prompt_id`` (``execution_cached``)."""
        return [node for data in self._of("execution_cached", prompt_id) for node in data.get("nodes", [])]
