//! The receipt pipeline: [`Room::ingest`] and its batch and prepared forms
//! run a PDU through the spec's "Checks performed on receipt of a PDU" (see
//! the [module docs](super)), and an event that passes is stored.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::auth_chain::AuthNode;
use crate::auth_rules::{
    auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules, Allowed, AuthRejection,
    AuthState, CreateEnvelope,
};
use crate::canonical_json::object_to_canonical_string;
use crate::event::{EventStatus, EventsMark, Facts, NewEvent, StoredEvent};
use crate::ids::{EventId, EventIdx};
use crate::pdu::{parse_pdu, parse_stored_pdu, ParsedPdu, PduFormatError};
use crate::placement::{EventRecord, Placement};
use crate::redaction::redact;
use crate::room_version::RoomVersionRules;
use crate::signatures::{prepare_batch, PreparedPdu, Signers, SIGNATURE_BATCH};
use crate::signing::{content_hash_and_size, decode_base64, KeyStore};
use crate::state_set::{StateMap, StateSetId};

use super::{bounded_reason, intern, DropStage, Outcome, PageError, Room, RoomInterner};

/// Most `prev_events` a PDU may list.
pub const MAX_PREV_EVENTS: usize = 20;

/// Most `auth_events` a PDU may list (in v12 the implied create event counts).
pub const MAX_AUTH_EVENTS: usize = 10;

/// Largest canonical PDU, in bytes.
pub const MAX_PDU_SIZE: usize = 65_536;

/// Largest identifier (`sender`, `room_id`, `state_key`, `type`, `event_id`).
pub const MAX_ID_LEN: usize = 255;

/// How much to trust a PDU's signatures.
#[derive(Clone)]
pub enum Verification<'k> {
    /// Check them with these keys.
    Keys(&'k dyn KeyStore),
    /// They were checked when the PDU was first stored (restoring from a store).
    AlreadyVerified,
    /// They were checked ahead of time with [`verify_pdu_signatures`] (e.g. on
    /// another thread); this is the result.
    ///
    /// [`verify_pdu_signatures`]: crate::signatures::verify_pdu_signatures
    Precomputed(Result<(), String>),
    /// Do not look at signatures at all, not even for their presence: for
    /// test vectors and scenario DAGs that carry none. Never use this for
    /// events from the network.
    Unsigned,
}

/// How an event is stored (from its [`Placement`] and what is placed).
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// In the DAG, its state from its prev events.
    Placed,
    /// In the DAG, its state from a remote answer (some prev events are not placed).
    WithState(StateMap),
    /// A history event whose prev events are not placed: an outlier until a rebuild.
    Pending,
    /// Known only as state or auth chain.
    Outlier,
}

impl Room {
    /// Receives one live PDU (see the module docs for the checks): every
    /// prev and auth event must be stored and placed.
    pub fn ingest(&mut self, raw: &str, verification: Verification<'_>) -> Outcome {
        self.ingest_as(raw, Placement::Timeline, verification)
    }

    /// Receives one PDU placed as `placement` says (see [`crate::placement`]).
    pub fn ingest_as(&mut self, raw: &str, placement: Placement<'_>, verification: Verification<'_>) -> Outcome {
        let parsed = parse_pdu(raw, self.rules);
        self.receive(raw, parsed, placement, verification)
    }

    /// The receipt checks of a PDU whose format check (1) gave `parsed`;
    /// a dropped PDU goes to the dropped-PDU log.
    fn receive(
        &mut self,
        raw: &str,
        parsed: Result<ParsedPdu, PduFormatError>,
        placement: Placement<'_>,
        verification: Verification<'_>,
    ) -> Outcome {
        // Built blocks of the event table past the budget (the states'
        // are trimmed as states are interned), settled messages' ID
        // entries paged.
        self.trim_events();
        let outcome = match parsed {
            Ok(pdu) => self.ingest_parsed(raw, pdu, placement, verification),
            Err(e) => Outcome::drop(None, DropStage::Parse, e.to_string()),
        };
        self.log_drop(&outcome);
        outcome
    }

    /// Receives a PDU again from this room's own store, where it was recorded
    /// under `event_id` (see [`crate::placement::restore`]): the same checks
    /// as [`ingest_as`](Self::ingest_as) with [`Verification::AlreadyVerified`],
    /// without hashing the event again for its ID. The ID is not checked
    /// against the PDU: a store is trusted with what this engine wrote to it.
    pub fn restore_as(&mut self, raw: &str, event_id: &str, placement: Placement<'_>) -> Outcome {
        let parsed = match EventId::new(event_id) {
            Some(id) => parse_stored_pdu(raw, self.rules, &id),
            None => parse_pdu(raw, self.rules),
        };
        self.receive(raw, parsed, placement, Verification::AlreadyVerified)
    }

    /// Receives PDUs in order, placed as `placement` says, with their
    /// signatures checked [`SIGNATURE_BATCH`] at a time (one ed25519 batch
    /// verification each, about twice as fast per signature): the outcomes
    /// are those [`ingest_as`](Self::ingest_as) gives one by one. Stops after
    /// the first outcome for which `stop` holds (the caller decides whether
    /// to go on, e.g. a bound on rejected events), so the result may be a
    /// prefix.
    pub fn ingest_batch(
        &mut self,
        raws: &[&str],
        placement: Placement<'_>,
        keys: &dyn KeyStore,
        stop: impl Fn(&Outcome) -> bool,
    ) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(raws.len());
        for chunk in raws.chunks(SIGNATURE_BATCH) {
            for (raw, p) in chunk.iter().zip(prepare_batch(chunk, self.rules, keys)) {
                let outcome = self.ingest_prepared_as(raw, placement, p);
                let done = stop(&outcome);
                out.push(outcome);
                if done {
                    return out;
                }
            }
        }
        out
    }

    /// Receives one PDU prepared by [`prepare_batch`] (parsed, signatures
    /// checked in a batch): the same checks as [`ingest`](Self::ingest)
    /// without parsing it again.
    pub fn ingest_prepared(&mut self, raw: &str, prepared: PreparedPdu) -> Outcome {
        self.ingest_prepared_as(raw, Placement::Timeline, prepared)
    }

    fn ingest_prepared_as(&mut self, raw: &str, placement: Placement<'_>, prepared: PreparedPdu) -> Outcome {
        // An unparseable PDU is parsed again here for its format error.
        let parsed = prepared.parsed.map_or_else(|| parse_pdu(raw, self.rules), Ok);
        self.receive(raw, parsed, placement, Verification::Precomputed(prepared.verdict))
    }

    /// The receipt checks after the format check (1).
    fn ingest_parsed(
        &mut self,
        raw: &str,
        pdu: ParsedPdu,
        placement: Placement<'_>,
        verification: Verification<'_>,
    ) -> Outcome {
        let rules = self.rules;
        let id = pdu.event_id.clone();
        // 2. Duplicates, counts, room.
        let stored = match self.lookup(id.as_str()) {
            Ok(stored) => stored,
            Err(e) => return Outcome::drop(Some(&id), DropStage::Store, e.to_string()),
        };
        if let Some(existing) = stored {
            if let Err(e) = self.outlier_seen_in_timeline(existing, &pdu, placement) {
                return Outcome::drop(Some(&id), DropStage::Store, e.to_string());
            }
            return Outcome::Duplicate { event_id: id };
        }
        if self.deferred.contains_key(id.as_str()) {
            return Outcome::Duplicate { event_id: id };
        }
        if pdu.prev_events.len() > MAX_PREV_EVENTS || pdu.auth_events.len() > MAX_AUTH_EVENTS {
            return Outcome::drop(Some(&id), DropStage::Parse, "too many prev_events or auth_events");
        }
        let is_create = pdu.event_type == "m.room.create" && pdu.state_key.as_deref() == Some("");
        if is_create {
            if self.room_id.is_some() {
                return Outcome::drop(Some(&id), DropStage::Parse, "second create event");
            }
            // The room's version is fixed by what it already stores: once it
            // holds events, a create event claiming another version is never
            // stored (it would be read by this version's rules). A first
            // create event goes through the auth rules, which reject an
            // unknown version as the reference server does.
            let claimed = pdu.json.get("content").and_then(|c| c.get("room_version"));
            let claimed = claimed.map_or(Some("1"), Value::as_str);
            if !self.events.is_empty() && claimed != Some(rules.id) {
                let claimed = claimed.map_or_else(|| "a non-string".to_owned(), |c| format!("{c:?}"));
                return Outcome::drop(
                    Some(&id),
                    DropStage::Parse,
                    format!("create event for room version {claimed} in a room of version {:?}", rules.id),
                );
            }
        } else if self.room_id.as_deref() != Some(pdu.room_id.as_str()) {
            return Outcome::drop(Some(&id), DropStage::Parse, "unknown room");
        }
        let signers = match Signers::of(&pdu, rules) {
            Ok(s) => s,
            Err(reason) => return Outcome::drop(Some(&id), DropStage::Signature, reason),
        };
        // 3. Signatures.
        let require_signed = !matches!(verification, Verification::Unsigned);
        let verified = match verification {
            Verification::Keys(keys) => signers.verify(&pdu, rules, keys),
            Verification::AlreadyVerified | Verification::Unsigned => Ok(()),
            Verification::Precomputed(result) => result,
        };
        if let Err(reason) = verified {
            return Outcome::drop(Some(&id), DropStage::Signature, reason);
        }
        // 4. Content hash.
        let mut json = pdu.json;
        // The canonical size of `json` comes with the content hash's
        // serialisation (until the event is redacted).
        let (redacted_on_receipt, mut canonical_size) = match json.get("hashes").and_then(|h| h.get("sha256")) {
            None => return Outcome::drop(Some(&id), DropStage::Hash, "Algorithm sha256 not in hashes"),
            Some(h) => match h.as_str().and_then(decode_base64) {
                None => return Outcome::drop(Some(&id), DropStage::Hash, "Invalid base64 in hashes.sha256"),
                Some(expected) => {
                    let (hash, size) = content_hash_and_size(&json);
                    (expected != hash, Some(size))
                }
            },
        };
        if redacted_on_receipt {
            canonical_size = None;
            let unsigned = json.get("unsigned").cloned();
            json = redact(&json, rules);
            if let Some(u) = unsigned {
                json.insert("unsigned".into(), u);
            }
        }
        // 5. Every auth event must be stored; prev events as the placement says.
        let mut auth_events = Vec::with_capacity(pdu.auth_events.len());
        let mut missing: Vec<&str> = Vec::new();
        let unreadable = |e: PageError| Outcome::drop(Some(&id), DropStage::Store, e.to_string());
        for e in pdu.auth_events.iter() {
            // Each is read now (a message listed as an auth event is read
            // back from the page store), so that the auth checks read them
            // from built blocks.
            match self.lookup(e).and_then(|found| found.map(|idx| self.event(idx).map(|_| idx)).transpose()) {
                Ok(Some(idx)) => auth_events.push(idx),
                Ok(None) => missing.push(e.as_str()),
                Err(e) => return unreadable(e),
            }
        }
        let mut prev_events = Vec::with_capacity(pdu.prev_events.len());
        let mut unplaced: Vec<&str> = Vec::new();
        // The PDU's first prev event, if stored (placed or not).
        let mut first_prev = None;
        for (i, e) in pdu.prev_events.iter().enumerate() {
            let found = match self.lookup(e) {
                Ok(found) => found,
                Err(e) => return unreadable(e),
            };
            if i == 0 {
                first_prev = found;
            }
            match found.map(|idx| self.event(idx).map(|ev| (idx, ev.outlier))).transpose() {
                Ok(Some((idx, false))) => prev_events.push(idx),
                Ok(_) => unplaced.push(e.as_str()),
                Err(e) => return unreadable(e),
            }
        }
        if placement == Placement::History && !missing.is_empty() {
            return self.defer(raw, &id, &pdu.prev_events, &pdu.auth_events, pdu.depth);
        }
        let mode = match placement {
            Placement::Outlier => Mode::Outlier,
            Placement::Timeline | Placement::Live => {
                missing.extend(&unplaced);
                Mode::Placed
            }
            _ if unplaced.is_empty() => Mode::Placed,
            Placement::History | Placement::SoftFailed => Mode::Pending,
            Placement::WithState(state) => match self.remote_state(state) {
                Ok(map) => Mode::WithState(map),
                Err((stage, reason)) => return Outcome::drop(Some(&id), stage, reason),
            },
        };
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Outcome::drop(Some(&id), DropStage::Missing, format!("unknown prev/auth events {missing:?}"));
        }
        // 6. The state before the event: none for outliers; the remote
        // state where prev events are missing. Every event of type
        // m.room.create starts from the empty state (the create rules look
        // at no state).
        let state_before = match &mode {
            Mode::Outlier | Mode::Pending => StateSetId::EMPTY,
            Mode::WithState(map) => self.states.intern(map.clone(), self.events.pages()),
            Mode::Placed if pdu.event_type == "m.room.create" => StateSetId::EMPTY,
            Mode::Placed => match self.resolve_after(&prev_events) {
                Ok(state) => state,
                Err(e) => return Outcome::drop(Some(&id), DropStage::Store, e.to_string()),
            },
        };
        let outlier = matches!(mode, Mode::Outlier | Mode::Pending);
        // Build the compact view.
        let sender = intern(&mut self.strings, &pdu.sender);
        let event_type = intern(&mut self.strings, &pdu.event_type);
        let state_key = pdu.state_key.as_deref().map(|s| intern(&mut self.strings, s));
        let key = state_key.as_ref().map(|sk| self.intern_key(&event_type, sk));
        // 7a. Canonical size and identifier lengths.
        let limits = check_limits(
            &json,
            canonical_size,
            [
                ("sender", Some(&pdu.sender)),
                ("room_id", Some(&pdu.room_id)),
                ("state_key", pdu.state_key.as_deref()),
                ("type", Some(&pdu.event_type)),
                ("event_id", Some(id.as_str())),
            ],
            rules,
        );
        if let Err(LimitError::Unpersistable(reason)) = &limits {
            return Outcome::drop(Some(&id), DropStage::Parse, reason.clone());
        }
        let mut names = RoomInterner { strings: &mut self.strings, level_chunks: &mut self.level_chunks };
        let facts = Facts::extract_with(&json, rules, &mut names);
        let mark = self.events.mark();
        let prepared = self.events.prepare(NewEvent {
            id: id.as_str(),
            raw,
            prev_events: &prev_events,
            pdu_prev_count: pdu.prev_events.len(),
            first_prev,
            outlier,
            auth_events: &auth_events,
            sender,
            event_type,
            state_key,
            key,
            depth: pdu.depth,
            origin_server_ts: pdu.origin_server_ts,
            facts,
            state_before,
            redacted_on_receipt,
        });
        let mut event = match prepared {
            Ok(event) => event,
            Err(e) => return Outcome::drop(Some(&id), DropStage::Store, e.to_string()),
        };
        let idx = event.idx;
        let mut rejection: Option<String> = None;
        // The state before the event, built before the checks read it (its
        // chunks may be rows of the page store).
        let before = if outlier { Ok(None) } else { self.state(state_before).map(|m| Some(m.clone())) };
        let before = match before {
            Ok(before) => before,
            Err(e) => return self.discard(&event, mark, &id, DropStage::Store, e.to_string()),
        };
        // 7. Size limits, then the auth rules.
        let verdict = match limits {
            Err(LimitError::Unpersistable(_)) => unreachable!("returned above"),
            Err(LimitError::Reject(r)) => Err(r),
            Ok(()) => self.check_signed_by(&json, &signers, require_signed).and_then(|()| {
                let envelope = CreateEnvelope { room_id: pdu.has_room_id.then_some(pdu.room_id.as_str()) };
                self.check_auth(&event, &envelope, before.as_ref())
            }),
        };
        // Receipt check 6, soft failure: its check raises like the auth rules
        // do, and an error that is not an AuthError drops the event too. It
        // reads the current state (built first: it may need rows).
        let current = match (&verdict, placement) {
            (Ok(_), Placement::Live) if self.may_soft_fail(&event) => match self.current_state_map() {
                Ok(current) => Some(current),
                Err(e) => return self.discard(&event, mark, &id, DropStage::Store, e.to_string()),
            },
            _ => None,
        };
        let verdict = verdict.and_then(|allowed| {
            let soft_failed = match (placement, &current) {
                (Placement::SoftFailed, _) => mode == Mode::Placed,
                (Placement::Live, Some(current)) => self.soft_fails(&event, current)?,
                _ => false,
            };
            Ok((allowed, soft_failed))
        });
        match verdict {
            Ok((allowed, soft_failed)) => {
                event.recheck_redaction = allowed.recheck_redaction;
                event.soft_failed = soft_failed;
            }
            // Synapse stores an event as rejected only on an AuthError; any
            // other error of its auth rules means it never stores it.
            Err(reason) if !reason.is_authorization_failure() => {
                return self.discard(&event, mark, &id, DropStage::Auth, reason.to_string());
            }
            Err(reason) => {
                event.status = EventStatus::Rejected;
                rejection = Some(bounded_reason(reason.to_string()));
            }
        }
        // The target of an accepted redaction, if stored: looked up before
        // anything is kept (its ID may have to be read back from the page
        // store, which may fail).
        let redacts = match (&event.facts, event.status) {
            (Facts::Redaction(Some(target)), EventStatus::Accepted) => match self.lookup(target) {
                Ok(t) => t,
                Err(e) => return self.discard(&event, mark, &id, DropStage::Store, e.to_string()),
            },
            _ => None,
        };
        let target = match (&event.facts, redacts) {
            (Facts::Redaction(Some(target)), Some(t)) => Some((&**target, t)),
            _ => None,
        };
        if let Err(e) = self.read_redaction_parties(id.as_str(), target) {
            return self.discard(&event, mark, &id, DropStage::Store, e.to_string());
        }
        let outcome = match &rejection {
            None => Outcome::Accepted { event_id: id, redacted_on_receipt },
            Some(reason) => {
                self.rejections.insert(idx, reason.as_str().into());
                Outcome::Rejected { event_id: id, reason: reason.clone(), redacted_on_receipt }
            }
        };
        if is_create && event.is_accepted() {
            self.room_id = Some(pdu.room_id);
        }
        let record = self.keep_records.then(|| {
            let state = match &mode {
                Mode::WithState(map) => Some(map.iter().map(|(_, e)| self.state_id(e).to_owned()).collect()),
                _ => None,
            };
            let mut record = EventRecord::with_kind(
                self.events.resident_id(&event),
                raw,
                Some(event.status),
                placement.kind(),
                state,
            );
            record.soft_failed = event.soft_failed;
            record
        });
        if matches!(mode, Mode::Pending | Mode::WithState(_)) {
            self.unplaced_prevs.insert(idx, unplaced.iter().map(|p| Box::from(*p)).collect());
        }
        self.commit(event, redacts, before.as_ref());
        if mode == Mode::Pending {
            self.make_pending(idx);
        }
        self.new_records.extend(record);
        outcome
    }

    /// Receipt check 6 (the reference server's `_check_for_soft_fail`): an
    /// event whose prev events are not the forward extremities must also
    /// pass the state-dependent auth rules against the room's current state
    /// (its auth types of it); otherwise it is soft failed.
    ///
    /// An error of the auth rules that is not an authorization failure is
    /// returned: Synapse's `_check_for_soft_fail` catches only `AuthError`,
    /// so the event is never stored. `current`: the room's current state,
    /// read when [`may_soft_fail`](Self::may_soft_fail).
    fn soft_fails(&self, event: &StoredEvent, current: &StateMap) -> Result<bool, AuthRejection> {
        let types = auth_types_for_event(event, self.rules)?;
        let auth: Vec<&StoredEvent> = types
            .iter()
            .filter_map(|(t, k)| self.key_of(t, k).and_then(|key| current.get(key)))
            .map(|e| self.state_event(e))
            .collect();
        match check_state_dependent_auth_rules(event, &AuthState::from_events(auth), self.rules) {
            Ok(_) => Ok(false),
            Err(e) if e.is_authorization_failure() => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Drops a prepared event that is not kept after all: the event table
    /// cut back to `mark` (its row undone), and the drop's outcome.
    fn discard(
        &mut self,
        event: &StoredEvent,
        mark: EventsMark,
        id: &EventId,
        stage: DropStage,
        reason: String,
    ) -> Outcome {
        self.events.discard(event, mark);
        Outcome::drop(Some(id), stage, reason)
    }

    /// Whether receipt check 6 applies: the event's prev events are not the
    /// forward extremities (and it is not a create event).
    fn may_soft_fail(&self, event: &StoredEvent) -> bool {
        let prevs: BTreeSet<EventIdx> = self.events.held_prev_events(event).iter().copied().collect();
        !(prevs.iter().eq(self.extremities.keys()) || event.is_create_type())
    }

    /// The signatures an event must carry (checked again after the hash check,
    /// as the stored form is what counts).
    fn check_signed_by(
        &self,
        json: &Map<String, Value>,
        signers: &Signers,
        required: bool,
    ) -> Result<(), AuthRejection> {
        if !required {
            return Ok(());
        }
        let signed_by = |server: &str| json.get("signatures").and_then(|s| s.get(server)).is_some();
        if !signers.is_3pid_invite && !signed_by(&signers.sender_domain) {
            return Err(AuthRejection::Malformed("Event not signed by sender's server".into()));
        }
        if let Some(d) = &signers.authoriser_domain {
            if !signed_by(d) {
                return Err(AuthRejection::Malformed("Event not signed by authorising server".into()));
            }
        }
        Ok(())
    }

    /// The auth rules against the event's auth events, then against the
    /// state before it (`before`, built) when that state would pick
    /// different auth events. Outliers (no `before`) are checked against
    /// their auth events only.
    fn check_auth(
        &self,
        event: &StoredEvent,
        envelope: &CreateEnvelope<'_>,
        before: Option<&StateMap>,
    ) -> Result<Allowed, AuthRejection> {
        // Read when they were looked up (`receive`): built, or state events.
        let claimed: Vec<&StoredEvent> =
            self.events.held_auth_events(event).iter().map(|a| self.state_event(*a)).collect();
        check_state_independent_auth_rules(event, envelope, &claimed, &self.events, self.rules)?;
        let mut allowed =
            check_state_dependent_auth_rules(event, &AuthState::from_events(claimed.iter().copied()), self.rules)?;
        let Some(before) = before.filter(|_| !event.is_create_type()) else {
            return Ok(allowed);
        };
        let mut calculated: Vec<EventIdx> = auth_types_for_event(event, self.rules)?
            .iter()
            .filter_map(|(t, k)| self.key_of(t, k).and_then(|key| before.get(key)))
            .collect();
        let mut claimed_ids: Vec<EventIdx> = self.events.held_auth_events(event).to_vec();
        calculated.sort();
        claimed_ids.sort();
        if calculated != claimed_ids {
            let state = AuthState::from_events(calculated.iter().map(|e| self.state_event(*e)));
            let again = check_state_dependent_auth_rules(event, &state, self.rules)?;
            allowed.recheck_redaction |= again.recheck_redaction;
        }
        Ok(allowed)
    }

    /// Keeps a prepared event; `redacts`: the stored target of an accepted
    /// redaction; `before`: the state before it, built (none for outliers).
    fn commit(&mut self, mut event: StoredEvent, redacts: Option<EventIdx>, before: Option<&StateMap>) {
        let idx = event.idx;
        if event.is_accepted() {
            if let Some(k) = event.key {
                if let Some(before) = before.filter(|_| !event.outlier) {
                    let after = before.with_changes(&[(k, Some(idx))]);
                    event.state_after = self.states.intern(after, self.events.pages());
                }
                let parents: Vec<AuthNode> = self
                    .events
                    .held_auth_events(&event)
                    .iter()
                    .filter_map(|a| self.events.auth_node_of(a.ix()).map(AuthNode))
                    .collect();
                let node = self.auth_index.add(idx, &parents);
                event.set_auth_node(node.0);
            }
        }
        if event.is_accepted() && !event.outlier && !event.soft_failed {
            for p in self.events.held_prev_events(&event) {
                if !self.referenced.get(p.ix()) {
                    self.referenced.set(p.ix(), true);
                    if self.checkpoint_open {
                        self.referenced_log.push(*p);
                    }
                }
                self.extremities.remove(p);
            }
            self.extremities.insert(idx, event.state_after);
        }
        if !event.outlier {
            self.timeline_min_depth = Some(self.timeline_min_depth.map_or(event.depth, |d| d.min(event.depth)));
        }
        let id = EventId::new(self.events.resident_id(&event)).expect("stored event IDs start with $");
        self.by_id.insert(id.as_str(), idx);
        self.referenced.push(false);
        let accepted_redaction = match (&event.facts, event.status) {
            (Facts::Redaction(Some(target)), EventStatus::Accepted) => Some(target.clone()),
            _ => None,
        };
        self.events.push(event);
        self.caches.get_mut().current = None;
        // What these read was read before the event was kept
        // (`read_redaction_parties`), so they do not fail.
        if let Some(target) = accepted_redaction {
            self.redactions.pending.entry(target.clone()).or_default().push(idx);
            if let Some(t) = redacts {
                let _ = self.apply_pending_redactions(&target, t);
            }
        }
        let _ = self.apply_pending_redactions(id.as_str(), idx);
    }
}

enum LimitError {
    Unpersistable(String),
    Reject(AuthRejection),
}

/// Canonical size and identifier lengths (the reference server's
/// `validate_event_for_room_version`): too large is unpersistable; an
/// identifier over 255 bytes but not 255 code points is only rejected
/// before room v11.
fn check_limits(
    json: &Map<String, Value>,
    canonical_size: Option<usize>,
    fields: [(&str, Option<&str>); 5],
    rules: &RoomVersionRules,
) -> Result<(), LimitError> {
    if canonical_size.unwrap_or_else(|| object_to_canonical_string(json).len()) > MAX_PDU_SIZE {
        return Err(LimitError::Unpersistable("event too large".into()));
    }
    for (name, value) in fields {
        if value.is_some_and(|v| v.chars().count() > MAX_ID_LEN) {
            return Err(LimitError::Unpersistable(format!("'{name}' too large")));
        }
    }
    for (name, value) in fields {
        if value.is_some_and(|v| v.len() > MAX_ID_LEN) {
            let reason = format!("'{name}' too large");
            return Err(if rules.strict_event_byte_limits {
                LimitError::Unpersistable(reason)
            } else {
                LimitError::Reject(AuthRejection::Malformed(reason))
            });
        }
    }
    Ok(())
}
