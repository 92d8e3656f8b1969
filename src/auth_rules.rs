//! The authorization rules (spec: room versions, "Authorization rules"),
//! rooms v3–v12.
//!
//! The rules are split the way the reference server splits them:
//!
//! * [`check_state_independent_auth_rules`]: rules 1–2 (the create event;
//!   the shape of `auth_events`), which depend only on the event and the
//!   events it cites;
//! * [`check_state_dependent_auth_rules`]: rules 3 onwards, checked against
//!   some state (the event's own auth events, the state before it, or the
//!   partial state of an iterative auth check in state resolution).
//!
//! Where the reference implementation's rules raise an error that is not an
//! authorization failure — the plain `SynapseError` 400 of its power-levels
//! checks, or a Python exception on malformed content (a membership event
//! without `membership`, a power level that `int()` refuses, a
//! `third_party_invite` without `signed.token`) — the reference server never
//! stores the event: such a [`AuthRejection`] is not
//! [an authorization failure](AuthRejection::is_authorization_failure) and
//! the receiving room drops the PDU instead of storing it as rejected.

use std::fmt;

use serde_json::Value;

use crate::event::{Events, Facts, JoinRule, Membership, StoredEvent};
use crate::ids::{domain_of, is_user_id_shaped, is_valid_user_id};
use crate::power_levels::{for_each_level_change, Level, LevelMap, PowerLevels};
use crate::room_version::RoomVersionRules;
use crate::third_party_invite;

/// The power level of a room creator in room v12 (MSC4289): "infinite",
/// represented like the reference server as 2^53.
pub const CREATOR_POWER_LEVEL: i128 = 1 << 53;

/// Why an event failed the authorization rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// Rule 1.1: the create event has previous events.
    #[error("Create event has prev events")]
    CreateHasPrevEvents,
    /// Rule 1.2 (v12): the create event has a `room_id`.
    #[error("Create event has a room_id")]
    CreateHasRoomId,
    /// Rule 1.2 (pre-v12): room ID and sender domains differ.
    #[error("Creation event's room_id domain does not match sender's")]
    CreateRoomIdDomain,
    /// Rule 1.3: unknown `content.room_version`.
    #[error("room appears to have unsupported version {0}")]
    CreateUnknownRoomVersion(String),
    /// Rule 1.4 (pre-v11): no `creator`.
    #[error("Create event lacks a 'creator' property")]
    CreateLacksCreator,
    /// Rule 1.5 (v12): malformed `additional_creators`.
    #[error("invalid additional_creators: {0}")]
    CreateAdditionalCreators(&'static str),
    /// Rule 2.1: two auth events for one `(type, state_key)`.
    #[error("duplicate auth_events for ({0}, {1})")]
    DuplicateAuthEvent(String, String),
    /// Rule 2.2: an auth event the selection algorithm would not pick.
    #[error("unexpected auth_event {0} for ({1}, {2})")]
    UnexpectedAuthEvent(String, String, String),
    /// Rule 2.3: an auth event that was itself rejected.
    #[error("found rejected event {0} in the state")]
    RejectedAuthEvent(String),
    /// Rule 2.4: no create event among the auth events.
    #[error("No create event in auth events")]
    NoCreateEvent,
    /// Rule 3: the room does not federate and the sender is remote.
    #[error("This room has been marked as unfederatable.")]
    Unfederatable,
    /// Rule 4 (v1–v5): bad `m.room.aliases`.
    #[error("bad m.room.aliases event: {0}")]
    Aliases(&'static str),
    /// A membership event without `membership` or without a state key
    /// (the reference raises `KeyError` / `AttributeError`: not stored).
    #[error("membership event has no valid membership ({0})")]
    BadMembership(&'static str),
    /// Third-party invite not backed by a matching `m.room.third_party_invite`.
    #[error("You are not invited to this room.")]
    NotInvited,
    /// The target is banned.
    #[error("{0} is banned from the room")]
    TargetBanned(String),
    /// The sender is not joined.
    #[error("{0} not in room")]
    SenderNotJoined(String),
    /// An invite for someone already joined.
    #[error("{0} is already in the room.")]
    AlreadyJoined(String),
    /// Insufficient power to invite.
    #[error("You don't have permission to invite users")]
    CannotInvite,
    /// A join whose sender is not the target.
    #[error("Cannot force another user to join.")]
    ForcedJoin,
    /// A banned user tried to join.
    #[error("You are banned from this room")]
    Banned,
    /// A restricted join without a valid authorising user.
    #[error("restricted join not authorised: {0}")]
    RestrictedJoin(&'static str),
    /// A join under a join rule that does not allow it.
    #[error("You are not allowed to join this room")]
    JoinNotAllowed,
    /// An unban without ban power.
    #[error("You cannot unban user {0}.")]
    CannotUnban(String),
    /// A kick without enough power.
    #[error("You cannot kick user {0}.")]
    CannotKick(String),
    /// A ban without enough power.
    #[error("You don't have permission to ban this user")]
    CannotBan,
    /// A knock that the join rule or memberships forbid.
    #[error("You don't have permission to knock: {0}")]
    CannotKnock(&'static str),
    /// A membership value no rule allows.
    #[error("Unknown membership {0}")]
    UnknownMembership(String),
    /// The sender's level is below the event's required level.
    #[error(
        "You don't have permission to post that to the room. user_level ({user_level}) < send_level ({send_level})"
    )]
    InsufficientPower {
        /// The sender's level.
        user_level: i128,
        /// The level needed.
        send_level: i128,
    },
    /// A state key that names another user.
    #[error("You are not allowed to set others state")]
    OthersState,
    /// A malformed power-levels event or value (the reference raises a plain
    /// `SynapseError` or Python's `int()` fails: not stored).
    #[error("invalid power levels: {0}")]
    InvalidPowerLevels(String),
    /// A power-levels change beyond the sender's own level.
    #[error("You don't have permission to {0}")]
    PowerLevelChange(&'static str),
    /// Content the reference server's auth rules cannot process: an ID
    /// without a server name (`SynapseError("Invalid ID")`), a malformed
    /// `third_party_invite` or third-party public key (`KeyError`,
    /// `TypeError`, `ValueError`). Not an authorization failure: the event
    /// is never stored.
    #[error("cannot check the auth rules: {0}")]
    Unprocessable(String),
    /// Anything else that makes the event unusable.
    #[error("{0}")]
    Malformed(String),
}

impl AuthRejection {
    /// Whether the reference server reports this as an authorization failure
    /// (an `AuthError`), so that it stores the event as rejected.
    ///
    /// Otherwise its auth rules raised another error (`SynapseError` 400 in
    /// the power-levels checks, a Python exception on malformed content):
    /// `FederationEventHandler._check_event_auth` turns only an `AuthError`
    /// into a rejection, anything else escapes the PDU's processing and the
    /// event is never stored — the receiving room drops it.
    pub fn is_authorization_failure(&self) -> bool {
        !matches!(
            self,
            AuthRejection::BadMembership(_) | AuthRejection::InvalidPowerLevels(_) | AuthRejection::Unprocessable(_)
        )
    }
}

/// The outcome of a passed auth check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// A redaction whose sender lacks the `redact` level: it may only be
    /// applied to events from the same server (v3+ "handling redactions").
    pub recheck_redaction: bool,
}

type Result<T> = std::result::Result<T, AuthRejection>;

/// The state an event is checked against: events keyed by `(type, state_key)`.
///
/// A later entry for the same key replaces an earlier one, as in a map.
#[derive(Clone, Default)]
pub struct AuthState<'a> {
    entries: Vec<&'a StoredEvent>,
}

impl fmt::Debug for AuthState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| e.idx)).finish()
    }
}

impl<'a> AuthState<'a> {
    /// An empty state.
    pub fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// A state from events (later events replace earlier ones at the same key).
    pub fn from_events(events: impl IntoIterator<Item = &'a StoredEvent>) -> Self {
        let mut s = Self::new();
        for e in events {
            s.insert(e);
        }
        s
    }

    /// Sets the event at its `(type, state_key)`.
    pub fn insert(&mut self, e: &'a StoredEvent) {
        if let Some(slot) = self.entries.iter_mut().find(|x| x.event_type == e.event_type && x.state_key == e.state_key)
        {
            *slot = e;
        } else {
            self.entries.push(e);
        }
    }

    /// The event at `(type, state_key)`.
    pub fn get(&self, ty: &str, state_key: &str) -> Option<&'a StoredEvent> {
        self.entries.iter().copied().find(|e| e.is(ty, state_key))
    }

    fn create(&self) -> Option<&'a StoredEvent> {
        self.get("m.room.create", "")
    }

    fn power_levels(&self) -> Option<&'a PowerLevels> {
        match self.get("m.room.power_levels", "").map(|e| &e.facts) {
            Some(Facts::PowerLevels(pl)) => Some(pl),
            _ => None,
        }
    }

    fn membership_of(&self, user: &str) -> Option<&'a Membership> {
        self.get("m.room.member", user).and_then(StoredEvent::membership)
    }
}

/// A `(type, state_key)` pair that may authorise an event.
pub type AuthKey<'a> = (&'a str, &'a str);

/// The auth events selection algorithm (spec: server-server API, "Auth
/// events selection"): the keys of the state whose events authorise `event`.
pub fn auth_types_for_event<'a>(event: &'a StoredEvent, rules: &RoomVersionRules) -> Result<Vec<AuthKey<'a>>> {
    if event.is_create_type() {
        return Ok(Vec::new());
    }
    let key = |t: &'a str, k: &'a str| (t, k);
    let mut keys = Vec::with_capacity(6);
    keys.extend([key("m.room.power_levels", ""), key("m.room.member", &event.sender), key("m.room.create", "")]);
    if &*event.event_type == "m.room.member" {
        let Facts::Member(m) = &event.facts else {
            return Err(AuthRejection::BadMembership("member event without a state key"));
        };
        let target = event.state_key.as_deref().unwrap_or_default();
        match m.membership {
            Membership::Missing => return Err(AuthRejection::BadMembership("missing")),
            Membership::Join | Membership::Invite | Membership::Knock => keys.push(key("m.room.join_rules", "")),
            _ => {}
        }
        keys.push(key("m.room.member", target));
        if m.membership == Membership::Invite {
            if let Some(tpi) = &m.third_party_invite {
                // content["third_party_invite"]["signed"]["token"]: a KeyError or
                // TypeError for the reference when the path is not there, a
                // TypeError (unhashable) when the token is an array or object.
                let token = tpi
                    .get("signed")
                    .and_then(|s| s.get("token"))
                    .ok_or_else(|| AuthRejection::Unprocessable("third_party_invite without signed.token".into()))?;
                match token {
                    Value::String(token) => keys.push(key("m.room.third_party_invite", token)),
                    Value::Array(_) | Value::Object(_) => {
                        return Err(AuthRejection::Unprocessable("third_party_invite token is unhashable".into()))
                    }
                    // A number, boolean or null names no state key.
                    _ => {}
                }
            }
        }
        if rules.restricted_join_rule && m.membership == Membership::Join {
            if let Some(Value::String(u)) = &m.authorising_user {
                keys.push(key("m.room.member", u));
            }
        }
    }
    let mut seen = Vec::with_capacity(keys.len());
    for k in keys {
        if !seen.contains(&k) {
            seen.push(k);
        }
    }
    Ok(seen)
}

/// Facts of the create event being checked by rule 1 that live outside its content.
pub struct CreateEnvelope<'a> {
    /// The PDU's `room_id`, if it has one.
    pub room_id: Option<&'a str>,
}

/// Rule 1: the create event.
///
/// 1. If it has any previous events, reject.
/// 2. (v12) If it has a `room_id`, reject. (≤ v11) If the domain of the
///    room ID is not the sender's, reject.
/// 3. If `content.room_version` is present and not a known version, reject.
/// 4. (≤ v10) If `content` has no `creator`, reject.
/// 5. (v12) If `additional_creators` is not an array of valid user IDs, reject.
pub fn check_create(event: &StoredEvent, envelope: &CreateEnvelope<'_>, rules: &RoomVersionRules) -> Result<()> {
    if event.prev_count() > 0 {
        return Err(AuthRejection::CreateHasPrevEvents);
    }
    if rules.room_ids_as_hashes {
        if envelope.room_id.is_some() {
            return Err(AuthRejection::CreateHasRoomId);
        }
    } else {
        // get_domain_from_id raises SynapseError("Invalid ID") without a colon.
        let Some(room_domain) = envelope.room_id.and_then(domain_of) else {
            return Err(AuthRejection::Unprocessable(format!("Invalid ID: {:?}", envelope.room_id.unwrap_or(""))));
        };
        if Some(room_domain) != domain_of(&event.sender) {
            return Err(AuthRejection::CreateRoomIdDomain);
        }
    }
    let Facts::Create(c) = &event.facts else {
        return Err(AuthRejection::Malformed("create event without create facts".into()));
    };
    match &c.room_version {
        Some(v) if RoomVersionRules::known(v).is_some() => {}
        Some(v) => return Err(AuthRejection::CreateUnknownRoomVersion(v.clone())),
        None => return Err(AuthRejection::CreateUnknownRoomVersion("(not a string)".into())),
    }
    if !rules.implicit_room_creator && c.creator.is_none() {
        // A non-string `creator` is present for the reference server; only absence fails.
        if !c.creator_present {
            return Err(AuthRejection::CreateLacksCreator);
        }
    }
    if rules.creator_power {
        if let Some(raw) = &c.additional_creators_raw {
            let Value::Array(items) = raw else {
                return Err(AuthRejection::CreateAdditionalCreators("must be an array"));
            };
            for item in items {
                let Value::String(s) = item else {
                    return Err(AuthRejection::CreateAdditionalCreators("entry is not a string"));
                };
                if !is_valid_user_id(s) {
                    return Err(AuthRejection::CreateAdditionalCreators("entry is not a valid user ID"));
                }
                if s.chars().count() > 255 || s.len() > 255 {
                    return Err(AuthRejection::CreateAdditionalCreators("entry too long"));
                }
            }
        }
    }
    Ok(())
}

/// Rules 1–2: checks that do not depend on the room state.
///
/// `auth_events` are the events named in the event's `auth_events` (for v12,
/// including the implied create event), in that order.
pub fn check_state_independent_auth_rules(
    event: &StoredEvent,
    envelope: &CreateEnvelope<'_>,
    auth_events: &[&StoredEvent],
    events: &Events,
    rules: &RoomVersionRules,
) -> Result<()> {
    // 1. If type is m.room.create (whatever its state key): check it and allow.
    if event.is_create_type() {
        return check_create(event, envelope, rules);
    }
    // 2. Reject if the event has auth_events that:
    let expected = auth_types_for_event(event, rules)?;
    let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
    let mut has_create = false;
    for a in auth_events {
        let key = (&*a.event_type, a.state_key.as_deref());
        // 2.1 have duplicate entries for a given type and state_key pair;
        if seen.contains(&key) {
            return Err(AuthRejection::DuplicateAuthEvent(key.0.into(), key.1.unwrap_or("").into()));
        }
        // 2.2 have entries whose type and state_key don't match those the
        //     auth events selection algorithm picks;
        let expected_here = key.1.is_some_and(|sk| expected.iter().any(|&(t, k)| t == key.0 && k == sk));
        if !expected_here {
            // Not necessarily a state event: its ID may have to be read
            // back from the page store, which may fail; the reason then
            // says so (the rejection stands either way).
            let id = events.id(a).map_or_else(|e| format!("(ID unreadable: {e})"), |id| id.to_string());
            return Err(AuthRejection::UnexpectedAuthEvent(id, key.0.into(), key.1.unwrap_or("").into()));
        }
        // 2.3 have entries which were themselves rejected.
        if !a.is_accepted() {
            return Err(AuthRejection::RejectedAuthEvent(events.resident_id(a).to_owned()));
        }
        has_create |= a.is("m.room.create", "");
        seen.push(key);
    }
    // 2.4 If there is no m.room.create event among the auth events, reject.
    if !has_create {
        return Err(AuthRejection::NoCreateEvent);
    }
    Ok(())
}

/// Rules 3 onwards, checked against `state`.
pub fn check_state_dependent_auth_rules(
    event: &StoredEvent,
    state: &AuthState<'_>,
    rules: &RoomVersionRules,
) -> Result<Allowed> {
    if event.is_create_type() {
        return Ok(Allowed::default());
    }
    let Some(create) = state.create() else {
        return Err(AuthRejection::NoCreateEvent);
    };
    // 3. If the sender's server is not the creator's and m.federate is false, reject.
    let creating_domain = domain_of(&create.sender);
    let originating_domain = domain_of(&event.sender);
    if creating_domain != originating_domain && !can_federate(state) {
        return Err(AuthRejection::Unfederatable);
    }
    // 4. (v1–v5) m.room.aliases.
    if &*event.event_type == "m.room.aliases" && rules.special_case_aliases_auth {
        let Some(sk) = event.state_key.as_deref() else {
            return Err(AuthRejection::Aliases("Alias event must be a state event"));
        };
        if sk.is_empty() {
            return Err(AuthRejection::Aliases("Alias event must have non-empty state_key"));
        }
        if Some(sk) != domain_of(&event.sender) {
            return Err(AuthRejection::Aliases("Alias event's state_key does not match sender's domain"));
        }
        return Ok(Allowed::default());
    }
    // 5. m.room.member.
    if &*event.event_type == "m.room.member" {
        is_membership_change_allowed(event, state, rules)?;
        return Ok(Allowed::default());
    }
    // 6. If the sender's current membership state is not join, reject.
    check_joined(state, &event.sender)?;
    // 7. m.room.third_party_invite: allowed iff the sender may invite.
    if &*event.event_type == "m.room.third_party_invite" {
        let user_level = user_power_level(&event.sender, state, rules)?;
        let invite_level = named_level(state, "invite", 0)?;
        if user_level < invite_level {
            return Err(AuthRejection::CannotInvite);
        }
        return Ok(Allowed::default());
    }
    // 8–9. The sender's level must reach the event's required level, and a
    //      state key starting with @ must be the sender's.
    can_send_event(event, state, rules)?;
    // 10. m.room.power_levels.
    if &*event.event_type == "m.room.power_levels" {
        check_power_levels(event, state, rules)?;
    }
    // (v3+) m.room.redaction: allowed; applied later only if the sender has
    // the redact level or targets an event from their own server.
    if &*event.event_type == "m.room.redaction" {
        let user_level = user_power_level(&event.sender, state, rules)?;
        let redact_level = named_level(state, "redact", 50)?;
        return Ok(Allowed { recheck_redaction: user_level < redact_level });
    }
    Ok(Allowed::default())
}

fn can_federate(state: &AuthState<'_>) -> bool {
    match state.create().map(|c| &c.facts) {
        Some(Facts::Create(c)) => c.federate,
        _ => false,
    }
}

fn check_joined(state: &AuthState<'_>, user: &str) -> Result<()> {
    match state.membership_of(user) {
        Some(Membership::Join) => Ok(()),
        _ => Err(AuthRejection::SenderNotJoined(user.to_owned())),
    }
}

/// Whether `user` is a creator: the create event's sender, or (v12) one of
/// its `additional_creators`.
pub fn is_creator(create: &StoredEvent, user: &str, rules: &RoomVersionRules) -> bool {
    if &*create.sender == user {
        return true;
    }
    if rules.creator_power {
        if let Facts::Create(c) = &create.facts {
            return c.additional_creators.iter().any(|u| u == user);
        }
    }
    false
}

fn level_value(l: Level, what: &str) -> Result<i128> {
    match l {
        Level::Int(i) => Ok(i),
        Level::Null | Level::Invalid => Err(AuthRejection::InvalidPowerLevels(format!("{what} is not an integer"))),
    }
}

/// A user's power level in `state`.
pub fn user_power_level(user: &str, state: &AuthState<'_>, rules: &RoomVersionRules) -> Result<i128> {
    let Some(create) = state.create() else {
        return Err(AuthRejection::NoCreateEvent);
    };
    if rules.creator_power && is_creator(create, user, rules) {
        return Ok(CREATOR_POWER_LEVEL);
    }
    if let Some(pl) = state.power_levels() {
        if pl.users.not_an_object {
            return Err(AuthRejection::InvalidPowerLevels("users is not an object".into()));
        }
        let level = match pl.users.get(user) {
            Some(l) => l,
            None => match pl.scalar("users_default") {
                None => Level::Int(0),
                Some(Level::Null) => return Ok(0),
                Some(l) => l,
            },
        };
        return level_value(level, "a user level");
    }
    Ok(if creator_of(create, rules).as_deref() == Some(user) { 100 } else { 0 })
}

fn creator_of(create: &StoredEvent, rules: &RoomVersionRules) -> Option<String> {
    if rules.implicit_room_creator {
        return Some(create.sender.to_string());
    }
    match &create.facts {
        Facts::Create(c) => c.creator.clone(),
        _ => None,
    }
}

/// A named level (`ban`, `kick`, …) or its default.
fn named_level(state: &AuthState<'_>, name: &str, default: i128) -> Result<i128> {
    match state.power_levels().and_then(|pl| pl.scalar(name)) {
        None | Some(Level::Null) => Ok(default),
        Some(l) => level_value(l, name),
    }
}

/// The level required to send an event of this type (the spec's "required
/// power level").
fn send_level(event: &StoredEvent, pl: Option<&PowerLevels>) -> Result<i128> {
    let Some(pl) = pl else {
        return Ok(if event.is_state() { 50 } else { 0 });
    };
    if pl.events.not_an_object {
        return Err(AuthRejection::InvalidPowerLevels("events is not an object".into()));
    }
    if let Some(l) = pl.events.get(&event.event_type) {
        return level_value(l, "an event level");
    }
    let (key, default) = if event.is_state() { ("state_default", 50) } else { ("events_default", 0) };
    match pl.scalar(key) {
        None => Ok(default),
        Some(l) => level_value(l, key),
    }
}

fn can_send_event(event: &StoredEvent, state: &AuthState<'_>, rules: &RoomVersionRules) -> Result<()> {
    let send = send_level(event, state.power_levels())?;
    let user_level = user_power_level(&event.sender, state, rules)?;
    if user_level < send {
        return Err(AuthRejection::InsufficientPower { user_level, send_level: send });
    }
    if let Some(sk) = event.state_key.as_deref() {
        if sk.starts_with('@') && sk != &*event.sender {
            return Err(AuthRejection::OthersState);
        }
    }
    Ok(())
}

/// Rule 10: power-levels changes.
///
/// 1. (v10+) Every level must be an integer.
/// 2. `users` keys must be user IDs and values integers; (v12) creators
///    may not be listed.
/// 3. If there is no previous power-levels event, allow.
/// 4. For every level that changes (scalars, `users`, `events`, and since v6
///    `notifications`): neither the old nor the new value may exceed the
///    sender's level, and another user's level equal to the sender's may not
///    be changed.
fn check_power_levels(event: &StoredEvent, state: &AuthState<'_>, rules: &RoomVersionRules) -> Result<()> {
    let Facts::PowerLevels(new) = &event.facts else {
        return Err(AuthRejection::InvalidPowerLevels("not a power levels event".into()));
    };
    if new.users.not_an_object {
        return Err(AuthRejection::InvalidPowerLevels("users is not an object".into()));
    }
    for (user, level) in new.users.entries.iter() {
        if !is_user_id_shaped(user) {
            return Err(AuthRejection::InvalidPowerLevels(format!("Not a valid user_id: {user}")));
        }
        if !matches!(level, Level::Int(_)) {
            return Err(AuthRejection::InvalidPowerLevels(format!("Not a valid power level for {user}")));
        }
    }
    if rules.creator_power {
        let Some(create) = state.create() else {
            return Err(AuthRejection::NoCreateEvent);
        };
        if new.users.entries.contains_key(&create.sender) {
            return Err(AuthRejection::InvalidPowerLevels(format!(
                "Creator user {} must not appear in content.users",
                create.sender
            )));
        }
        if let Facts::Create(c) = &create.facts {
            if c.additional_creators.iter().any(|u| new.users.entries.contains_key(u.as_str())) {
                return Err(AuthRejection::InvalidPowerLevels(
                    "Additional creators users must not appear in content.users".into(),
                ));
            }
        }
    }
    if rules.integer_power_levels {
        let maps_ok = |m: &LevelMap| !m.not_an_object && m.all_strict_ints;
        if !new.scalars_strict_ints || !maps_ok(&new.users) || !maps_ok(&new.events) || !maps_ok(&new.notifications) {
            return Err(AuthRejection::InvalidPowerLevels("levels must be integers".into()));
        }
    }
    let Some(old) = state.power_levels() else {
        return Ok(());
    };
    let user_level = user_power_level(&event.sender, state, rules)?;
    let invalid = AuthRejection::InvalidPowerLevels;
    for_each_level_change(old, new, rules.limit_notifications_power_levels, invalid, |old_level, new_level, user| {
        if let (Some(o), Some(n)) = (old_level, new_level) {
            if o == n {
                return Ok(());
            }
        }
        if user.is_some_and(|u| u != &*event.sender) && old_level == Some(user_level) {
            return Err(AuthRejection::PowerLevelChange("remove ops level equal to your own"));
        }
        if old_level.is_some_and(|o| o > user_level) || new_level.is_some_and(|n| n > user_level) {
            return Err(AuthRejection::PowerLevelChange("add ops level greater than your own"));
        }
        Ok(())
    })
}

/// Rule 5: membership changes.
fn is_membership_change_allowed(event: &StoredEvent, state: &AuthState<'_>, rules: &RoomVersionRules) -> Result<()> {
    let Facts::Member(m) = &event.facts else {
        return Err(AuthRejection::BadMembership("member event without a state key"));
    };
    let membership = &m.membership;
    if *membership == Membership::Missing {
        return Err(AuthRejection::BadMembership("missing"));
    }
    let Some(target) = event.state_key.as_deref() else {
        return Err(AuthRejection::BadMembership("member event without a state key"));
    };
    let create = state.create().ok_or(AuthRejection::NoCreateEvent)?;

    // 5.2.1 (join) The creator's first join straight after the create event.
    if event.prev_count() == 1 && *membership == Membership::Join {
        if let Some(c) = state.create() {
            if event.first_prev() == Some(c.idx) && creator_of(c, rules).as_deref() == Some(target) {
                return Ok(());
            }
        }
    }
    // The target must be a user ID with a server name: get_domain_from_id
    // raises SynapseError("Invalid ID"), which is not an authorization failure.
    let Some(target_domain) = domain_of(target) else {
        return Err(AuthRejection::Unprocessable(format!("Invalid ID {target:?}: no server name")));
    };
    // Target on another server than the creator's, and m.federate false.
    if domain_of(&create.sender) != Some(target_domain) && !can_federate(state) {
        return Err(AuthRejection::Unfederatable);
    }
    let caller = state.membership_of(&event.sender);
    let caller_in_room = caller == Some(&Membership::Join);
    let caller_invited = caller == Some(&Membership::Invite);
    let caller_knocked = rules.knock_join_rule && caller == Some(&Membership::Knock);
    let target_m = state.membership_of(target);
    let target_in_room = target_m == Some(&Membership::Join);
    let target_banned = target_m == Some(&Membership::Ban);
    let join_rule = match state.get("m.room.join_rules", "").map(|e| &e.facts) {
        Some(Facts::JoinRules(r)) => *r,
        _ => JoinRule::Invite,
    };
    let user_level = user_power_level(&event.sender, state, rules)?;
    let target_level = user_power_level(target, state, rules)?;
    let invite_level = named_level(state, "invite", 0)?;
    let ban_level = named_level(state, "ban", 50)?;

    // Third-party invites.
    if let (Membership::Invite, Some(tpi)) = (membership, &m.third_party_invite) {
        if !third_party_invite::verify(event, tpi, |token| state.get("m.room.third_party_invite", token))? {
            return Err(AuthRejection::NotInvited);
        }
        if target_banned {
            return Err(AuthRejection::TargetBanned(target.into()));
        }
        return Ok(());
    }
    // Membership changes other than join/knock need the sender in the room,
    // except leaving after an invite or knock.
    if !matches!(membership, Membership::Join | Membership::Knock) {
        if (caller_invited || caller_knocked) && *membership == Membership::Leave && target == &*event.sender {
            return Ok(());
        }
        if !caller_in_room {
            return Err(AuthRejection::SenderNotJoined(event.sender.to_string()));
        }
    }
    match membership {
        Membership::Invite => {
            if target_banned {
                return Err(AuthRejection::TargetBanned(target.into()));
            }
            if target_in_room {
                return Err(AuthRejection::AlreadyJoined(target.into()));
            }
            if user_level < invite_level {
                return Err(AuthRejection::CannotInvite);
            }
        }
        Membership::Join => {
            if &*event.sender != target {
                return Err(AuthRejection::ForcedJoin);
            }
            if target_banned {
                return Err(AuthRejection::Banned);
            }
            let restricted = (rules.restricted_join_rule && join_rule == JoinRule::Restricted)
                || (rules.knock_restricted_join_rule && join_rule == JoinRule::KnockRestricted);
            if join_rule == JoinRule::Public {
            } else if restricted {
                if !caller_in_room && !caller_invited {
                    let Some(auth_user) = &m.authorising_user else {
                        return Err(AuthRejection::RestrictedJoin("Join event is missing authorising user."));
                    };
                    let Value::String(auth_user) = auth_user else {
                        return Err(AuthRejection::RestrictedJoin("authorising user is not a string"));
                    };
                    if state.membership_of(auth_user) != Some(&Membership::Join) {
                        return Err(AuthRejection::RestrictedJoin("authorising user is not joined"));
                    }
                    if user_power_level(auth_user, state, rules)? < invite_level {
                        return Err(AuthRejection::RestrictedJoin("Join event authorised by invalid server."));
                    }
                }
            } else if join_rule == JoinRule::Invite
                || (rules.knock_join_rule && join_rule == JoinRule::Knock)
                || (rules.knock_restricted_join_rule && join_rule == JoinRule::KnockRestricted)
            {
                if !(caller_in_room || caller_invited) {
                    return Err(AuthRejection::NotInvited);
                }
            } else {
                return Err(AuthRejection::JoinNotAllowed);
            }
        }
        Membership::Leave => {
            if target_banned && user_level < ban_level {
                return Err(AuthRejection::CannotUnban(target.into()));
            }
            if target != &*event.sender {
                let kick_level = named_level(state, "kick", 50)?;
                if user_level < kick_level || user_level <= target_level {
                    return Err(AuthRejection::CannotKick(target.into()));
                }
            }
        }
        Membership::Ban => {
            if user_level < ban_level || user_level <= target_level {
                return Err(AuthRejection::CannotBan);
            }
        }
        Membership::Knock if rules.knock_join_rule => {
            if join_rule != JoinRule::Knock
                && !(rules.knock_restricted_join_rule && join_rule == JoinRule::KnockRestricted)
            {
                return Err(AuthRejection::CannotKnock("the join rule does not allow knocking"));
            }
            if target != &*event.sender {
                return Err(AuthRejection::CannotKnock("You cannot knock for other users"));
            }
            if target_in_room {
                return Err(AuthRejection::CannotKnock("You cannot knock on a room you are already in"));
            }
            if caller_invited {
                return Err(AuthRejection::CannotKnock("You are already invited to this room"));
            }
            if target_banned {
                return Err(AuthRejection::CannotKnock("You are banned from this room"));
            }
        }
        other => return Err(AuthRejection::UnknownMembership(other.as_str().into())),
    }
    Ok(())
}
