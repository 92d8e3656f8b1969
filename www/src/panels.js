// The side panels: an event's details, the room summary, current state,
// and /backfill or /get_missing_events answers. Plain DOM; every event ID is
// a button (class "ev") carrying data-event, handled by one listener in main.js.

/** h("div", {class: "x"}, child, …): a small DOM builder. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** A button that jumps to an event (handled by main.js). */
export function evLink(model, eventId, text, { compact = false } = {}) {
  const i = model?.idx.get(eventId);
  const label = text ?? (i !== undefined ? (compact ? `#${i}` : `#${i} ${short(eventId)}`) : short(eventId));
  return h("button", { type: "button", class: "ev", "data-event": eventId, title: eventId, disabled: i === undefined ? true : undefined }, label);
}

export const short = (id) => (id && id.length > 14 ? `${id.slice(0, 10)}…` : String(id));
const time = (ts) => {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString().replace("T", " ").replace("Z", " UTC");
};
const splitKey = (key) => {
  const k = key.indexOf("\u0000");
  return k < 0 ? [key, ""] : [key.slice(0, k), key.slice(k + 1)];
};

function section(title, ...body) {
  return h("section", { class: "panel-section" }, h("h3", {}, title), ...body);
}

function json(obj, testid) {
  return h("pre", { class: "json", tabindex: "0", "data-testid": testid }, JSON.stringify(obj, null, 2));
}

function copyButton(text, label = "Copy") {
  return h("button", { type: "button", class: "small", onclick: () => navigator.clipboard?.writeText(text).catch(() => {}) }, label);
}

/** A state as a table (type, state key, event). */
export function stateTable(model, state, { highlight } = {}) {
  const rows = Object.entries(state).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return h(
    "table",
    { class: "state" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "type"), h("th", { scope: "col" }, "state key"), h("th", { scope: "col" }, "event"))),
    h(
      "tbody",
      {},
      rows.map(([key, id]) => {
        const [type, sk] = splitKey(key);
        return h("tr", { class: highlight?.has(key) ? "hl" : undefined }, h("td", {}, type), h("td", { class: "mono" }, sk || "—"), h("td", {}, evLink(model, id, undefined, { compact: true })));
      }),
    ),
  );
}

/** Everything about one event. */
export function eventPanel(model, d, { servers, onHistory, prevs = [] }) {
  const status = [];
  if (d.status === "accepted") status.push(h("span", { class: "badge ok" }, "accepted"));
  else if (d.status === "rejected") status.push(h("span", { class: "badge bad" }, "rejected"), " ", h("span", { class: "reason" }, d.rejection ?? ""));
  else status.push(h("span", { class: "badge" }, d.status));
  if (d.redacted_on_receipt) status.push(" ", h("span", { class: "badge warn" }, "redacted on receipt"), " (content hash mismatch: stored redacted)");
  if (d.redacted_by) status.push(h("div", {}, "Redacted by ", evLink(model, d.redacted_by)));
  const i = model.idx.get(d.event_id);
  if (i !== undefined && model.extremities.has(i)) status.push(h("div", {}, h("span", { class: "badge ext" }, "forward extremity")));

  const diffKeys = new Set(d.state_diff.map((x) => `${x.type}\u0000${x.state_key}`));
  const parts = [
    h(
      "header",
      { class: "event-head" },
      h("h2", { id: "event-title" }, `Event #${d.i}`, h("span", { class: "type" }, ` ${d.type}`)),
      h("p", { class: "mono id" }, d.event_id, " ", copyButton(d.event_id, "Copy ID")),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "sender"),
        h("dd", { class: "mono" }, d.sender),
        d.state_key !== null ? [h("dt", {}, "state key"), h("dd", { class: "mono" }, d.state_key === "" ? '""' : d.state_key)] : null,
        h("dt", {}, "depth"),
        h("dd", {}, String(d.depth)),
        h("dt", {}, "sent"),
        h("dd", {}, time(d.origin_server_ts)),
      ),
      h("div", { class: "status", "data-testid": "status" }, status),
    ),
  ];

  if (d.resolution) {
    const r = d.resolution;
    // The prev events' own states (fetched by main.js), to show each side of every conflict.
    const sides = prevs.filter((p) => p && p.state_after);
    parts.push(
      section(
        "State resolution here",
        h("p", {}, `The prev events' states disagreed, so the state before this event was resolved (full conflicted set: ${r.full_conflicted_set} events).`),
        h(
          "ul",
          { class: "prev-states" },
          sides.length
            ? sides.map((p) => h("li", {}, "after ", evLink(model, p.event_id), ": ", h("span", { class: "mono small" }, short(p.state_after.digest)), r.inputs.includes(p.state_after.digest) ? "" : " (not an input)"))
            : r.inputs.map((x) => h("li", { class: "mono small" }, x)),
        ),
        h(
          "table",
          { class: "state" },
          h("caption", {}, "Conflicted keys: each side, and the winner"),
          h(
            "thead",
            {},
            h("tr", {}, h("th", { scope: "col" }, "key"), sides.map((p) => h("th", { scope: "col" }, `after #${p.i}`)), h("th", { scope: "col" }, "winner")),
          ),
          h(
            "tbody",
            {},
            r.conflicted_keys.map(([type, sk], k) => {
              const key = `${type}\u0000${sk}`;
              return h(
                "tr",
                {},
                h("td", {}, type, " ", h("span", { class: "mono" }, sk || '""')),
                sides.map((p) => h("td", {}, p.state_after.state[key] ? evLink(model, p.state_after.state[key], undefined, { compact: true }) : "—")),
                h("td", { class: "winner" }, r.winners[k] ? evLink(model, r.winners[k], undefined, { compact: true }) : "removed"),
              );
            }),
          ),
        ),
      ),
    );
  } else if (d.prev_events.length > 1) {
    parts.push(section("Merge", h("p", {}, `${d.prev_events.length} prev events whose states agreed: no resolution needed.`)));
  }

  parts.push(
    section(
      "State",
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "before"),
        h("dd", { class: "mono digest", "data-testid": "state-before" }, d.state_before.digest),
        h("dt", {}, "after"),
        h("dd", { class: "mono digest", "data-testid": "state-after" }, d.state_after.digest),
      ),
      d.state_diff.length
        ? h(
            "table",
            { class: "state" },
            h("caption", {}, "Changed by this event"),
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "key"), h("th", { scope: "col" }, "before"), h("th", { scope: "col" }, "after"))),
            h(
              "tbody",
              {},
              d.state_diff.map((x) =>
                h(
                  "tr",
                  {},
                  h("td", {}, x.type, " ", h("span", { class: "mono" }, x.state_key || '""')),
                  h("td", {}, x.before ? evLink(model, x.before, undefined, { compact: true }) : "—"),
                  h("td", {}, x.after ? evLink(model, x.after, undefined, { compact: true }) : "—"),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No state change."),
      h("details", {}, h("summary", {}, `State after (${Object.keys(d.state_after.state).length} entries; green in the graph)`), stateTable(model, d.state_after.state, { highlight: diffKeys })),
      h("details", {}, h("summary", {}, `State before (${Object.keys(d.state_before.state).length} entries)`), stateTable(model, d.state_before.state)),
    ),
  );

  parts.push(
    section(
      "Edges",
      h("p", {}, "prev_events: ", d.prev_events.length ? d.prev_events.map((e) => [evLink(model, e), " "]) : "none"),
      h("p", {}, "auth_events (dashed in the graph): ", d.auth_events.length ? d.auth_events.map((e) => [evLink(model, e), " "]) : "none"),
      h("details", {}, h("summary", {}, `Auth chain (${d.auth_chain.length} events)`), h("p", {}, d.auth_chain.map((e) => [evLink(model, e), " "]))),
    ),
  );

  const vis = Object.entries(d.visible_to ?? {}).sort();
  parts.push(
    section(
      "Who may see it",
      vis.length
        ? h(
            "ul",
            { class: "visible" },
            vis.map(([s, full]) => h("li", {}, h("span", { class: `badge ${full ? "ok" : "warn"}` }, full ? "full" : "redacted"), " ", h("span", { class: "mono" }, s))),
          )
        : h("p", { class: "muted" }, "No server with members."),
      h("p", { class: "muted small" }, "For each server with members in the room: whether it is served this event unredacted (history visibility)."),
    ),
  );

  parts.push(historySection(d, servers, onHistory));

  parts.push(
    section(
      "PDU",
      h("details", { open: true }, h("summary", {}, "As stored (as received) ", copyButton(JSON.stringify(d.pdu))), json(d.pdu, "pdu")),
      h("details", {}, h("summary", {}, "Redacted form (what a server not allowed to see it receives) ", copyButton(JSON.stringify(d.pruned_pdu))), json(d.pruned_pdu, "pruned-pdu")),
    ),
  );
  return h("div", { class: "event-panel", "aria-labelledby": "event-title" }, parts);
}

function historySection(d, servers, onHistory) {
  const sel = h("select", { id: "history-server", "aria-label": "Ask as server" }, servers.map((s) => h("option", { value: s }, s)));
  const limit = h("input", { id: "history-limit", type: "number", min: "1", max: "1000", value: "20", "aria-label": "Limit", class: "num" });
  const out = h("div", { class: "history-out", "aria-live": "polite" });
  const run = (kind) => onHistory(kind, sel.value, d.event_id, Number(limit.value) || 20, out);
  return section(
    "What would a server get?",
    h(
      "div",
      { class: "row" },
      h("label", { for: "history-server" }, "as "),
      sel,
      h("label", { for: "history-limit" }, " limit "),
      limit,
    ),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", onclick: () => run("backfill") }, "/backfill from here"),
      h("button", { type: "button", onclick: () => run("get_missing_events") }, "/get_missing_events up to here"),
    ),
    out,
  );
}

/** The answer of a history query, listed and (by main.js) outlined in the graph. */
export function historyAnswer(model, kind, origin, r) {
  if (r.status !== 200) return h("p", { class: "error" }, `${kind} as ${origin}: HTTP ${r.status} ${r.error?.errcode ?? ""} ${r.error?.error ?? ""}`);
  return h(
    "div",
    {},
    h("p", {}, `${kind} as ${origin}: ${r.events.length} events (outlined orange in the graph)`),
    h(
      "ol",
      { class: "answer-list" },
      r.events.map((e) => h("li", {}, evLink(model, e.eventId), " ", h("span", { class: "muted" }, e.type), e.redacted ? [" ", h("span", { class: "badge warn" }, "redacted")] : null)),
    ),
  );
}

/** The room summary: counts, extremities, dropped PDUs, current state. */
export function roomPanel(model, { onResolve, dropped }) {
  let accepted = 0;
  let rejected = 0;
  let redacted = 0;
  let state = 0;
  let merges = 0;
  for (let i = 0; i < model.n; i++) {
    const e = model.events[i];
    if (e.status === "accepted") accepted++;
    else if (e.status === "rejected") rejected++;
    if (e.redacted_by !== null || e.redacted_on_receipt) redacted++;
    if (model.isState(i)) state++;
    if (e.prev.length > 1) merges++;
  }
  const ext = [...model.extremities];
  return h(
    "div",
    { class: "room-panel" },
    h("h2", {}, "Room"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "room"),
      h("dd", { class: "mono" }, model.roomId ?? "?"),
      h("dt", {}, "version"),
      h("dd", {}, model.roomVersion),
      h("dt", {}, "source"),
      h("dd", {}, model.title),
      h("dt", {}, "events"),
      h("dd", { "data-testid": "event-count" }, `${model.n} (${state} state, ${merges} merges)`),
      model.verified
        ? [h("dt", {}, "status"), h("dd", {}, `${accepted} accepted, ${rejected} rejected, ${redacted} redacted, ${model.graph.dropped_total} dropped`)]
        : [h("dt", {}, "status"), h("dd", {}, h("span", { class: "badge" }, "unverified"))],
    ),
    h("p", {}, model.verified ? `Forward extremities (${ext.length}): ` : `Events nothing points to yet (${ext.length}; unverified): `, ext.slice(0, 20).map((i) => [evLink(model, model.events[i].event_id), " "]), ext.length > 20 ? "…" : ""),
    dropped?.length
      ? h(
          "details",
          {},
          h("summary", {}, `Dropped PDUs (${model.graph.dropped_total}): never stored`),
          h("ul", { class: "dropped" }, dropped.slice(0, 200).map((x) => h("li", {}, h("span", { class: "mono" }, short(x.event_id ?? "(no ID)")), ` ${x.stage}: ${x.reason}`))),
        )
      : null,
    model.verified ? h("button", { type: "button", id: "resolve-current", onclick: onResolve }, "Resolve current state") : null,
    h("div", { id: "current-state", "aria-live": "polite" }),
  );
}

/** The current state, resolved across every forward extremity. */
export function currentStatePanel(model, s) {
  const servers = model.joinedServers(s.state);
  return h(
    "div",
    {},
    h("p", {}, `Current state across ${model.extremities.size} forward extremit${model.extremities.size === 1 ? "y" : "ies"} (green in the graph):`),
    h("p", { class: "mono digest", "data-testid": "current-digest" }, s.digest),
    h("p", {}, `Servers in the room: ${servers.join(", ") || "none"}`),
    h("details", {}, h("summary", {}, `${Object.keys(s.state).length} entries`), stateTable(model, s.state)),
  );
}
