// Exports: the drawn view as SVG (written here from node positions: the
// cytoscape-svg extension is GPL-3.0, which this Apache-2.0 project does not
// bundle) or PNG (Cytoscape's own), and downloads.

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

/** Node look per class, mirroring graph.js STYLE (later entries win). */
function nodeLook(classes) {
  const has = (c) => classes.includes(c);
  const look = { shape: "ellipse", fill: "#9aa5b1", stroke: "#52606d", sw: 1, dash: "", size: 18, opacity: 1 };
  if (has("run")) return { ...look, shape: "run", fill: "#f5f7fa", stroke: "#7b8794", dash: "2 2", opacity: has("future") ? 0.22 : has("dim") ? 0.12 : 1 };
  if (has("state")) Object.assign(look, { shape: "rect", fill: "#2f80ed", stroke: "#1a4d8f" });
  if (has("redaction")) Object.assign(look, { shape: "diamond", fill: "#f2994a", stroke: "#8a4b14", size: 20 });
  if (has("unverified")) Object.assign(look, { fill: "#e4e7eb", stroke: "#7b8794", dash: "3 2" });
  if (has("redacted")) Object.assign(look, { fill: "#fff7e6", stroke: "#d9822b", sw: 2, dash: "3 2" });
  if (has("rejected")) Object.assign(look, { fill: "#d64545", stroke: "#7a0c0c", sw: 2, dash: "3 2" });
  if (has("resolved")) Object.assign(look, { stroke: "#7b2cbf", sw: 3, dash: "" });
  if (has("extremity")) Object.assign(look, { stroke: "#111", sw: 4, dash: "" });
  if (has("future")) look.opacity = 0.22;
  if (has("dim")) look.opacity = 0.12;
  return look;
}

function shapeSvg(x, y, l) {
  const r = l.size / 2;
  const common = `fill="${l.fill}" stroke="${l.stroke}" stroke-width="${l.sw}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""}`;
  switch (l.shape) {
    case "rect":
      return `<rect x="${x - r}" y="${y - r}" width="${l.size}" height="${l.size}" rx="4" ${common}/>`;
    case "diamond":
      return `<polygon points="${x},${y - r} ${x + r},${y} ${x},${y + r} ${x - r},${y}" ${common}/>`;
    case "run":
      return `<rect x="${x - 29}" y="${y - 9}" width="58" height="18" rx="5" ${common}/>`;
    default:
      return `<circle cx="${x}" cy="${y}" r="${r}" ${common}/>`;
  }
}

function edgeLook(classes) {
  if (classes.includes("auth")) return { stroke: "#1c7ed6", sw: 1, dash: "5 3" };
  if (classes.includes("redacts")) return { stroke: "#d9822b", sw: 1.5, dash: "1.5 3" };
  if (classes.includes("cursor-edge")) return { stroke: "#f08c00", sw: 3, dash: "" };
  return { stroke: "#9aa5b1", sw: 1.5, dash: "" };
}

/** An SVG document of the drawn elements ({nodes, edges} from GraphView.snapshot()). */
export function toSvg({ nodes, edges }, title = "roomdag") {
  let x1 = Infinity;
  let y1 = Infinity;
  let x2 = -Infinity;
  let y2 = -Infinity;
  for (const n of nodes) {
    x1 = Math.min(x1, n.pos.x - 40);
    y1 = Math.min(y1, n.pos.y - 30);
    x2 = Math.max(x2, n.pos.x + 200);
    y2 = Math.max(y2, n.pos.y + 30);
  }
  if (!nodes.length) [x1, y1, x2, y2] = [0, 0, 100, 100];
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="${x1} ${y1} ${x2 - x1} ${y2 - y1}" width="${Math.round(x2 - x1)}" height="${Math.round(y2 - y1)}" font-family="system-ui, sans-serif" font-size="9">`,
    `<title>${esc(title)}</title>`,
    `<rect x="${x1}" y="${y1}" width="${x2 - x1}" height="${y2 - y1}" fill="#fff"/>`,
    `<g class="edges">`,
  ];
  for (const e of edges) {
    const l = edgeLook(e.classes);
    const op = e.classes.includes("future") ? ' opacity="0.22"' : "";
    out.push(`<line x1="${e.source.x}" y1="${e.source.y}" x2="${e.target.x}" y2="${e.target.y}" stroke="${l.stroke}" stroke-width="${l.sw}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""}${op}/>`);
  }
  out.push(`</g><g class="nodes">`);
  for (const n of nodes) {
    const l = nodeLook(n.classes);
    const { x, y } = n.pos;
    const cls = esc(n.classes);
    out.push(`<g class="${cls}"${l.opacity < 1 ? ` opacity="${l.opacity}"` : ""}>`);
    if (n.classes.includes("cursor")) out.push(`<circle cx="${x}" cy="${y}" r="16" fill="#fab005" opacity="0.45"/>`);
    if (n.classes.includes("in-state")) out.push(`<circle cx="${x}" cy="${y}" r="15" fill="#2f9e44" opacity="0.35"/>`);
    if (n.classes.includes("answer")) out.push(`<circle cx="${x}" cy="${y}" r="15" fill="none" stroke="#e8590c" stroke-width="3"/>`);
    out.push(shapeSvg(x, y, l));
    const lines = String(n.label ?? "").split("\n");
    if (n.run) out.push(`<text x="${x}" y="${y + 3}" text-anchor="middle" fill="#3e4c59">${esc(lines[0])}</text>`);
    else lines.forEach((t, k) => out.push(`<text x="${x + 15}" y="${y + (k - (lines.length - 1) / 2) * 11 + 3}" fill="#1f2933">${esc(t)}</text>`));
    out.push(`</g>`);
  }
  out.push(`</g></svg>`);
  return out.join("\n");
}

/** Offers a Blob (or text) as a download. */
export function download(data, filename, type = "application/octet-stream") {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file-name-safe stem for a room. */
export function stemOf(roomId) {
  return (roomId ?? "room").replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "room";
}
