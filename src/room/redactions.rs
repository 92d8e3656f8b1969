//! Read-time redaction inside the room: which accepted redaction applies to
//! which stored event.

use std::collections::HashMap;

use crate::ids::{domain_of, EventIdx, Name};

use super::Room;

/// Which redaction applies to which event (read-time redaction, v3+
/// "handling redactions"): the first accepted redaction, in arrival order,
/// whose sender had the `redact` level or shares the target's server.
/// Creation events are never redacted.
#[derive(Debug, Default)]
pub(super) struct Redactions {
    pub(super) applied: HashMap<EventIdx, EventIdx>,
    pub(super) pending: HashMap<Name, Vec<EventIdx>>,
}

impl Room {
    /// Applies the first qualifying pending redaction of `target`, stored at `t`.
    pub(super) fn apply_pending_redactions(&mut self, target: &str, t: EventIdx) {
        if self.redactions.applied.contains_key(&t) {
            return;
        }
        let Some(pending) = self.redactions.pending.get(target) else {
            return;
        };
        let te = self.event(t);
        if &*te.event_type == "m.room.create" {
            return;
        }
        let found = pending.iter().copied().find(|r| {
            let re = self.event(*r);
            !re.recheck_redaction || domain_of(&re.sender) == domain_of(&te.sender)
        });
        if let Some(r) = found {
            self.redactions.applied.insert(t, r);
        }
    }

    /// The redaction applied to an event when it is read, if any.
    pub fn redacted_by(&self, idx: EventIdx) -> Option<EventIdx> {
        self.redactions.applied.get(&idx).copied()
    }

    /// Every applied redaction: target → redaction event.
    pub fn applied_redactions(&self) -> impl Iterator<Item = (EventIdx, EventIdx)> + '_ {
        self.redactions.applied.iter().map(|(t, r)| (*t, *r))
    }
}
