"""The pack's frontend extensions import the frontend's modules by paths that resolve where ComfyUI serves them.

ComfyUI serves ``WEB_DIRECTORY`` (``web/``) at ``/extensions/<pack folder>/`` and the frontend's own modules at
``/scripts/``; a relative import one ``../`` short resolves to ``/extensions/scripts/app.js`` (a 404), and the
browser drops the whole extension silently (found in the real frontend). The real-host tests check the flag
it sets; this check needs no host.
"""
from __future__ import annotations

import re
from urllib.parse import urljoin

import data_dirs
ROOT = data_dirs.REPO_ROOT
FRONTEND_MODULES = {"/scripts/app.js", "/scripts/api.js", "/scripts/ui.js", "/scripts/utils.js",
                    "/scripts/widgets.js", "/scripts/domWidget.js"}


def test_relative_imports_resolve_to_the_frontend_scripts():
    scripts = sorted((ROOT / "web").rglob("*.js"))
    assert scripts, "the pack ships a web extension"
    imports = 0
    for script in scripts:
        served = "http://host/extensions/ComfyUI-ActionMesh/" + script.relative_to(ROOT / "web").as_posix()
        for spec in re.findall(r'^\s*import\s[^;]*?from\s+"([^"]+)"', script.read_text(), flags=re.M):
            if not spec.startswith("."):
                continue
            imports += 1
            target = urljoin(served, spec).removeprefix("http://host")
            local = ROOT / "web" / target.removeprefix("/extensions/ComfyUI-ActionMesh/")
            assert target in FRONTEND_MODULES or local.is_file(), f"{script.name}: {spec!r} resolves to {target}"
    assert imports
