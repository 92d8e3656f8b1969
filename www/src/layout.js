// Layout helpers that run in the page (pure functions: also importable in Node).
//
// laneLayout() is a port of the engine's own lane layout (src/layout.rs), for
// graphs that arrive without a local engine (a server's inspector API, or a
// file still being verified). It must give exactly the cells the wasm
// `RoomEngine.layout()` gives; tests/browser/visualizer.test.mjs checks it.

/**
 * `[lane, row]` per event (arrival order), O(n) apart from the sort by row.
 * @param {{depth: number, prev: number[]}[]} events  graph events, `prev` = positions
 * @param {"depth"|"arrival"} rows
 * @returns {Uint32Array}
 */
export function laneLayout(events, rows = "depth") {
  const n = events.length;
  const rowOf = rows === "arrival" ? (i) => i : (i) => Math.min(Math.max(0, Math.trunc(Number(events[i].depth) || 0)), 0xffffffff);
  const remaining = new Uint32Array(n);
  for (let i = 0; i < n; i++) for (const p of events[i].prev) remaining[p]++;
  let order = Array.from({ length: n }, (_, i) => i);
  if (rows !== "arrival") order.sort((a, b) => rowOf(a) - rowOf(b) || a - b);
  const lane = new Uint32Array(n);
  const row = new Uint32Array(n);
  const continued = new Uint8Array(n);
  const laneLastRow = [];
  const laneFree = [];
  for (const i of order) {
    const r = rowOf(i);
    const prevs = events[i].prev;
    let l = -1;
    for (const p of prevs) {
      if (!continued[p] && l < 0) {
        continued[p] = 1;
        l = lane[p];
      }
    }
    for (const p of prevs) {
      remaining[p]--;
      const pl = lane[p];
      if (remaining[p] === 0 && pl !== l && laneLastRow[pl] === row[p]) laneFree[pl] = true;
    }
    if (l < 0) {
      l = laneFree.findIndex((free, k) => free && laneLastRow[k] < r);
      if (l < 0) {
        laneFree.push(false);
        laneLastRow.push(0);
        l = laneFree.length - 1;
      }
    }
    laneFree[l] = false;
    laneLastRow[l] = r;
    lane[i] = l;
    row[i] = r;
    if (remaining[i] === 0) laneFree[l] = true;
  }
  const cells = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    cells[2 * i] = lane[i];
    cells[2 * i + 1] = row[i];
  }
  return cells;
}

/**
 * Linear runs among the events of a window that may be drawn as one "+N more"
 * node: chains e1 → … → ek (each the only child of the one before, and its
 * only prev) of events `boring(i)` says nothing interesting about.
 * @param {number[]} visible  event positions in the window (any order)
 * @param {(i: number) => boolean} inWindow
 * @param {(i: number) => boolean} boring
 * @param {{prev: (i:number)=>number[], children: (i:number)=>ArrayLike<number>}} g
 * @param {number} minRun  shortest run worth collapsing
 * @returns {Map<number, number[]>} first event of each run → the run's events (in chain order)
 */
export function linearRuns(visible, inWindow, boring, g, minRun = 4) {
  const runs = new Map();
  const chainNext = (i) => {
    const ch = g.children(i);
    if (ch.length !== 1) return -1;
    const c = ch[0];
    return inWindow(c) && boring(c) && g.prev(c).length === 1 ? c : -1;
  };
  for (const i of visible) {
    if (!boring(i)) continue;
    // A run starts at an event whose prev does not continue into it.
    const ps = g.prev(i);
    if (ps.length === 1 && inWindow(ps[0]) && boring(ps[0]) && g.children(ps[0]).length === 1) continue;
    const run = [i];
    for (let c = chainNext(i); c >= 0; c = chainNext(c)) run.push(c);
    if (run.length >= minRun) runs.set(i, run);
  }
  return runs;
}

/** Index of the first element of sorted `arr` that is ≥ `x`. */
export function lowerBound(arr, x) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
