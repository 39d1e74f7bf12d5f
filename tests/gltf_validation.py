"""Khronos glTF validator (npm ``gltf-validator``) for tests: installed once outside the repository."""
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

VALIDATOR_DIR = Path(os.environ.get("GLTF_VALIDATOR_DIR", Path.home() / ".cache" / "actionmesh" / "gltf-validator"))


@functools.lru_cache(maxsize=1)
def _validator():
    """Path of the `gltf-validator` npm package (installed on first use), or (None, reason).

    Looks in $GLTF_VALIDATOR_DIR (default ~/.cache/actionmesh/gltf-validator, outside the
    repository); installs it there with npm unless GLTF_VALIDATOR_AUTO_INSTALL=0.
    """
    module = VALIDATOR_DIR / "node_modules" / "gltf-validator"
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return None, "node is not installed"
    if not module.is_dir():
        if os.environ.get("GLTF_VALIDATOR_AUTO_INSTALL", "1") == "0":
            return None, f"not installed in {VALIDATOR_DIR} and GLTF_VALIDATOR_AUTO_INSTALL=0"
        if npm is None:
            return None, "npm is not installed"
        try:
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--fetch-retries=0", "--fetch-timeout=20000",
                 "--prefix", str(VALIDATOR_DIR), "gltf-validator"],
                capture_output=True, text=True, timeout=90,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"npm install gltf-validator failed: {exc}"
        if proc.returncode != 0 or not module.is_dir():
            return None, f"npm install gltf-validator failed: {proc.stderr.strip()[-300:]}"
    return module, None


VALIDATE_JS = """
const fs = require('fs');
const validator = require(process.argv[2]);
const bytes = new Uint8Array(fs.readFileSync(process.argv[3]));
validator.validateBytes(bytes, {maxIssues: 50})
  .then((report) => { console.log(JSON.stringify(report.issues)); })
  .catch((err) => { console.error(String(err)); process.exit(2); });
"""



def validate_glb(path) -> dict:
    """Validate a GLB with the Khronos validator; returns its ``issues`` report.

    Skips the calling test (printing the reason) when the validator cannot be installed.
    """
    module, reason = _validator()
    if module is None:
        print(f"SKIP gltf-validator: {reason}")
        pytest.skip(f"Khronos gltf-validator unavailable: {reason}")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "validate.js"
        script.write_text(VALIDATE_JS)
        proc = subprocess.run(["node", str(script), str(module), str(path)], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
