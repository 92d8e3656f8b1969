//! What happened to one PDU ([`Outcome`], [`DropStage`]) and the room's
//! bounded log of dropped PDUs ([`DroppedEvent`], [`Room::dropped`]).

use crate::ids::EventId;
use crate::pdu::PduFormatError;

use super::Room;

/// How many dropped PDUs the room remembers (for inspection only).
pub const MAX_DROPPED_LOG: usize = 10_000;

/// Most bytes (reasons and event IDs) the dropped-PDU log shows; it holds at
/// most twice this between trims, whatever the PDUs carried.
pub const MAX_DROPPED_LOG_BYTES: usize = 1 << 20;

/// Longest reason kept for a dropped or rejected PDU, in bytes: reasons quote
/// parts of the PDU (event IDs, key IDs, values), so they are cut here and
/// end with `…`. This bounds the dropped log, the stored rejections and
/// every `/send` answer.
pub const MAX_REASON_BYTES: usize = 256;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] bytes on a character
/// boundary (ending with `…` when cut).
pub fn bounded_reason(reason: impl Into<String>) -> String {
    let mut reason = reason.into();
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES - '…'.len_utf8();
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// Which receipt check dropped a PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropStage {
    /// Format, size, duplicate-room or count checks.
    Parse,
    /// Signatures.
    Signature,
    /// The `hashes` object itself.
    Hash,
    /// A prev or auth event is not stored.
    Missing,
    /// The auth rules raised an error that is not an authorization failure
    /// (see [`AuthRejection::is_authorization_failure`]).
    ///
    /// [`AuthRejection::is_authorization_failure`]: crate::auth_rules::AuthRejection::is_authorization_failure
    Auth,
    /// The room's page store failed to write it: nothing was stored, and the
    /// PDU can be sent again.
    Store,
}

/// What happened to one PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and accepted.
    Accepted {
        /// Its event ID.
        event_id: EventId,
        /// The content hash failed: stored in redacted form.
        redacted_on_receipt: bool,
    },
    /// Stored, but failed the auth rules.
    Rejected {
        /// Its event ID.
        event_id: EventId,
        /// Why.
        reason: String,
        /// The content hash failed: stored in redacted form.
        redacted_on_receipt: bool,
    },
    /// Not stored.
    Dropped {
        /// Its event ID, if the PDU could be hashed.
        event_id: Option<EventId>,
        /// Which check failed.
        stage: DropStage,
        /// Why.
        reason: String,
    },
    /// Already stored: nothing changed.
    Duplicate {
        /// Its event ID.
        event_id: EventId,
    },
    /// A history event some of whose auth events are not stored yet: its
    /// signatures and hashes are checked and it is logged, but it is only
    /// checked against the auth rules, and stored, when a rebuild places it
    /// after them (see [`crate::placement`]).
    Deferred {
        /// Its event ID.
        event_id: EventId,
    },
}

impl Outcome {
    /// The event ID, when known.
    pub fn event_id(&self) -> Option<&EventId> {
        match self {
            Outcome::Accepted { event_id, .. }
            | Outcome::Rejected { event_id, .. }
            | Outcome::Duplicate { event_id }
            | Outcome::Deferred { event_id } => Some(event_id),
            Outcome::Dropped { event_id, .. } => event_id.as_ref(),
        }
    }

    /// `accepted`, `rejected`, `dropped`, `duplicate` or `deferred`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Deferred { .. } => "deferred",
        }
    }

    /// Whether the PDU is (now or already) stored.
    pub fn is_stored(&self) -> bool {
        matches!(self, Outcome::Accepted { .. } | Outcome::Rejected { .. } | Outcome::Duplicate { .. })
    }

    pub(super) fn drop(event_id: Option<&EventId>, stage: DropStage, reason: impl Into<String>) -> Self {
        Outcome::Dropped { event_id: event_id.cloned(), stage, reason: bounded_reason(reason) }
    }
}

impl From<PduFormatError> for Outcome {
    fn from(e: PduFormatError) -> Self {
        Outcome::drop(None, DropStage::Parse, e.to_string())
    }
}

/// A dropped PDU, remembered for inspection.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DroppedEvent {
    /// Its event ID, if the PDU could be hashed.
    pub event_id: Option<String>,
    /// Which check failed.
    pub stage: DropStage,
    /// Why (at most [`MAX_REASON_BYTES`]).
    pub reason: String,
}

impl DroppedEvent {
    /// The bytes this entry counts against [`MAX_DROPPED_LOG_BYTES`].
    fn weight(&self) -> usize {
        self.reason.len() + self.event_id.as_ref().map_or(0, String::len)
    }
}

impl Room {
    /// Recently dropped PDUs (at most [`MAX_DROPPED_LOG`] entries and
    /// [`MAX_DROPPED_LOG_BYTES`]) and the total count.
    pub fn dropped(&self) -> (&[DroppedEvent], u64) {
        let mut keep = self.dropped.len();
        let mut bytes = 0;
        while keep > 0 && self.dropped.len() - keep < MAX_DROPPED_LOG {
            bytes += self.dropped[keep - 1].weight();
            if bytes > MAX_DROPPED_LOG_BYTES {
                break;
            }
            keep -= 1;
        }
        (&self.dropped[keep..], self.dropped_total)
    }

    /// Forgets the oldest dropped PDUs once the log holds twice what it
    /// shows, in entries or in bytes (amortised O(1) per drop). Never while a
    /// checkpoint is open, so a rollback only truncates.
    pub(super) fn trim_dropped_log(&mut self) {
        if self.checkpoint_open
            || (self.dropped.len() < 2 * MAX_DROPPED_LOG && self.dropped_bytes < 2 * MAX_DROPPED_LOG_BYTES)
        {
            return;
        }
        let shown = self.dropped().0.len();
        let cut = self.dropped.len() - shown;
        self.dropped_bytes -= self.dropped[..cut].iter().map(DroppedEvent::weight).sum::<usize>();
        self.dropped.drain(..cut);
    }

    pub(super) fn log_drop(&mut self, outcome: &Outcome) {
        if let Outcome::Dropped { event_id, stage, reason } = &outcome {
            self.dropped_total += 1;
            let entry = DroppedEvent {
                event_id: event_id.as_ref().map(|e| e.to_string()),
                stage: *stage,
                reason: bounded_reason(reason.as_str()),
            };
            self.dropped_bytes += entry.weight();
            self.dropped.push(entry);
            self.trim_dropped_log();
        }
    }
}
