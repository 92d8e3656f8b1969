//! What a remote server may see (spec: client-server "History visibility",
//! server-server "Server behaviour"), and whether it gets an event whole or
//! in redacted form.
//!
//! Over federation nothing is dropped for visibility: an event the server may
//! not see is served in its redacted (pruned) form, so responses keep their
//! length (the reference server does the same).

use crate::event::{Facts, Membership};
use crate::ids::{domain_of, EventIdx};
use crate::pages::PageError;
use crate::room::Room;
use crate::state_set::{StateMap, StateSetId};

/// `m.room.history_visibility` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryVisibility {
    /// `world_readable`
    WorldReadable,
    /// `shared` (and the default, and any unknown value)
    Shared,
    /// `invited`
    Invited,
    /// `joined`
    Joined,
}

/// The history visibility in force in state `state` (one entry of it is
/// read: the state is not built for this).
///
/// # Errors
/// The page store failed to read the state's chunks back.
pub fn history_visibility(room: &Room, state: StateSetId) -> Result<HistoryVisibility, PageError> {
    let Some(k) = room.key_of("m.room.history_visibility", "") else {
        return Ok(HistoryVisibility::Shared);
    };
    Ok(match room.state_entry(state, k)?.map(|e| &room.state_event(e).facts) {
        Some(Facts::HistoryVisibility(Some(v))) => match &**v {
            "world_readable" => HistoryVisibility::WorldReadable,
            "invited" => HistoryVisibility::Invited,
            "joined" => HistoryVisibility::Joined,
            _ => HistoryVisibility::Shared,
        },
        _ => HistoryVisibility::Shared,
    })
}

/// The memberships, in `state`, of users on `server`.
pub fn server_memberships<'r>(
    room: &'r Room,
    state: &'r StateMap,
    server: &'r str,
) -> impl Iterator<Item = &'r Membership> + 'r {
    state.iter().filter_map(move |(k, e)| {
        let (t, user) = room.key_name(k);
        (t == "m.room.member" && domain_of(user) == Some(server)).then(|| room.state_event(e).membership()).flatten()
    })
}

/// Whether `server` has a joined member in `state`.
pub fn server_in_room(room: &Room, state: &StateMap, server: &str) -> bool {
    server_memberships(room, state, server).any(|m| *m == Membership::Join)
}

/// The servers with a joined member in `state`, sorted.
pub fn servers_in_room(room: &Room, state: &StateMap) -> Vec<String> {
    let mut out: Vec<String> = state
        .iter()
        .filter_map(|(k, e)| {
            let (t, user) = room.key_name(k);
            (t == "m.room.member" && room.state_event(e).membership() == Some(&Membership::Join))
                .then(|| domain_of(user).map(str::to_owned))
                .flatten()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The servers with a joined member in `state`, in the order the reference
/// server asks them for history: by when they joined (the least depth of
/// their joined members' membership events), then by name
/// (`get_current_hosts_in_room_ordered`). `except` is left out (ourselves).
pub fn servers_in_room_ordered(room: &Room, state: &StateMap, except: &str) -> Vec<String> {
    let mut first: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (k, e) in state.iter() {
        let (t, user) = room.key_name(k);
        if t != "m.room.member" || room.state_event(e).membership() != Some(&Membership::Join) {
            continue;
        }
        let Some(server) = domain_of(user) else { continue };
        if server == except {
            continue;
        }
        let d = first.entry(server).or_insert(i64::MAX);
        *d = (*d).min(room.state_event(e).depth);
    }
    let mut out: Vec<(i64, &str)> = first.into_iter().map(|(s, d)| (d, s)).collect();
    out.sort();
    out.into_iter().map(|(_, s)| s.to_owned()).collect()
}

/// Whether `server` may see an event, judged on the state after it: shared
/// and world-readable history is visible to anyone; `invited` needs a member
/// of the server invited or joined; `joined` needs one joined.
///
/// # Errors
/// The page store failed to read the event or its state back.
pub fn visible_to_server(room: &Room, idx: EventIdx, server: &str) -> Result<bool, PageError> {
    let state = room.event(idx)?.state_after;
    let hv = history_visibility(room, state)?;
    Ok(match hv {
        HistoryVisibility::WorldReadable | HistoryVisibility::Shared => true,
        HistoryVisibility::Invited | HistoryVisibility::Joined => server_memberships(room, room.state(state)?, server)
            .any(|m| *m == Membership::Join || (*m == Membership::Invite && hv == HistoryVisibility::Invited)),
    })
}

/// Whether `server` gets the redacted form of a stored event: its content
/// hash failed on receipt, a redaction applies to it, or history visibility
/// hides it from the server.
///
/// # Errors
/// The page store failed to read the event back.
pub fn pruned_for(room: &Room, idx: EventIdx, server: &str) -> Result<bool, PageError> {
    Ok(room.event(idx)?.redacted_on_receipt
        || room.redacted_by(idx).is_some()
        || !visible_to_server(room, idx, server)?)
}
