// Front end of the concept-erasure pack: live loss curve on Erase Concept, compare slider on Before/After
// Preview, and a concept counter with duplicate warnings on Concept List. Plain ES module, no build step.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "concept_erasure.progress"; // PROGRESS_EVENT in erasure_core/frontend/__init__.py

function lossWidget(node) {
  const box = document.createElement("div");
  box.className = "concept-erasure-loss";
  box.style.cssText = "display:flex;flex-direction:column;gap:2px;font:11px sans-serif;color:#ccc;";
  const canvas = document.createElement("canvas");
  canvas.width = 300;
  canvas.height = 90;
  canvas.style.cssText = "width:100%;height:90px;background:#1b1b1b;border-radius:4px;";
  const label = document.createElement("div");
  label.textContent = "loss: waiting for a run";
  box.append(canvas, label);
  const state = { losses: [], canvas, label, box };
  const widget = node.addDOMWidget("erasure_loss", "erasure_loss", box, { serialize: false, getMinHeight: () => 110 });
  widget.serialize = false; // display only: never part of the saved widget values
  node.erasureLoss = state;
  return state;
}

function drawLoss(state) {
  const { canvas, losses } = state;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  state.box.dataset.points = String(losses.length);
  if (losses.length < 2) return;
  // log scale: erasure losses fall over orders of magnitude
  const logs = losses.map((v) => Math.log10(Math.max(v, 1e-12)));
  const lo = Math.min(...logs);
  const hi = Math.max(...logs);
  const span = hi - lo || 1;
  ctx.strokeStyle = "#e06c6c";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  logs.forEach((v, i) => {
    const x = (i / (logs.length - 1)) * (canvas.width - 4) + 2;
    const y = canvas.height - 4 - ((v - lo) / span) * (canvas.height - 8);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function onProgress(event) {
  const data = event.detail || {};
  const node = app.graph?.getNodeById(Number(data.node));
  if (!node || node.comfyClass !== "ConceptErasureErase") return;
  const state = node.erasureLoss || lossWidget(node);
  if (data.step === 0 || (data.step === 1 && data.phase === "train")) {
    state.losses = [];
    state.started = performance.now();
  }
  if (typeof data.loss === "number" && Number.isFinite(data.loss)) state.losses.push(data.loss);
  const parts = [`${data.phase || "train"} ${data.step ?? ""}/${data.total ?? ""}`];
  if (data.phase === "train" && data.step > 1 && state.started) {
    const perStep = (performance.now() - state.started) / (data.step - 1);
    const left = Math.round((perStep * (data.total - data.step)) / 1000);
    parts.push(`ETA ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`);
  }
  if (typeof data.loss === "number") parts.push(`loss ${data.loss.toPrecision(3)}`);
  if (data.concept) parts.push(`erasing: ${data.concept}`);
  // EAP preserves the concept its search finds most hurt; AGE steers the erased concept towards its target
  if (data.found) parts.push(`${data.method === "age" ? "steering to" : "preserving"}: ${data.found}`);
  // each erased concept's last measured erasure (0..1); training stops once every one is erased
  if (data.erasure) parts.push(`erasure: ${data.erasure}`);
  state.label.textContent = parts.join(" · ");
  drawLoss(state);
  node.setDirtyCanvas(true, true);
}

function viewUrl(image) {
  const params = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder || "", type: image.type });
  return api.apiURL(`/view?${params}`);
}

function compareSlider(node, pair) {
  let box = node.erasureCompare;
  if (!box) {
    box = document.createElement("div");
    box.className = "concept-erasure-compare";
    box.style.cssText = "position:relative;width:100%;user-select:none;";
    const before = document.createElement("img");
    const after = document.createElement("img");
    before.style.cssText = "width:100%;display:block;";
    after.style.cssText = "position:absolute;left:0;top:0;width:100%;clip-path:inset(0 0 0 50%);";
    const range = document.createElement("input");
    range.type = "range";
    range.min = "0";
    range.max = "100";
    range.value = "50";
    range.style.cssText = "width:100%;";
    range.title = "drag: before (left) / after (right)";
    range.addEventListener("input", () => {
      after.style.clipPath = `inset(0 0 0 ${range.value}%)`;
    });
    box.append(before, after, range);
    box.before = before;
    box.after = after;
    const widget = node.addDOMWidget("erasure_compare", "erasure_compare", box, {
      serialize: false,
      getMinHeight: () => 260,
    });
    widget.serialize = false;
    node.erasureCompare = box;
  }
  box.before.src = viewUrl(pair[0]);
  box.after.src = viewUrl(pair[1]);
  box.dataset.ready = "1";
}

function conceptCounter(node) {
  const info = document.createElement("div");
  info.className = "concept-erasure-count";
  info.style.cssText = "font:11px sans-serif;color:#bbb;white-space:pre-wrap;";
  const widget = node.addDOMWidget("concept_count", "concept_count", info, { serialize: false, getMinHeight: () => 36 });
  widget.serialize = false;
  const update = () => {
    const lines = (name) => {
      const widget = node.widgets?.find((w) => w.name === name);
      return String(widget?.value || "")
        .split("\n")
        .map((l) => l.trim().replace(/\s+/g, " "))
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.replace(/^\((.*):\s*[-+0-9.eE]+\)$/, "$1").replace(/\s*:\s*[-+]?[0-9]*\.?[0-9]+$/, "").toLowerCase());
    };
    const erase = lines("erase");
    const keep = lines("keep");
    const dupes = [...new Set(erase.filter((c, i) => erase.indexOf(c) !== i))];
    const both = erase.filter((c) => keep.includes(c));
    const notes = [`${new Set(erase).size} to erase, ${new Set(keep).size} to keep`];
    if (dupes.length) notes.push(`duplicates (merged): ${dupes.join(", ")}`);
    if (both.length) notes.push(`erased AND kept (fix this): ${both.join(", ")}`);
    info.textContent = notes.join("\n");
    info.style.color = both.length ? "#e06c6c" : dupes.length ? "#e0b46c" : "#bbb";
  };
  for (const widget of node.widgets || []) {
    if (widget.name !== "erase" && widget.name !== "keep") continue;
    const previous = widget.callback;
    widget.callback = function (...args) {
      update();
      return previous?.apply(this, args);
    };
    widget.element?.addEventListener?.("input", update);
    widget.inputEl?.addEventListener?.("input", update);
  }
  update();
}

app.registerExtension({
  name: "concept_erasure.ui",
  setup() {
    api.addEventListener(EVENT, onProgress);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const created = nodeType.prototype.onNodeCreated;
    const executed = nodeType.prototype.onExecuted;
    if (nodeData.name === "ConceptErasureErase") {
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        lossWidget(this);
        return r;
      };
    } else if (nodeData.name === "ConceptErasureBeforeAfter") {
      nodeType.prototype.onExecuted = function (message) {
        const r = executed?.apply(this, arguments);
        if (message?.erasure_compare?.length === 2) compareSlider(this, message.erasure_compare);
        return r;
      };
    } else if (nodeData.name === "ConceptErasureConceptList") {
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        conceptCounter(this);
        return r;
      };
    }
  },
});
