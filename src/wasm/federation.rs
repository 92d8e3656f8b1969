//! Bindings of the requesting side of federation ([`crate::membership`],
//! [`crate::history`]): request targets and answer checks, as JSON text.
//! Conversion only.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use super::{js_error, to_json, WasmKeyRing};
use crate::history::{self, FetchedPdus};
use crate::membership::{self, MembershipError, SignedMembership};
use crate::room_version::RoomVersionRules;

fn parse(text: &str, what: &str) -> Result<Value, JsError> {
    serde_json::from_str(text).map_err(|e| js_error(format!("{what} is not JSON: {e}")))
}

fn rules(version: &str) -> Result<&'static RoomVersionRules, JsError> {
    RoomVersionRules::supported(version).map_err(js_error)
}

fn fetched_json(f: FetchedPdus) -> String {
    let pdus: Vec<Value> =
        f.pdus.into_iter().map(|p| json!({"eventId": p.event_id, "depth": p.depth, "raw": p.raw})).collect();
    to_json(&json!({"pdus": pdus, "skipped": f.skipped}))
}

/// `make_join` target (every room version we support).
#[wasm_bindgen(js_name = makeJoinTarget)]
pub fn make_join_target(room_id: &str, user_id: &str) -> String {
    membership::make_join_target(room_id, user_id)
}

/// `make_leave` target.
#[wasm_bindgen(js_name = makeLeaveTarget)]
pub fn make_leave_target(room_id: &str, user_id: &str) -> String {
    membership::make_leave_target(room_id, user_id)
}

/// `send_join` v2 target.
#[wasm_bindgen(js_name = sendJoinTarget)]
pub fn send_join_target(room_id: &str, event_id: &str) -> String {
    membership::send_join_target(room_id, event_id)
}

/// `send_leave` v2 target.
#[wasm_bindgen(js_name = sendLeaveTarget)]
pub fn send_leave_target(room_id: &str, event_id: &str) -> String {
    membership::send_leave_target(room_id, event_id)
}

/// Checks a `make_join`/`make_leave` answer and builds our signed event:
/// JSON `{roomVersion, eventId, pdu}`.
#[wasm_bindgen(js_name = buildMembershipEvent)]
#[allow(clippy::too_many_arguments)]
pub fn build_membership_event(
    response: &str,
    room_id: &str,
    user_id: &str,
    membership_value: &str,
    server: &str,
    key_id: &str,
    seed: &str,
) -> Result<String, JsError> {
    let k = super::signing_key(server, key_id, seed)?;
    let m = membership::build_membership_event(&parse(response, "the answer")?, room_id, user_id, membership_value, &k)
        .map_err(js_error)?;
    Ok(to_json(&json!({"roomVersion": m.room_version.id, "eventId": m.event_id, "pdu": Value::Object(m.pdu)})))
}

/// Checks a `send_join` v2 answer for our join (`pdu`, from
/// `buildMembershipEvent`): JSON `{outliers: [raw…], stateIds, event, serversInRoom}`.
#[wasm_bindgen(js_name = checkSendJoinResponse)]
pub fn check_send_join_response(
    response: &str,
    room_version: &str,
    event_id: &str,
    pdu: &str,
) -> Result<String, JsError> {
    let Value::Object(pdu) = parse(pdu, "our join event")? else {
        return Err(js_error("our join event is not an object"));
    };
    let join = SignedMembership { room_version: rules(room_version)?, event_id: event_id.to_owned(), pdu };
    let s = membership::check_send_join_response(&parse(response, "the answer")?, &join).map_err(js_error)?;
    Ok(to_json(
        &json!({"outliers": s.outliers, "stateIds": s.state_ids, "event": s.event, "serversInRoom": s.servers_in_room}),
    ))
}

/// The user we join as (`null` if `@localpart:serverName` is not a valid user ID).
#[wasm_bindgen(js_name = joinUserId)]
pub fn join_user_id(localpart: &str, server_name: &str) -> Option<String> {
    membership::join_user_id(localpart, server_name)
}

/// Checks an invite for `ourUser` from `origin` and countersigns it: JSON
/// `{roomVersion, event, inviterServer}`, or `{status, body}` with the
/// spec's error.
#[wasm_bindgen(js_name = acceptInvite)]
#[allow(clippy::too_many_arguments)]
pub fn accept_invite(
    body: &str,
    v2: bool,
    room_id: &str,
    event_id: &str,
    our_user: &str,
    origin: &str,
    keys: &WasmKeyRing,
    server: &str,
    key_id: &str,
    seed: &str,
) -> Result<String, JsError> {
    let k = super::signing_key(server, key_id, seed)?;
    let body = match serde_json::from_str::<Value>(body) {
        Ok(b) => b,
        Err(e) => {
            return Ok(to_json(&json!({"status": 400, "body": {"errcode": "M_NOT_JSON", "error": e.to_string()}})))
        }
    };
    Ok(to_json(&match membership::accept_invite(&body, v2, room_id, event_id, our_user, origin, &keys.ring, &k) {
        Ok(a) => {
            json!({"roomVersion": a.room_version.id, "event": Value::Object(a.event), "inviterServer": a.inviter_server})
        }
        Err(MembershipError::InviteRefused { status, errcode, reason }) => {
            json!({"status": status, "body": {"errcode": errcode, "error": reason}})
        }
        Err(e) => json!({"status": 400, "body": {"errcode": "M_BAD_JSON", "error": e.to_string()}}),
    }))
}

/// `/backfill` target from backward extremities.
#[wasm_bindgen(js_name = backfillTarget)]
pub fn backfill_target(room_id: &str, v: Vec<String>, limit: u32) -> String {
    history::backfill_target(room_id, &v, limit as usize)
}

/// Checks a `/backfill` answer: JSON `{pdus: [{eventId, depth, raw}], skipped}`, oldest first.
#[wasm_bindgen(js_name = checkBackfillResponse)]
pub fn check_backfill_response(
    response: &str,
    room_version: &str,
    room_id: &str,
    limit: u32,
) -> Result<String, JsError> {
    let f = history::check_backfill_response(
        &parse(response, "the answer")?,
        rules(room_version)?,
        room_id,
        limit as usize,
    )
    .map_err(js_error)?;
    Ok(fetched_json(f))
}

/// `/get_missing_events`: JSON `{target, body}`.
#[wasm_bindgen(js_name = getMissingEventsRequest)]
pub fn get_missing_events_request(
    room_id: &str,
    earliest: Vec<String>,
    latest: Vec<String>,
    limit: u32,
    min_depth: f64,
) -> String {
    let (target, body) =
        history::get_missing_events_request(room_id, &earliest, &latest, limit as usize, min_depth as i64);
    to_json(&json!({"target": target, "body": body}))
}

/// Checks a `/get_missing_events` answer (as `checkBackfillResponse`).
#[wasm_bindgen(js_name = checkGetMissingEventsResponse)]
pub fn check_get_missing_events_response(
    response: &str,
    room_version: &str,
    room_id: &str,
    limit: u32,
) -> Result<String, JsError> {
    let f = history::check_get_missing_events_response(
        &parse(response, "the answer")?,
        rules(room_version)?,
        room_id,
        limit as usize,
    )
    .map_err(js_error)?;
    Ok(fetched_json(f))
}

/// `/event/{eventId}` target.
#[wasm_bindgen(js_name = eventTarget)]
pub fn event_target(event_id: &str) -> String {
    history::event_target(event_id)
}

/// Checks an `/event` answer: the PDU asked for, JSON `{eventId, depth, raw}`.
#[wasm_bindgen(js_name = checkEventResponse)]
pub fn check_event_response(
    response: &str,
    room_version: &str,
    room_id: &str,
    event_id: &str,
) -> Result<String, JsError> {
    let p = history::check_event_response(&parse(response, "the answer")?, rules(room_version)?, room_id, event_id)
        .map_err(js_error)?;
    Ok(to_json(&json!({"eventId": p.event_id, "depth": p.depth, "raw": p.raw})))
}

/// `/event_auth` target.
#[wasm_bindgen(js_name = eventAuthTarget)]
pub fn event_auth_target(room_id: &str, event_id: &str) -> String {
    history::event_auth_target(room_id, event_id)
}

/// Checks an `/event_auth` answer (as `checkBackfillResponse`).
#[wasm_bindgen(js_name = checkEventAuthResponse)]
pub fn check_event_auth_response(response: &str, room_version: &str, room_id: &str) -> Result<String, JsError> {
    let f = history::check_event_auth_response(&parse(response, "the answer")?, rules(room_version)?, room_id)
        .map_err(js_error)?;
    Ok(fetched_json(f))
}

/// `/state_ids` target.
#[wasm_bindgen(js_name = stateIdsTarget)]
pub fn state_ids_target(room_id: &str, event_id: &str) -> String {
    history::state_ids_target(room_id, event_id)
}

/// Checks a `/state_ids` answer: JSON `{pduIds, authChainIds}`.
#[wasm_bindgen(js_name = checkStateIdsResponse)]
pub fn check_state_ids_response(response: &str) -> Result<String, JsError> {
    let s = history::check_state_ids_response(&parse(response, "the answer")?).map_err(js_error)?;
    Ok(to_json(&json!({"pduIds": s.pdu_ids, "authChainIds": s.auth_chain_ids})))
}

/// Orders PDUs so that each follows its auth events among them (how a set of
/// fetched state and auth events is stored as outliers): indices into the lists.
#[wasm_bindgen(js_name = orderByAuth)]
pub fn order_by_auth(event_ids: Vec<String>, raws: Vec<String>) -> Result<Vec<u32>, JsError> {
    if event_ids.len() != raws.len() {
        return Err(js_error("orderByAuth: eventIds and raws differ in length"));
    }
    let pdus: Vec<(&str, &str)> = event_ids.iter().map(String::as_str).zip(raws.iter().map(String::as_str)).collect();
    Ok(crate::placement::order_by_auth(&pdus).into_iter().map(|i| i as u32).collect())
}

/// Orders pushed PDUs so that each follows its prev and auth events among
/// them (dependency order within a transaction): indices into the lists.
#[wasm_bindgen(js_name = orderForIngest)]
pub fn order_for_ingest(event_ids: Vec<String>, raws: Vec<String>) -> Result<Vec<u32>, JsError> {
    if event_ids.len() != raws.len() {
        return Err(js_error("orderForIngest: eventIds and raws differ in length"));
    }
    let pdus: Vec<(&str, &str)> = event_ids.iter().map(String::as_str).zip(raws.iter().map(String::as_str)).collect();
    Ok(crate::placement::order_by_prev_and_auth(&pdus).into_iter().map(|i| i as u32).collect())
}
