//! Read-time redaction inside the room: which accepted redaction applies to
//! which stored event.

use std::collections::HashMap;

use crate::ids::{domain_of, EventIdx, Name};

use super::{PageError, Room};

/// Which redaction applies to which event (read-time redaction, v3+
/// "handling redactions"): the first accepted redaction, in arrival order,
/// whose sender had the `redact` level or shares the target's server.
/// Creation events are never redacted.
#[derive(Debug, Default)]
pub(super) struct Redactions {
    pub(super) applied: HashMap<EventIdx, EventIdx>,
    pub(super) pending: HashMap<Name, Vec<EventIdx>>,
}

impl Redactions {
    /// Forgets the redactions stored from `kept` on and what they were
    /// applied to, and what was applied to events stored from `kept` on (a
    /// rollback). Exact: a redaction applies to a target when both are
    /// stored, the first that qualifies; one stored before `kept` that did
    /// not qualify then does not now.
    pub(super) fn truncate(&mut self, kept: usize) {
        self.applied.retain(|t, r| t.ix() < kept && r.ix() < kept);
        self.pending.retain(|_, by| {
            by.retain(|r| r.ix() < kept);
            !by.is_empty()
        });
    }
}

impl Room {
    /// Applies the first qualifying pending redaction of `target`, stored at `t`.
    ///
    /// # Errors
    /// The page store failed to read back the target or a redaction (read
    /// first by [`read_redaction_parties`](Self::read_redaction_parties),
    /// so this does not happen as an event is kept).
    pub(super) fn apply_pending_redactions(&mut self, target: &str, t: EventIdx) -> Result<(), PageError> {
        if self.redactions.applied.contains_key(&t) {
            return Ok(());
        }
        let Some(pending) = self.redactions.pending.get(target) else {
            return Ok(());
        };
        let te = self.event(t)?;
        if &*te.event_type == "m.room.create" {
            return Ok(());
        }
        let mut found = None;
        for r in pending.iter().copied() {
            let re = self.event(r)?;
            if !re.recheck_redaction || domain_of(&re.sender) == domain_of(&te.sender) {
                found = Some(r);
                break;
            }
        }
        if let Some(r) = found {
            self.redactions.applied.insert(t, r);
        }
        Ok(())
    }

    /// Reads what keeping a new event with ID `id` makes
    /// [`apply_pending_redactions`](Self::apply_pending_redactions) read:
    /// the redactions pending for it, and, for an accepted redaction of
    /// `target` (stored at `t`), that event and the redactions pending for
    /// it. Read before the event is kept, they are in built blocks when it
    /// is (a block is dropped only by a trim, between events).
    ///
    /// # Errors
    /// The page store failed to read one back: the event is dropped at the
    /// store stage, and received again.
    pub(super) fn read_redaction_parties(&self, id: &str, target: Option<(&str, EventIdx)>) -> Result<(), PageError> {
        let pending = |key: &str| self.redactions.pending.get(key).into_iter().flatten().copied();
        for r in pending(id) {
            self.event(r)?;
        }
        if let Some((target, t)) = target {
            self.event(t)?;
            for r in pending(target) {
                self.event(r)?;
            }
        }
        Ok(())
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
