"""The test suite's own rules, read from the sources, so that a new test cannot break them unnoticed.

- every test file lives in ``tests/<kind>/`` (unit, parity, integration, host; the kind is also its marker), file
  names are unique, and every marker is registered in ``pytest.ini`` with a description (``--strict-markers``);
- a test that needs an optional heavy tool carries its marker, so ``-m "not (bpy or ray or host or browser or
  cuda)"`` leaves out exactly those: Blender (``bpy``), Ray (``ray``), the real ComfyUI (``host``), chromium +
  playwright (``browser``), a GPU (``cuda``). What counts as needing one is listed in ``NEEDS`` (imports of the
  tool or of its test client, its CLI options) and in ``_needs_cuda`` (a skip when CUDA is missing); a fixture
  that needs a tool passes the need on to the tests that use it;
- no test imports a benchmark script: ``import``, ``importlib``, ``runpy``, ``exec`` or a ``sys.path`` entry that
  reaches ``benchmarks/`` (running a script as a subprocess is how tests check one; see
  ``tests/integration/test_benchmark_scripts.py``).

Each check is also run on small made-up modules, with and without the mistake it looks for.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import data_dirs
from conftest import KINDS

TESTS = data_dirs.TESTS_DIR
THIS = Path(__file__).resolve()  # spells out the mistakes it looks for: left out of the scans of tests/
BENCHMARKS = data_dirs.REPO_ROOT / "benchmarks"
OPTIONAL = ("bpy", "ray", "host", "browser", "cuda")

# what makes a test need an optional tool (searched in code, not in docstrings)
NEEDS = {
    "bpy": re.compile(r"\bimport bpy\b|\bblender_client\b|\brun_blender\b|\bexport_via_blender\b"
                      r"|[\"']--format[\"'],\s*[\"'](?:fbx|fbx-skinned|abc)[\"']"
                      r"|export_animation\([^)]*[\"'](?:fbx|fbx-skinned|abc)[\"']"),
    "ray": re.compile(r"\bimport ray\b|importorskip\(\s*[\"']ray[\"']|engine\s*=\s*[\"']ray[\"']"
                      r"|[\"']--engine[\"'],\s*[\"']ray[\"']"),
    "host": re.compile(r"\bcomfy_host\b|\bComfyServer\b"),
    "browser": re.compile(r"\bplaywright\b|\bchromium_path\b"),
}
_CUDA_SKIP = re.compile(r"cuda\.is_available\(\)\s*:?\s*\n\s*pytest\.skip\(")


def _test_files() -> list:
    return sorted(p for p in TESTS.rglob("test_*.py") if "data" not in p.relative_to(TESTS).parts)


# --------------------------------------------------------------------------- layout and registry


def test_every_test_file_lives_in_a_kind_folder_and_carries_its_kind(request):
    files = _test_files()
    misplaced = [str(p.relative_to(TESTS)) for p in files
                 if len(p.relative_to(TESTS).parts) != 2 or p.parent.name not in KINDS]
    assert not misplaced, f"test files outside tests/<{'|'.join(KINDS)}>/: {misplaced}"
    twice = [name for name, n in Counter(p.name for p in files).items() if n > 1]
    assert not twice, f"test file names must be unique across tests/ (prepend import mode): {twice}"
    packages = [str(p.relative_to(TESTS)) for p in TESTS.rglob("__init__.py")]
    assert not packages, f"no __init__.py under tests/ (the helpers are imported from tests/ on sys.path): {packages}"
    assert {p.parent.name for p in files} == set(KINDS)
    assert request.node.get_closest_marker("unit") is not None  # the folder's marker, set by conftest.py
    assert all(request.node.get_closest_marker(kind) is None for kind in KINDS if kind != "unit")


def test_every_marker_is_registered_with_a_description(pytestconfig):
    registered = {}
    for line in pytestconfig.getini("markers"):
        name, _, description = line.partition(":")
        registered[name.strip().split("(")[0]] = description.strip()
    for marker in set(KINDS) | set(OPTIONAL):
        assert registered.get(marker), f"marker {marker!r} missing from pytest.ini or without a description"
    assert "--strict-markers" in pytestconfig.getini("addopts")


# --------------------------------------------------------------------------- markers of optional tools


def _marks(node) -> set:
    """Names ``X`` of every ``pytest.mark.X`` inside ``node``."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark" \
                and isinstance(sub.value.value, ast.Name) and sub.value.value.id == "pytest":
            out.add(sub.attr)
    return out


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _code(lines: list, node) -> str:
    """The source lines of a statement without its docstring (a function or class: its decorators and body)."""
    def span(n):
        return lines[n.lineno - 1:n.end_lineno]

    parts = [line for d in getattr(node, "decorator_list", []) for line in span(d)]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        body = node.body[1:] if node.body and _is_docstring(node.body[0]) else node.body
        if body:
            parts += lines[body[0].lineno - 1:node.end_lineno]
    elif not _is_docstring(node):
        parts += span(node)
    return "\n".join(parts)


def _needs(text: str) -> set:
    return {marker for marker, pattern in NEEDS.items() if pattern.search(text)}


def _is_fixture(fn) -> bool:
    return any("fixture" in (ast.unparse(d)) for d in fn.decorator_list)


def _needs_cuda(fn, lines: list, cuda_skips: set) -> bool:
    """Skipped when CUDA is missing: a ``skipif`` on ``cuda.is_available()`` (or a name bound to one) or a
    ``pytest.skip`` right after testing it."""
    for d in fn.decorator_list:
        text = ast.unparse(d)
        if ("skipif" in text and "cuda.is_available" in text) or text in cuda_skips:
            return True
    return bool(_CUDA_SKIP.search(_code(lines, fn)))


def missing_markers(source: str, where: str = "<module>") -> list:
    """``where:line: test needs marker X`` for every test of the module source that needs an optional tool and
    does not carry its marker (module ``pytestmark``, the test's decorators, or a ``pytest.param`` mark)."""
    tree, lines = ast.parse(source), source.splitlines()
    module_marks, anywhere = set(), _marks(tree)
    functions, module_needs, loose_needs, cuda_skips = {}, set(), set(), set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            module_marks |= _marks(node.value)
        if isinstance(node, ast.Assign) and "skipif" in ast.unparse(node.value) \
                and "cuda.is_available" in ast.unparse(node.value):
            cuda_skips |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = node
        elif any(isinstance(sub, (ast.Import, ast.ImportFrom)) for sub in ast.walk(node)):
            module_needs |= _needs(_code(lines, node))  # a module-level import: every test of the file needs it
        else:
            loose_needs |= _needs(_code(lines, node))  # a constant or a class: some test of the file needs it
    fixtures = {name: fn for name, fn in functions.items() if _is_fixture(fn)}
    found = {}

    def needs_of(fn, seen=()):
        if fn.name not in found:
            need = _needs(_code(lines, fn))
            for arg in fn.args.args:
                if arg.arg in fixtures and arg.arg not in seen and arg.arg != fn.name:
                    need |= needs_of(fixtures[arg.arg], seen + (fn.name,))
            found[fn.name] = need
        return found[fn.name]

    problems = []
    for name, fn in functions.items():
        if not name.startswith("test_") or name in fixtures:
            continue
        carried = module_marks | _marks(ast.Module(body=list(fn.decorator_list), type_ignores=[]))
        need = needs_of(fn) | module_needs
        if _needs_cuda(fn, lines, cuda_skips):
            need.add("cuda")
        problems += [f"{where}:{fn.lineno}: {name} needs marker {m!r}" for m in sorted(need - carried)]
    for helper in (fn for name, fn in functions.items() if not name.startswith("test_") and name not in fixtures):
        loose_needs |= _needs(_code(lines, helper))
    problems += [f"{where}: code of the module needs marker {m!r}, carried by none of its tests"
                 for m in sorted(loose_needs - anywhere)]
    return problems


def test_every_test_that_needs_an_optional_tool_carries_its_marker():
    problems = []
    for path in (p for p in _test_files() if p.resolve() != THIS):
        problems += missing_markers(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS)))
    assert not problems, "\n".join(problems)


MARKER_CASES = [
    # (module source, the markers it must be told to add)
    ("import ray\n\ndef test_a():\n    pass\n", {"ray"}),
    ("import pytest\nimport ray\npytestmark = pytest.mark.ray\n\ndef test_a():\n    pass\n", set()),
    ("import pytest\n\n@pytest.fixture\ndef browser():\n    from playwright.sync_api import sync_playwright\n\n"
     "@pytest.fixture\ndef page(browser):\n    return 1\n\n"
     "def test_a(page):\n    pass\n\n@pytest.mark.browser\ndef test_b(page):\n    pass\n\ndef test_c():\n    pass\n",
     {"browser"}),
    ("import pytest\nimport torch\n\n@pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n"
     "def test_a():\n    pass\n", {"cuda"}),
    ("import pytest\nimport torch\n\ndef test_a():\n    if not torch.cuda.is_available():\n"
     "        pytest.skip('no GPU')\n", {"cuda"}),
    ("import pytest\nimport torch\nneeds = pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n\n"
     "@pytest.mark.cuda\n@needs\ndef test_a():\n    pass\n", set()),
    ("import pytest\nPOINTS = {'export': ['--format', 'fbx']}\n\n@pytest.mark.parametrize('p', list(POINTS))\n"
     "def test_a(p):\n    pass\n", {"bpy"}),
    ("import pytest\nPOINTS = {'export': ['--format', 'fbx']}\n\n"
     "@pytest.mark.parametrize('p', [pytest.param('export', marks=pytest.mark.bpy)])\ndef test_a(p):\n    pass\n",
     set()),
    ("def test_a(tmp_path):\n    from blender_client import require_blender\n    require_blender()\n", {"bpy"}),
    ("def test_a():\n    run_batch([], engine='ray')\n", {"ray"}),
    ("import comfy_host\n\ndef test_a():\n    pass\n", {"host"}),
    ('"""Drives chromium with playwright and Blender (import bpy) in words only."""\n\ndef test_a():\n'
     '    """Mentions comfy_host in a docstring."""\n', set()),
]


def test_the_marker_check_finds_what_it_looks_for():
    for source, expected in MARKER_CASES:
        said = missing_markers(source)
        assert {re.search(r"marker '(\w+)'", line).group(1) for line in said} == expected, (source, said)


# --------------------------------------------------------------------------- no benchmark imports

_LOADERS = {"import_module", "spec_from_file_location", "run_path", "run_module", "exec", "exec_module",
            "SourceFileLoader", "__import__", "load_source", "find_spec"}


def benchmark_imports(source: str, names: set, where: str = "<module>") -> list:
    """``where:line: ...`` for every way the module source imports a benchmark script (``names``: the module names
    of ``benchmarks/*.py`` and ``benchmarks`` itself)."""
    tree = ast.parse(source)
    said = re.compile(r"(?:^|[\s;])(?:import|from)\s+(" + "|".join(map(re.escape, sorted(names))) + r")\b", re.M)

    def mentions(node) -> bool:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                text = sub.value.replace("\\", "/")
                if "benchmarks" in text or any(text in (n, f"{n}.py") or text.endswith(f"/{n}.py") for n in names):
                    return True
        return False

    problems = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            problems += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in names:
            problems.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            target = ast.unparse(node.func)
            if func in _LOADERS and mentions(node):
                problems.append(f"{line}: {target}(...) of a benchmark")
            elif target in ("sys.path.insert", "sys.path.append", "sys.path.extend") and mentions(node):
                problems.append(f"{line}: {target}(...) adds benchmarks/ to the import path")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and said.search(node.value):
            problems.append(f"{line}: code in a string imports {said.search(node.value).group(1)}")
    return problems


def _benchmark_names() -> set:
    return {p.stem for p in BENCHMARKS.glob("*.py")} | {"benchmarks"}


def test_no_test_imports_a_benchmark_script():
    names = _benchmark_names()
    assert {"bench_pipeline", "bench_meshing", "_baseline_loader"} <= names
    problems = []
    for path in sorted(p for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts and p != THIS):
        problems += benchmark_imports(path.read_text(encoding="utf-8"), names, str(path.relative_to(TESTS)))
    assert not problems, "tests run benchmark scripts as subprocesses, never import them:\n" + "\n".join(problems)


BENCHMARK_CASES = [
    ("import bench_pipeline\n", True),
    ("from benchmarks.bench_meshing import run\n", True),
    ("import importlib.util\nspec = importlib.util.spec_from_file_location('b', ROOT / 'benchmarks' / 'bench_pipeline.py')\n",
     True),
    ("import importlib\nbp = importlib.import_module('bench_pipeline')\n", True),
    ("import runpy\nrunpy.run_path(str(ROOT / 'benchmarks' / 'bench_meshing.py'))\n", True),
    ("import sys\nsys.path.insert(0, str(ROOT / 'benchmarks'))\n", True),
    ("exec(open('benchmarks/gpu_check.py').read())\n", True),
    ("code = 'import sys; sys.path.insert(0, BENCH); import _baseline_loader as b'\n", True),
    ("import subprocess, sys\nsubprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_pipeline.py'), '--tiny'])\n",
     False),
    ("import bench_marks_of_mine\nfrom actionmesh_core import perf_model\n", False),
]


def test_the_benchmark_import_check_finds_what_it_looks_for():
    names = _benchmark_names()
    for source, bad in BENCHMARK_CASES:
        assert bool(benchmark_imports(source, names)) == bad, (source, benchmark_imports(source, names))
