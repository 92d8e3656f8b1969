//! Graph export: the room DAG as JSON (for the visualizer) or Graphviz DOT.
//!
//! The engine owns traversal; consumers only draw. Events are listed in
//! arrival order and refer to each other by that position.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::event::Facts;
use crate::pages::PageError;
use crate::room::Room;

/// The graph as JSON: `{room_id, room_version, events: [...], forward_extremities, dropped}`.
///
/// Each event: `i` (arrival position), `event_id`, `type`, `state_key`,
/// `sender`, `depth`, `origin_server_ts`, `status`, `rejection`,
/// `redacted_on_receipt`, `redacted_by`, `prev` and `auth` (positions).
///
/// # Errors
/// The room's page store failed to read an event's ID back.
pub fn graph_json(room: &Room) -> Result<Value, PageError> {
    let events: Result<Vec<Value>, PageError> = room
        .events()
        .iter()
        .map(|e| {
            let e = e?;
            let event_id = room.id(e.idx)?;
            Ok(json!({
                "i": e.idx.0,
                "event_id": event_id,
                "type": &*e.event_type,
                "state_key": e.state_key.as_deref(),
                "sender": &*e.sender,
                "depth": e.depth,
                "origin_server_ts": e.origin_server_ts,
                "status": e.status,
                "rejection": room.rejection(e.idx),
                "redacted_on_receipt": e.redacted_on_receipt,
                "redacted_by": room.redacted_by(e.idx).map(|r| r.0),
                "membership": e.membership().map(|m| m.as_str()),
                "is_redaction": matches!(e.facts, Facts::Redaction(_)),
                "prev": room.prev_events(e.idx)?.iter().map(|p| p.0).collect::<Vec<_>>(),
                "auth": room.auth_events(e.idx)?.iter().map(|a| a.0).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let events = events?;
    let (dropped, dropped_total) = room.dropped();
    Ok(json!({
        "format": "roomdag-graph/1",
        "room_id": room.room_id(),
        "room_version": room.rules().id,
        "events": events,
        "forward_extremities": room.forward_extremities().map(|e| e.0).collect::<Vec<_>>(),
        "dropped": dropped,
        "dropped_total": dropped_total,
    }))
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph as Graphviz DOT: solid edges are `prev_events`, dashed ones
/// `auth_events`; rejected events are red, state events boxes, forward
/// extremities bold.
///
/// # Errors
/// The room's page store failed to read an event's ID back.
pub fn graph_dot(room: &Room, with_auth_edges: bool) -> Result<String, PageError> {
    let mut out = String::new();
    let name = room.room_id().unwrap_or("room");
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(name));
    out.push_str("  rankdir=BT;\n  node [fontname=\"monospace\" fontsize=10];\n");
    let extremities: std::collections::HashSet<_> = room.forward_extremities().collect();
    for e in room.events().iter() {
        let e = e?;
        let short: String = room.id(e.idx)?.chars().take(8).collect();
        let label = match e.state_key.as_deref() {
            Some(sk) => format!("{short}\\n{} {}\\n{}", e.event_type, sk, e.sender),
            None => format!("{short}\\n{}\\n{}", e.event_type, e.sender),
        };
        let mut attrs = vec![format!("label=\"{}\"", dot_escape(&label).replace("\\\\n", "\\n"))];
        attrs.push(if e.is_state() { "shape=box".into() } else { "shape=ellipse".into() });
        if !e.is_accepted() {
            attrs.push("color=red fontcolor=red".into());
        }
        if e.redacted_on_receipt || room.redacted_by(e.idx).is_some() {
            attrs.push("style=dashed".into());
        }
        if extremities.contains(&e.idx) {
            attrs.push("penwidth=3".into());
        }
        let _ = writeln!(out, "  e{} [{}];", e.idx.0, attrs.join(" "));
    }
    for e in room.events().iter() {
        let e = e?;
        for p in room.prev_events(e.idx)?.iter() {
            let _ = writeln!(out, "  e{} -> e{};", e.idx.0, p.0);
        }
        if with_auth_edges {
            for a in room.auth_events(e.idx)?.iter() {
                let _ = writeln!(out, "  e{} -> e{} [style=dashed color=gray];", e.idx.0, a.0);
            }
        }
    }
    out.push_str("}\n");
    Ok(out)
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A state as JSON: `{digest, state: {"type\u0000state_key": event_id}}`.
///
/// # Errors
/// The room's page store failed to read the state back.
pub fn state_json(room: &Room, id: crate::state_set::StateSetId) -> Result<Value, PageError> {
    let mut state = serde_json::Map::new();
    for (k, e) in room.state(id)?.iter() {
        let (t, s) = room.key_name(k);
        state.insert(format!("{t}\u{0}{s}"), json!(room.state_id(e)));
    }
    Ok(json!({"digest": hex(room.state_digest(id)?), "state": state}))
}

/// Everything the visualizer shows about one event: the PDU as stored and
/// as a remote server would receive it, its status, its states before and
/// after with the difference, its auth chain, the redaction that applies,
/// which servers see it whole, and how its state was resolved if its prev
/// events disagreed.
///
/// # Errors
/// The room's page store failed to read the PDU or a state back.
pub fn event_details(room: &Room, idx: crate::ids::EventIdx) -> Result<Value, crate::pages::PageError> {
    let e = room.event(idx)?;
    let before = room.state(e.state_before)?;
    let after = room.state(e.state_after)?;
    let mut diff = Vec::new();
    let mut keys: Vec<_> = before.iter().map(|(k, _)| k).chain(after.iter().map(|(k, _)| k)).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b != a {
            let (t, s) = room.key_name(k);
            diff.push(
                json!({"type": t, "state_key": s, "before": b.map(|x| room.state_id(x)), "after": a.map(|x| room.state_id(x))}),
            );
        }
    }
    let servers = crate::visibility::servers_in_room(room, &*room.current_state_map()?);
    let visible = servers
        .iter()
        .map(|s| Ok((s.clone(), json!(!crate::visibility::pruned_for(room, idx, s)?))))
        .collect::<Result<serde_json::Map<String, Value>, PageError>>()?;
    let prevs = room.prev_events(idx)?;
    let resolution = if prevs.len() > 1 { room.resolution_for(prevs)? } else { None };
    let resolution = resolution.map(|r| -> Result<Value, PageError> {
            let inputs = r.inputs.iter().map(|s| Ok(hex(room.state_digest(*s)?))).collect::<Result<Vec<_>, PageError>>()?;
            Ok(json!({
                "inputs": inputs,
                "conflicted_keys": r.conflicted_keys.iter().map(|k| { let (t, s) = room.key_name(*k); json!([t, s]) }).collect::<Vec<_>>(),
                "full_conflicted_set": r.full_conflicted_set,
                "winners": r.conflicted_keys.iter().map(|k| before.get(*k).map(|x| room.state_id(x))).collect::<Vec<_>>(),
            }))
        }).transpose()?;
    let event_id = room.id(idx)?;
    let ids = |list: &[crate::ids::EventIdx]| -> Result<Vec<String>, PageError> {
        list.iter().map(|e| Ok(room.id(*e)?.to_string())).collect()
    };
    let redacted_by = room.redacted_by(idx).map(|r| room.id(r).map(|id| id.to_string())).transpose()?;
    let prev_events = ids(prevs)?;
    // A rejected event's auth events may be any events.
    let auth_events = ids(room.auth_events(idx)?)?;
    let auth_chain = ids(&room.auth_chain_of(idx)?)?;
    Ok(json!({
        "i": idx.0,
        "event_id": event_id,
        "type": &*e.event_type,
        "state_key": e.state_key.as_deref(),
        "sender": &*e.sender,
        "depth": e.depth,
        "origin_server_ts": e.origin_server_ts,
        "status": e.status,
        "rejection": room.rejection(idx),
        "redacted_on_receipt": e.redacted_on_receipt,
        "redacted_by": redacted_by,
        "pdu": serde_json::from_str::<Value>(&room.raw(idx)?).unwrap_or(Value::Null),
        "pruned_pdu": crate::http::outgoing_pdu(room, idx, true)?,
        "prev_events": prev_events,
        "auth_events": auth_events,
        "auth_chain": auth_chain,
        "state_before": state_json(room, e.state_before)?,
        "state_after": state_json(room, e.state_after)?,
        "state_diff": diff,
        "visible_to": visible,
        "resolution": resolution,
    }))
}
