// The graph view: Cytoscape.js with preset positions from the lane layout.
//
// Only a window of rows around the viewport is drawn (a few hundred rows, at
// most MAX_WINDOW_ROWS), and linear runs of unremarkable events inside it
// collapse into one "+N more" node. Positions come from the layout, so the
// picture never moves: the window only adds and removes elements (diffed by
// stable IDs) as the view pans or the selection steps.
import cytoscape from "cytoscape";
import { linearRuns } from "./layout.js";

export const LANE_W = 130;
export const ROW_H = 46;
const BASE_WINDOW_ROWS = 360;
const MAX_WINDOW_ROWS = 2400;
const MIN_RUN = 4;

export const STYLE = [
  {
    selector: "node",
    style: {
      width: 18,
      height: 18,
      shape: "ellipse",
      "background-color": "#9aa5b1",
      "border-width": 1,
      "border-color": "#52606d",
      label: "data(label)",
      "font-size": 9,
      "font-family": "system-ui, sans-serif",
      color: "#1f2933",
      "text-halign": "right",
      "text-valign": "center",
      "text-margin-x": 5,
      "text-wrap": "wrap",
      "text-max-width": 118,
      "min-zoomed-font-size": 7,
    },
  },
  { selector: "node.state", style: { shape: "round-rectangle", "background-color": "#2f80ed", "border-color": "#1a4d8f" } },
  { selector: "node.redaction", style: { shape: "diamond", width: 20, height: 20, "background-color": "#f2994a", "border-color": "#8a4b14" } },
  { selector: "node.create", style: { shape: "star", width: 24, height: 24 } },
  { selector: "node.unverified", style: { "background-color": "#e4e7eb", "border-style": "dashed", "border-color": "#7b8794" } },
  { selector: "node.redacted", style: { "background-color": "#fff7e6", "border-width": 2, "border-style": "dashed", "border-color": "#d9822b" } },
  { selector: "node.rejected", style: { "background-color": "#d64545", "border-width": 2, "border-style": "dashed", "border-color": "#7a0c0c", color: "#a61b1b" } },
  { selector: "node.resolved", style: { "border-width": 3, "border-style": "solid", "border-color": "#7b2cbf" } },
  { selector: "node.extremity", style: { "border-width": 5, "border-style": "double", "border-color": "#111" } },
  { selector: "node.in-state", style: { "underlay-color": "#2f9e44", "underlay-opacity": 0.35, "underlay-padding": 6, "underlay-shape": "ellipse" } },
  { selector: "node.answer", style: { "outline-width": 3, "outline-color": "#e8590c", "outline-offset": 3, "outline-opacity": 1 } },
  { selector: "node.auth-of-cursor", style: { "underlay-color": "#1c7ed6", "underlay-opacity": 0.3, "underlay-padding": 6 } },
  {
    selector: "node.run",
    style: {
      shape: "round-rectangle",
      width: 58,
      height: 18,
      "background-color": "#f5f7fa",
      "border-style": "dotted",
      "border-color": "#7b8794",
      label: "data(label)",
      "text-halign": "center",
      "text-margin-x": 0,
      "font-size": 9,
      color: "#3e4c59",
    },
  },
  { selector: "node.cursor", style: { "overlay-color": "#fab005", "overlay-opacity": 0.45, "overlay-padding": 7, "font-weight": "bold", "font-size": 11, "z-index": 10 } },
  { selector: ".future", style: { opacity: 0.22 } },
  { selector: ".dim", style: { opacity: 0.12 } },
  { selector: "edge", style: { width: 1.5, "line-color": "#9aa5b1", "curve-style": "straight" } },
  { selector: "edge.auth", style: { width: 1, "line-style": "dashed", "line-color": "#1c7ed6", "target-arrow-shape": "triangle", "target-arrow-color": "#1c7ed6", "arrow-scale": 0.7 } },
  { selector: "edge.redacts", style: { width: 1.5, "line-style": "dotted", "line-color": "#d9822b", "target-arrow-shape": "triangle", "target-arrow-color": "#d9822b", "arrow-scale": 0.8 } },
  { selector: "edge.cursor-edge", style: { width: 3, "line-color": "#f08c00" } },
];

export class GraphView {
  /**
   * @param {HTMLElement} container
   * @param {{onSelect: (i: number) => void, onFirstRender?: () => void, webgl?: boolean}} hooks
   */
  constructor(container, hooks) {
    this.container = container;
    this.hooks = hooks;
    this.model = null;
    this.cursor = -1;
    this.fadeFuture = true;
    this.collapse = true;
    this.authEdges = "cursor"; // "none" | "cursor" | "all"
    this.redactsEdges = true;
    this.filter = null; // (i) => boolean
    this.inState = new Set();
    this.answer = new Set();
    this.authOfCursor = new Set();
    this.resolutions = new Map(); // i → summary | null
    this.expanded = new Set();
    this.win = null; // {lo, hi}
    this.runOf = new Map(); // event → run node ID
    this.rendered = new Set(); // event positions drawn as their own nodes
    this.onResolutionsNeeded = null;
    this.webgl = Boolean(hooks.webgl);
    this.#create();
  }

  #create() {
    this.cy?.destroy();
    this.cy = cytoscape({
      container: this.container,
      style: STYLE,
      layout: { name: "preset" },
      minZoom: 0.01,
      maxZoom: 3,
      boxSelectionEnabled: false,
      autoungrabify: true,
      selectionType: "single",
      textureOnViewport: false,
      hideEdgesOnViewport: false,
      pixelRatio: "auto",
      ...(this.webgl ? { renderer: { name: "canvas", webgl: true } } : {}),
    });
    this.cy.on("tap", "node", (ev) => {
      const d = ev.target.data();
      if (d.run) {
        for (const i of d.members) this.expanded.add(i);
        this.render();
      } else this.hooks.onSelect(d.i);
    });
    let pending = 0;
    this.cy.on("viewport", () => {
      if (pending) return;
      pending = requestAnimationFrame(() => {
        pending = 0;
        this.#followViewport();
      });
    });
  }

  #awaitingFirstRender = false;

  /** Switches the renderer (WebGL or canvas 2D); keeps the room and view. */
  setWebgl(on) {
    if (on === this.webgl) return;
    const view = this.cy ? { zoom: this.cy.zoom(), pan: this.cy.pan() } : null;
    this.webgl = on;
    this.#create();
    this.win = null;
    if (this.model) {
      this.render();
      if (view) this.cy.viewport(view);
    }
  }

  /** Shows a room; `focusEvent` (an event ID) is centred if it is in the room. */
  setModel(model, { focusEvent } = {}) {
    this.model = model;
    this.win = null;
    this.expanded.clear();
    this.resolutions.clear();
    this.inState.clear();
    this.answer.clear();
    this.authOfCursor.clear();
    this.cy.elements().remove();
    const h = this.container.clientHeight || 600;
    this.cy.minZoom(Math.max(0.01, h / (MAX_WINDOW_ROWS * ROW_H)));
    const i = focusEvent !== undefined && model.idx.has(focusEvent) ? model.idx.get(focusEvent) : model.n - 1;
    this.cursor = Math.min(this.cursor, model.n - 1);
    this.#awaitingFirstRender = true;
    this.centerOn(i, { zoom: 1 });
  }

  pos(i) {
    return { x: this.model.lane[i] * LANE_W, y: (this.model.row[i] - this.model.minRow) * ROW_H };
  }

  /** Re-lays out the rows (depth or arrival) keeping the view on the cursor. */
  setRows(mode) {
    if (!this.model || this.model.rows === mode) return;
    this.model.setRows(mode);
    this.win = null;
    this.cy.elements().remove();
    this.centerOn(this.cursor >= 0 ? this.cursor : this.model.n - 1, { zoom: this.cy.zoom() });
  }

  /** Centres the view on an event, moving the window there. */
  centerOn(i, { zoom } = {}) {
    if (!this.model || i < 0) return;
    const row = this.model.row[i];
    this.#ensureWindow(row, row);
    const p = this.pos(i);
    const z = zoom ?? this.cy.zoom();
    const w = this.container.clientWidth || 800;
    const h = this.container.clientHeight || 600;
    // When every lane fits, keep them all in view (no sideways jumps while stepping).
    const lanesW = this.model.maxLane * LANE_W + 160;
    const x = lanesW * z < w - 40 ? lanesW / 2 - 40 : p.x;
    this.cy.viewport({ zoom: z, pan: { x: w / 2 - x * z, y: h / 2 - p.y * z } });
  }

  /** Brings an event into view if it is not (no move when it already is). */
  reveal(i) {
    if (!this.model || i < 0) return;
    const row = this.model.row[i];
    if (!this.win || row < this.win.lo || row > this.win.hi) this.#ensureWindow(row, row);
    const ext = this.cy.extent();
    const p = this.pos(i);
    const mx = 40 / this.cy.zoom();
    if (p.x < ext.x1 + mx || p.x > ext.x2 - mx || p.y < ext.y1 + mx || p.y > ext.y2 - mx) this.centerOn(i);
  }

  #followViewport() {
    if (!this.model || !this.win) return;
    const ext = this.cy.extent();
    const top = Math.floor(ext.y1 / ROW_H) + this.model.minRow;
    const bottom = Math.ceil(ext.y2 / ROW_H) + this.model.minRow;
    const margin = Math.max(20, (bottom - top) >> 2);
    const { lo, hi } = this.win;
    const needTop = top - margin < lo && lo > this.model.minRow;
    const needBottom = bottom + margin > hi && hi < this.model.maxRow;
    if (needTop || needBottom) this.#ensureWindow(top, bottom, true);
  }

  /** Makes the window cover rows [a, b] with room around them. */
  #ensureWindow(a, b, force = false) {
    const m = this.model;
    const span = Math.min(MAX_WINDOW_ROWS, Math.max(BASE_WINDOW_ROWS, (b - a) * 3));
    const mid = (a + b) >> 1;
    let lo = Math.max(m.minRow, mid - (span >> 1));
    let hi = Math.min(m.maxRow, lo + span);
    lo = Math.max(m.minRow, Math.min(lo, hi - span));
    if (!force && this.win && this.win.lo <= a && this.win.hi >= b) return;
    this.win = { lo, hi };
    this.render();
  }

  /** Whether an event must stay a node of its own (not folded into a run). */
  #special(i) {
    const m = this.model;
    const e = m.events[i];
    return (
      e.prev.length !== 1 ||
      e.status === "rejected" ||
      e.is_redaction ||
      e.redacted_by !== null ||
      e.redacted_on_receipt ||
      m.isState(i) ||
      m.extremities.has(i) ||
      i === this.cursor ||
      this.answer.has(i) ||
      this.expanded.has(i) ||
      (this.filter !== null && this.filter(i))
    );
  }

  /** Rebuilds the window's elements (diffed against what is drawn). */
  render() {
    const m = this.model;
    if (!m || !this.win) return;
    const t0 = performance.now();
    const visible = m.inRows(this.win.lo, this.win.hi);
    const stamp = (this.#stamp = (this.#stamp + 1) >>> 0 || 1);
    if (!this.#inWin || this.#inWin.length !== m.n) this.#inWin = new Uint32Array(m.n);
    const inWin = this.#inWin;
    for (const i of visible) inWin[i] = stamp;
    const inWindow = (i) => inWin[i] === stamp;
    const runs = this.collapse
      ? linearRuns(visible, inWindow, (i) => !this.#special(i), { prev: (i) => m.prev(i), children: (i) => m.children(i) }, MIN_RUN)
      : new Map();
    const runOf = new Map();
    for (const [first, members] of runs) for (const i of members) runOf.set(i, `r${first}`);
    this.runOf = runOf;
    const want = new Map();
    const node = (i) => runOf.get(i) ?? `e${i}`;
    for (const i of visible) {
      if (runOf.has(i)) continue;
      want.set(`e${i}`, { group: "nodes", data: { id: `e${i}`, i, label: m.label(i) }, position: this.pos(i), classes: this.#staticClasses(i) });
    }
    for (const [first, members] of runs) {
      const mid = members[members.length >> 1];
      const id = `r${first}`;
      want.set(id, {
        group: "nodes",
        data: { id, run: true, members, label: `+${members.length} more`, first, last: members[members.length - 1] },
        position: this.pos(mid),
        classes: "run",
      });
    }
    for (const i of visible) {
      const t = node(i);
      for (const p of m.prev(i)) {
        if (!inWindow(p)) continue;
        const s = node(p);
        if (s === t) continue;
        const id = `p${p}-${i}`;
        want.set(id, { group: "edges", data: { id, source: s, target: t, kind: "prev", child: i, parent: p }, classes: "prev" });
      }
    }
    if (this.authEdges !== "none") {
      const from = this.authEdges === "all" ? visible : this.cursor >= 0 && inWindow(this.cursor) ? [this.cursor] : [];
      for (const i of from) {
        if (runOf.has(i)) continue;
        for (const a of m.events[i].auth) {
          if (!inWindow(a) || runOf.has(a)) continue;
          const id = `a${a}-${i}`;
          want.set(id, { group: "edges", data: { id, source: `e${i}`, target: `e${a}`, kind: "auth", child: i, parent: a }, classes: "auth" });
        }
      }
    }
    if (this.redactsEdges) {
      for (const i of visible) {
        const r = m.events[i].redacted_by;
        if (r === null || r === undefined || !inWindow(r) || runOf.has(r) || runOf.has(i)) continue;
        const id = `x${r}-${i}`;
        want.set(id, { group: "edges", data: { id, source: `e${r}`, target: `e${i}`, kind: "redacts", child: r, parent: i }, classes: "redacts" });
      }
    }
    const cy = this.cy;
    cy.batch(() => {
      const gone = cy.elements().filter((el) => {
        const w = want.get(el.id());
        if (!w) return true;
        // A run whose members changed is replaced.
        if (w.data.run && w.data.members.length !== el.data("members").length) return true;
        if (w.group === "edges" && (el.data("source") !== w.data.source || el.data("target") !== w.data.target)) return true;
        return false;
      });
      gone.remove();
      const add = [];
      for (const [id, el] of want) if (cy.getElementById(id).empty()) add.push(el);
      // Nodes before edges.
      cy.add(add.filter((e) => e.group === "nodes"));
      cy.add(add.filter((e) => e.group === "edges"));
    });
    this.rendered = new Set();
    for (const i of visible) if (!runOf.has(i)) this.rendered.add(i);
    if (this.#awaitingFirstRender && cy.nodes().length > 0) {
      // Cytoscape draws on its next animation frame: the one after that has it on screen.
      this.#awaitingFirstRender = false;
      requestAnimationFrame(() => requestAnimationFrame(() => this.hooks.onFirstRender?.()));
    }
    this.refreshClasses();
    this.#requestResolutions(visible);
    const ms = performance.now() - t0;
    this.stats = { lastRenderMs: ms, maxRenderMs: Math.max(ms, this.stats?.maxRenderMs ?? 0), nodes: cy.nodes().length, edges: cy.edges().length, rows: [this.win.lo, this.win.hi] };
  }

  #stamp = 0;
  #inWin = null;

  #staticClasses(i) {
    const m = this.model;
    const e = m.events[i];
    const c = [m.isState(i) ? "state" : e.is_redaction ? "redaction" : "msg"];
    if (e.type === "m.room.create" && e.state_key === "") c.push("create");
    if (e.status === "rejected") c.push("rejected");
    if (e.status === "unverified") c.push("unverified");
    if (e.redacted_by !== null || e.redacted_on_receipt) c.push("redacted");
    if (m.extremities.has(i)) c.push("extremity");
    if (e.prev.length > 1) c.push("merge");
    return c.join(" ");
  }

  /** Applies the per-step classes (cursor, future, filter, highlights). */
  refreshClasses() {
    const cy = this.cy;
    const m = this.model;
    if (!m) return;
    const cursor = this.cursor;
    const fade = this.fadeFuture && cursor >= 0;
    cy.batch(() => {
      cy.nodes().forEach((n) => {
        const d = n.data();
        if (d.run) {
          n.classes(["run", fade && d.first > cursor ? "future" : "", this.filter ? "dim" : ""].filter(Boolean).join(" "));
          return;
        }
        const i = d.i;
        let c = this.#staticClasses(i);
        if (this.resolutions.get(i)) c += " resolved";
        if (i === cursor) c += " cursor";
        if (fade && i > cursor) c += " future";
        if (this.filter && !this.filter(i)) c += " dim";
        if (this.inState.has(i)) c += " in-state";
        if (this.answer.has(i)) c += " answer";
        if (this.authOfCursor.has(i)) c += " auth-of-cursor";
        n.classes(c);
      });
      cy.edges().forEach((ed) => {
        const d = ed.data();
        let c = d.kind;
        if (fade && d.child > cursor) c += " future";
        if (d.kind === "prev" && (d.child === cursor || d.parent === cursor)) c += " cursor-edge";
        ed.classes(c);
      });
    });
  }

  /** Asks (once per event) which merge events in the window had a state resolution. */
  #requestResolutions(visible) {
    if (!this.onResolutionsNeeded) return;
    const m = this.model;
    const ask = [];
    for (const i of visible) if (m.events[i].prev.length > 1 && !this.resolutions.has(i) && m.events[i].status !== "unverified") ask.push(i);
    if (!ask.length) return;
    for (const i of ask) this.resolutions.set(i, null);
    const model = m;
    this.onResolutionsNeeded(ask).then(
      (found) => {
        if (this.model !== model) return;
        for (const [i, r] of found) this.resolutions.set(i, r);
        this.refreshClasses();
      },
      () => {},
    );
  }

  /** Sets the cursor (the selected event) and redraws around it. */
  setCursor(i, { reveal = true } = {}) {
    this.cursor = i;
    const authOf = new Set();
    if (i >= 0) for (const a of this.model.events[i].auth) authOf.add(a);
    this.authOfCursor = authOf;
    if (reveal) this.reveal(i);
    // The cursor is never folded into a run, and its auth edges follow it.
    this.render();
  }

  /** Rendered elements with positions and classes (for SVG export). */
  snapshot() {
    const nodes = this.cy.nodes().map((n) => ({ id: n.id(), pos: n.position(), classes: n.classes(), label: n.data("label"), run: Boolean(n.data("run")) }));
    const edges = this.cy.edges().map((e) => ({ source: e.source().position(), target: e.target().position(), classes: e.classes() }));
    return { nodes, edges };
  }

  png() {
    return this.cy.png({ output: "blob", bg: "#ffffff", full: false, scale: 2 });
  }

  fitWindow() {
    this.cy.fit(this.cy.elements(), 30);
  }

  zoomBy(f) {
    const w = this.container.clientWidth / 2;
    const h = this.container.clientHeight / 2;
    this.cy.zoom({ level: this.cy.zoom() * f, renderedPosition: { x: w, y: h } });
  }

  /** The row range in the viewport (for the scrubber). */
  viewRows() {
    const ext = this.cy.extent();
    return { top: Math.floor(ext.y1 / ROW_H) + this.model.minRow, bottom: Math.ceil(ext.y2 / ROW_H) + this.model.minRow };
  }

  /** Scrolls the view so that `row` is in the middle. */
  scrollToRow(row) {
    const z = this.cy.zoom();
    const h = this.container.clientHeight || 600;
    const pan = this.cy.pan();
    this.#ensureWindow(row, row);
    this.cy.pan({ x: pan.x, y: h / 2 - (row - this.model.minRow) * ROW_H * z });
  }
}
