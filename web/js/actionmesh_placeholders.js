// ActionMesh: flag placeholder inputs when a workflow loads, as the frontend flags a missing video upload.
// Encode Reference Mesh names its mesh file (e.g. the shipped placeholder "3d/my_mesh.glb"), Load Frames its
// frame folder or video (e.g. "frames/my_object"); when that entry is not in ComfyUI's input folder (and, for
// the mesh, no mesh / model_3d is connected), the node is marked with an error
// and a warning toast says what to do, instead of the user learning it on Run.
import { app } from "../../../scripts/app.js"; // served at /extensions/<pack>/js/

const PLACEHOLDER_INPUTS = {
  ActionMeshEncodeReferenceMesh: {
    widget: "mesh_file",
    linkedInstead: ["mesh", "model_3d"],
    hint: "put your mesh in ComfyUI/input/3d/ (or upload it with Load 3D) and choose it, or connect a MESH / model_3d",
  },
  ActionMeshLoadFrames: {
    widget: "source",
    linkedInstead: [],
    hint: "put a folder of frames (e.g. input/frames/my_object/) or a video in ComfyUI/input/ and choose it",
  },
};

export function findMissingPlaceholders(graph) {
  const found = [];
  for (const node of graph?._nodes ?? []) {
    const rule = PLACEHOLDER_INPUTS[node.comfyClass ?? node.type];
    if (!rule || node.mode === 2 || node.mode === 4) continue; // muted or bypassed
    if (rule.linkedInstead.some((name) => node.inputs?.find((slot) => slot.name === name)?.link != null)) continue;
    const widget = node.widgets?.find((w) => w.name === rule.widget);
    if (!widget) continue;
    const values = widget.options?.values ?? [];
    if (widget.value === "none" || !values.includes(widget.value)) {
      found.push({ node, widget: widget.name, value: widget.value, hint: rule.hint });
    }
  }
  return found;
}

app.registerExtension({
  name: "ActionMesh.PlaceholderInputs",
  async afterConfigureGraph() {
    const found = findMissingPlaceholders(app.graph);
    for (const item of found) {
      item.node.has_errors = true;
      item.node.actionmeshMissingInput = { widget: item.widget, value: item.value };
    }
    if (found.length) {
      const detail = found
        .map((item) => `${item.node.title} (#${item.node.id}): ${item.widget} '${item.value}' is not in the input folder: ${item.hint}.`)
        .join("\n");
      app.extensionManager?.toast?.add({ severity: "warn", summary: "ActionMesh: input file missing", detail, life: 20000 });
      console.warn(`[ActionMesh] ${detail}`);
      app.graph.setDirtyCanvas(true, true);
    }
  },
});
