//! The few content facts of an event that auth rules, state resolution,
//! visibility and redaction read, extracted once when it is stored.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ids::Name;
use crate::power_levels::PowerLevels;
use crate::room_version::RoomVersionRules;

/// An `m.room.member` membership value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// `join`
    Join,
    /// `invite`
    Invite,
    /// `leave`
    Leave,
    /// `ban`
    Ban,
    /// `knock`
    Knock,
    /// Any other value (including non-strings).
    Other,
    /// No `membership` key.
    Missing,
}

// `COUNT` is every variant.
const _: () = assert!(Membership::Missing as usize + 1 == Membership::COUNT);

impl Membership {
    /// Number of variants.
    pub const COUNT: usize = 7;

    fn from_content(content: &Map<String, Value>) -> Self {
        match content.get("membership") {
            None => Membership::Missing,
            Some(Value::String(s)) => match s.as_str() {
                "join" => Membership::Join,
                "invite" => Membership::Invite,
                "leave" => Membership::Leave,
                "ban" => Membership::Ban,
                "knock" => Membership::Knock,
                _ => Membership::Other,
            },
            Some(_) => Membership::Other,
        }
    }

    /// The spec name, for messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
            Membership::Other => "(unknown)",
            Membership::Missing => "(missing)",
        }
    }
}

/// An `m.room.join_rules` rule (`content.join_rule`, default `invite`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRule {
    /// `public`
    Public,
    /// `invite` (also the default)
    Invite,
    /// `knock`
    Knock,
    /// `restricted`
    Restricted,
    /// `knock_restricted`
    KnockRestricted,
    /// `private` or anything else.
    Other,
}

/// Facts about an `m.room.create` event.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CreateFacts {
    /// `content.creator` if it is a string (rooms v1–v10).
    pub creator: Option<String>,
    /// `content` has a `creator` key (of any type).
    pub creator_present: bool,
    /// `content["m.federate"]` is absent or `true`.
    pub federate: bool,
    /// `content.additional_creators` string entries (room v12).
    pub additional_creators: Vec<String>,
    /// The raw `content.additional_creators`, when present (for the create rule).
    pub additional_creators_raw: Option<Value>,
    /// `content.room_version` (default `"1"`), when it is a string.
    pub room_version: Option<String>,
}

/// Facts about an `m.room.member` event.
#[derive(Clone, Debug)]
pub struct MemberFacts {
    /// `content.membership`.
    pub membership: Membership,
    /// `content.join_authorised_via_users_server`, raw.
    pub authorising_user: Option<Value>,
    /// `content.third_party_invite`, raw.
    pub third_party_invite: Option<Value>,
}

/// The few content facts the engine reads, by event type.
#[derive(Clone, Debug, Default)]
pub enum Facts {
    /// Nothing the engine needs.
    #[default]
    None,
    /// `m.room.create` (any state key: the create rules go by type).
    Create(Box<CreateFacts>),
    /// `m.room.member`.
    Member(Arc<MemberFacts>),
    /// `m.room.power_levels` (with empty state key).
    PowerLevels(Arc<PowerLevels>),
    /// `m.room.join_rules` (with empty state key).
    JoinRules(JoinRule),
    /// `m.room.history_visibility` (with empty state key): the value if a string.
    HistoryVisibility(Option<Name>),
    /// `m.room.third_party_invite`: the content.
    ThirdPartyInvite(Box<Map<String, Value>>),
    /// `m.room.redaction`: the target if a string.
    Redaction(Option<Name>),
    /// `m.room.server_acl` (with empty state key): the content.
    ServerAcl(Arc<Map<String, Value>>),
}

impl Facts {
    /// Extracts the facts of an event from its (possibly redacted) JSON.
    pub fn extract(event: &Map<String, Value>, rules: &RoomVersionRules) -> Self {
        Self::extract_with(event, rules, &mut crate::power_levels::Unshared)
    }

    /// [`extract`](Self::extract), with the names and chunks of power-level
    /// maps made by `names`: a room passes its own, shared by its events.
    pub fn extract_with(
        event: &Map<String, Value>,
        rules: &RoomVersionRules,
        names: &mut dyn crate::power_levels::LevelInterner,
    ) -> Self {
        let empty = Map::new();
        let content = event.get("content").and_then(Value::as_object).unwrap_or(&empty);
        let ty = event.get("type").and_then(Value::as_str).unwrap_or_default();
        let state_key = event.get("state_key").and_then(Value::as_str);
        let empty_key = state_key == Some("");
        match ty {
            // Rule 1 applies to every event of this type, whatever its state key.
            "m.room.create" => Facts::Create(Box::new(CreateFacts {
                creator: content.get("creator").and_then(Value::as_str).map(str::to_owned),
                creator_present: content.contains_key("creator"),
                federate: matches!(content.get("m.federate"), None | Some(Value::Bool(true))),
                additional_creators: match content.get("additional_creators") {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                    _ => Vec::new(),
                },
                additional_creators_raw: content.get("additional_creators").cloned(),
                room_version: match content.get("room_version") {
                    None => Some("1".into()),
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => None,
                },
            })),
            "m.room.member" if state_key.is_some() => Facts::Member(names.member(MemberFacts {
                membership: Membership::from_content(content),
                authorising_user: content.get("join_authorised_via_users_server").cloned(),
                third_party_invite: content.get("third_party_invite").cloned(),
            })),
            "m.room.power_levels" if empty_key => {
                Facts::PowerLevels(Arc::new(PowerLevels::from_content_with(content, names)))
            }
            "m.room.join_rules" if empty_key => Facts::JoinRules(match content.get("join_rule") {
                None => JoinRule::Invite,
                Some(Value::String(s)) => match s.as_str() {
                    "public" => JoinRule::Public,
                    "invite" => JoinRule::Invite,
                    "knock" => JoinRule::Knock,
                    "restricted" => JoinRule::Restricted,
                    "knock_restricted" => JoinRule::KnockRestricted,
                    _ => JoinRule::Other,
                },
                Some(_) => JoinRule::Other,
            }),
            "m.room.history_visibility" if empty_key => {
                Facts::HistoryVisibility(content.get("history_visibility").and_then(Value::as_str).map(Name::new))
            }
            "m.room.third_party_invite" if state_key.is_some() => Facts::ThirdPartyInvite(Box::new(content.clone())),
            "m.room.redaction" => {
                let target = if rules.updated_redaction_rules { content.get("redacts") } else { event.get("redacts") };
                Facts::Redaction(target.and_then(Value::as_str).map(Name::new))
            }
            "m.room.server_acl" if empty_key => Facts::ServerAcl(Arc::new(content.clone())),
            _ => Facts::None,
        }
    }
}
