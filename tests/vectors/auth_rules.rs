//! `auth_rules.json`: one candidate event against a small room, and which
//! servers must have signed an event.
//!
//! The room is built by ingesting the case's events (`room_events`, else
//! `auth_state`) in order, without signatures ([`Verification::Unsigned`]:
//! the data carries none); each must be accepted, or rejected when listed in
//! `rejected_room_events`. Then the candidate is ingested and its outcome
//! compared with Synapse's verdict: allowed → accepted; refused while parsing
//! (`synapse_stage` `parse`) → dropped at the parse stage; refused by the auth
//! rules with an `AuthError` → rejected; refused by the auth rules with
//! another error (`synapse_reason` prefixed with its class, e.g.
//! `SynapseError: …` from `_check_power_levels`) → dropped at the auth stage,
//! as Synapse never stores such an event (contract.md, `dropped`). Reasons
//! are printed, not compared (the wording differs).
//!
//! `signature_requirements` carry dummy signatures, and Synapse only checked
//! that the required servers signed at all; they are ingested with
//! [`Verification::AlreadyVerified`] (no cryptography, but the presence rule
//! applies) into the room of the first case that holds their prev and auth
//! events.

use std::collections::HashSet;

use roomdag::room::DropStage;
use roomdag::{Outcome, Room, Verification};
use serde_json::Value;

use super::common::{array, describe, load, pdu_of, str_of, Report};

/// Cases where roomdag is known to disagree with Synapse (see the report).
const KNOWN_DIFFERENCES: &[&str] = &[];

/// Candidates the receipt pipeline drops before the auth rules run, with the
/// reason it must give. A second `m.room.create` for a room that already has
/// one is dropped ("second create event") by roomdag *and* by the project's
/// Synapse-driven conformance oracle (`../shared/oracle/oracle_core.py`,
/// `evaluate`), so it never reaches the auth rule the vector exercises
/// (Synapse's `check_state_independent_auth_rules`: "Create event has prev
/// events"). Checked exactly, so a change of behaviour shows up here.
const DROPPED_BEFORE_AUTH: &[(&str, &str)] = &[("create_with_prev_events_v10", "second create event")];

/// The events a case's room is built from.
fn room_events(case: &Value) -> &[Value] {
    case.get("room_events").map_or_else(|| array(case, "auth_state"), |_| array(case, "room_events"))
}

/// Builds a case's room, reporting every setup event that does not get the
/// outcome Synapse gave it.
fn build_room(report: &mut Report, name: &str, case: &Value) -> Room {
    let mut room = Room::new(str_of(case, "room_version")).expect("supported room version");
    let rejected: HashSet<&str> = case
        .get("rejected_room_events")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for event in room_events(case) {
        let (pdu, id) = pdu_of(event);
        let id = id.expect("room events carry their event_id");
        let outcome = room.ingest(&pdu, Verification::Unsigned);
        let want = if rejected.contains(id.as_str()) { "rejected" } else { "accepted" };
        if outcome.status() != want || outcome.event_id().map(|e| e.as_str()) != Some(id.as_str()) {
            report.fail(name, format!("room event {id}: Synapse {want} / roomdag {}", describe(&outcome)));
        }
    }
    room
}

/// Whether Synapse's refusal was an error other than an `AuthError` (the
/// generator prefixes those with their class: `SynapseError: …`).
fn not_an_auth_error(reason: Option<&str>) -> bool {
    reason
        .and_then(|r| r.split_once(": "))
        .is_some_and(|(class, _)| class.ends_with("Error") && class != "AuthError" && !class.contains(' '))
}

/// Whether the outcome is what Synapse's verdict maps to.
fn matches(outcome: &Outcome, allowed: bool, stage: Option<&str>, reason: Option<&str>) -> bool {
    match (allowed, stage) {
        (true, _) => matches!(outcome, Outcome::Accepted { .. }),
        (false, Some("parse")) => matches!(outcome, Outcome::Dropped { stage: DropStage::Parse, .. }),
        (false, _) if not_an_auth_error(reason) => matches!(outcome, Outcome::Dropped { stage: DropStage::Auth, .. }),
        (false, _) => matches!(outcome, Outcome::Rejected { .. }),
    }
}

#[test]
fn auth_rules_match_synapse() {
    let data = load("auth_rules.json");
    let cases = array(&data, "cases");
    let mut report = Report::new("auth_rules");
    for case in cases {
        let name = str_of(case, "name");
        report.case(name);
        let mut room = build_room(&mut report, name, case);
        let (pdu, id) = pdu_of(&case["event"]);
        let outcome = room.ingest(&pdu, Verification::Unsigned);
        let allowed = case["allowed"].as_bool().expect("allowed");
        let stage = case["synapse_stage"].as_str();
        if let Some((_, reason)) = DROPPED_BEFORE_AUTH.iter().find(|(n, _)| *n == name) {
            assert!(!allowed, "{name}: DROPPED_BEFORE_AUTH lists a case Synapse allows");
            if !matches!(&outcome, Outcome::Dropped { stage: DropStage::Parse, reason: r, .. } if r == reason) {
                report.fail(
                    name,
                    format!("expected a drop before the auth rules ({reason:?}); roomdag {}", describe(&outcome)),
                );
            }
        } else if !matches(&outcome, allowed, stage, case["synapse_reason"].as_str()) {
            let synapse = match allowed {
                true => "allowed".to_owned(),
                false => format!("refused at {} ({})", stage.unwrap_or("?"), case["synapse_reason"]),
            };
            report
                .fail(name, format!("candidate: Synapse {synapse} / roomdag {}\n      PDU: {pdu}", describe(&outcome)));
        }
        if let (Some(want), Some(got)) = (id.as_deref(), outcome.event_id()) {
            report.check_eq(name, "candidate event ID", got.as_str(), want);
        }
    }

    for req in array(&data, "signature_requirements") {
        let name = format!("signature_requirements/{}", str_of(req, "name"));
        report.case(&name);
        let event = &req["event"];
        let needed: Vec<&str> = ["prev_events", "auth_events"]
            .iter()
            .flat_map(|k| array(event, k).iter().filter_map(Value::as_str))
            .collect();
        let host = cases.iter().find(|c| {
            c["room_version"] == req["room_version"] && {
                let ids: HashSet<&str> = room_events(c).iter().filter_map(|e| e["event_id"].as_str()).collect();
                needed.iter().all(|n| ids.contains(n))
            }
        });
        let Some(host) = host else {
            report.fail(&name, "no case's room holds this event's prev and auth events");
            continue;
        };
        let mut room = build_room(&mut report, &name, host);
        let (pdu, id) = pdu_of(event);
        let outcome = room.ingest(&pdu, Verification::AlreadyVerified);
        let synapse_ok = req["synapse_ok"].as_bool().expect("synapse_ok");
        let signature_refusal = |reason: &str| reason.contains("signed by");
        let ok = match (&outcome, synapse_ok) {
            (Outcome::Rejected { reason, .. }, false) => Some(reason.as_str()) == req["synapse_reason"].as_str(),
            (_, false) => false,
            // Signed as required: whatever the auth rules say, not refused for signatures.
            (Outcome::Accepted { .. }, true) => true,
            (Outcome::Rejected { reason, .. }, true) => !signature_refusal(reason),
            (_, true) => false,
        };
        if !ok {
            report.fail(
                &name,
                format!(
                    "Synapse {} ({}) / roomdag {}\n      PDU: {pdu}",
                    if synapse_ok { "signatures sufficient" } else { "signatures insufficient" },
                    req["synapse_reason"],
                    describe(&outcome)
                ),
            );
        }
        if let (Some(want), Some(got)) = (id.as_deref(), outcome.event_id()) {
            report.check_eq(&name, "event ID", got.as_str(), want);
        }
    }
    report.finish(KNOWN_DIFFERENCES);
}
