// ActionMesh: workflows saved when the loaders listed model folders ("ActionMesh/denoiser") load with the
// folder's weights file ("ActionMesh/denoiser/model.safetensors"), the value the loaders list now.
// The server still accepts the folder value (VALIDATE_INPUTS), but the frontend's missing-models check can only
// match a listed file: with the folder value it checks the model folder's file list instead, and two loaders of
// one folder checked at once can see an empty list (an installed autoencoder reported missing).
import { app } from "../../../scripts/app.js"; // served at /extensions/<pack>/js/

const LOADERS = new Set([
  "ActionMeshLoadDenoiser",
  "ActionMeshLoadAutoencoder",
  "ActionMeshLoadTripoSGVAE",
  "ActionMeshLoadTripoSGDiT",
  "ActionMeshLoadDINOv2",
]);

export function listedFileForFolder(value, options) {
  if (typeof value !== "string" || !value || options.includes(value)) return null;
  const inside = options.filter((option) => option.startsWith(value + "/") && !option.slice(value.length + 1).includes("/"));
  return inside.length === 1 ? inside[0] : null;
}

app.registerExtension({
  name: "ActionMesh.LegacyModelNames",
  loadedGraphNode(node) {
    if (!LOADERS.has(node.comfyClass ?? node.type)) return;
    const widget = node.widgets?.find((w) => w.name === "model_name");
    const file = widget && listedFileForFolder(widget.value, widget.options?.values ?? []);
    if (file) widget.value = file;
  },
});
