"""Write the pack's model download metadata (and current socket types / widget defaults) into workflows/*.json.

Run ``python3 tests/workflow_models.py`` after a loader's released entry or a node's inputs change;
``tests/test_workflows.py`` fails until the shipped workflows carry what this writes:

* every ActionMesh/TripoSG/DINOv2 loader node: ``properties.models`` = ``loader_nodes.download_metadata``;
* the workflow's top-level ``models``: the union of those records (the frontend checks these against
  ``GET /experiment/models/<directory>`` and lists each missing file with its download link);
* Encode Reference Mesh: ``model_3d`` socket type = the node's ``FILE_3D`` union; ``num_tokens`` appended
  to ``widgets_values`` (its default) where a workflow predates it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import load_pack  # noqa: E402


def apply(workflow: dict, pack) -> dict:
    """Add the metadata to one UI-format workflow (in place) and return it."""
    loaders = sys.modules[pack.__name__ + ".nodes.loader_nodes"]
    records = []
    for node in workflow["nodes"]:
        if node["type"] in loaders.RELEASED:
            entry = (node.get("widgets_values") or [""])[0]
            models = loaders.download_metadata(node["type"], entry)
            node.setdefault("properties", {})
            if models:
                node["properties"]["models"] = models
                records += [m for m in models if m not in records]
            else:
                node["properties"].pop("models", None)
        if node["type"] == "ActionMeshEncodeReferenceMesh":
            declared = pack.NODES[node["type"]].INPUT_TYPES()
            for slot in node.get("inputs", []):
                if slot["name"] == "model_3d":
                    slot["type"] = declared["optional"]["model_3d"][0]
            values = node.setdefault("widgets_values", [])
            if len(values) == 6:  # frame_index, mesh_file, mesh_index, sample_posterior, seed, control
                values.append(declared["required"]["num_tokens"][1]["default"])
    others = [m for m in workflow.get("models", []) if m.get("directory") not in set(loaders.RELEASED_DIRS)]
    if records or others:
        workflow["models"] = others + records
    return workflow


def main() -> None:
    pack = load_pack()
    for path in sorted((ROOT / "workflows").glob("*.json")):
        before = path.read_text()
        after = json.dumps(apply(json.loads(before), pack), indent=2) + "\n"
        if after != before:
            path.write_text(after)
            print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
