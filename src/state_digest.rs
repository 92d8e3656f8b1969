//! The state digest of the conformance contract: SHA-256 of a state's lines
//! `type NUL state_key NUL event_id LF`, sorted.
//!
//! A replay asks for the digest of every state, and most states are another
//! state with one entry changed: the lines before that entry are the same,
//! and so is SHA-256's progress through them. [`DigestCursors`] keeps, for
//! the last few states digested, the hasher's state every
//! [`CHECKPOINT_LINES`] lines, and starts a new digest from the checkpoint
//! of the kept state that shares the longest run of first lines with it.

use std::borrow::Borrow;
use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use crate::event::StateKeyIdx;

/// Lines between two kept hasher states.
pub const CHECKPOINT_LINES: usize = 16;
/// States whose hasher states are kept.
pub const KEPT_STATES: usize = 4;

/// The interned keys in the order of their line prefixes `type NUL
/// state_key NUL`: when no type or state key holds a NUL, no prefix is the
/// start of another, and as a state has each key once, its lines sort as
/// their keys do.
#[derive(Debug)]
pub struct KeyOrder {
    /// Each key's rank.
    pub rank: Vec<u32>,
    /// The key of each rank.
    pub key: Vec<StateKeyIdx>,
}

impl KeyOrder {
    /// The order of `names` (by key index), or `None` if one holds a NUL.
    pub fn of<S: Borrow<str>>(names: &[(S, S)]) -> Option<Self> {
        if names.iter().any(|(t, s)| t.borrow().contains('\0') || s.borrow().contains('\0')) {
            return None;
        }
        let mut key: Vec<StateKeyIdx> = (0..names.len() as u32).map(StateKeyIdx).collect();
        key.sort_unstable_by(|a, b| {
            let (ta, sa) = &names[a.0 as usize];
            let (tb, sb) = &names[b.0 as usize];
            (ta.borrow().as_bytes(), sa.borrow().as_bytes()).cmp(&(tb.borrow().as_bytes(), sb.borrow().as_bytes()))
        });
        let mut rank = vec![0u32; key.len()];
        for (r, k) in key.iter().enumerate() {
            rank[k.0 as usize] = r as u32;
        }
        Some(Self { rank, key })
    }
}

/// Hasher states of recently digested line lists (see the module docs).
#[derive(Default)]
pub struct DigestCursors {
    recent: VecDeque<Cursor>,
}

struct Cursor {
    lines: Vec<u64>,
    /// The hasher after `i · CHECKPOINT_LINES` lines, for each `i`.
    checkpoints: Vec<Sha256>,
}

impl std::fmt::Debug for DigestCursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCursors").field("kept", &self.recent.len()).finish()
    }
}

impl DigestCursors {
    /// The SHA-256 of `lines` in order, where `write` feeds the text of a
    /// line to the hasher; equal `u64`s must stand for equal texts.
    pub fn digest(&mut self, lines: Vec<u64>, mut write: impl FnMut(u64, &mut Sha256)) -> [u8; 32] {
        let shared = self
            .recent
            .iter()
            .map(|c| (c, c.lines.iter().zip(&lines).take_while(|(a, b)| a == b).count()))
            .max_by_key(|(_, n)| *n);
        let mut checkpoints = match shared {
            Some((c, n)) => c.checkpoints[..=(n / CHECKPOINT_LINES).min(c.checkpoints.len() - 1)].to_vec(),
            None => vec![Sha256::new()],
        };
        let start = (checkpoints.len() - 1) * CHECKPOINT_LINES;
        let mut h = checkpoints.last().expect("at least the start").clone();
        for (i, line) in lines.iter().enumerate().skip(start) {
            if i > start && i % CHECKPOINT_LINES == 0 {
                checkpoints.push(h.clone());
            }
            write(*line, &mut h);
        }
        if self.recent.len() >= KEPT_STATES {
            self.recent.pop_front();
        }
        self.recent.push_back(Cursor { lines, checkpoints });
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[u64]) -> [u8; 32] {
        let mut h = Sha256::new();
        for l in lines {
            h.update(format!("line {l}\n"));
        }
        h.finalize().into()
    }

    #[test]
    fn resumed_digests_equal_plain_ones() {
        let mut cursors = DigestCursors::default();
        let write = |l: u64, h: &mut Sha256| h.update(format!("line {l}\n"));
        let mut state: Vec<u64> = (0..100).map(|i| i * 10).collect();
        let mut x: u64 = 7;
        for round in 0..300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pos = (x >> 33) as usize % (state.len() + 1);
            match round % 3 {
                0 => state.insert(pos, (x >> 40) % 1000 * 10 + 5),
                1 if !state.is_empty() && pos < state.len() => {
                    state.remove(pos);
                }
                _ if pos < state.len() => state[pos] += 1,
                _ => state.push(1 << 40),
            }
            if round % 50 == 0 {
                state.truncate(round % 40); // short lists, and lists a checkpoint ends exactly
            }
            assert_eq!(cursors.digest(state.clone(), write), plain(&state), "round {round}");
        }
        assert_eq!(cursors.digest(Vec::new(), write), plain(&[]));
    }

    #[test]
    fn key_order_sorts_line_prefixes_and_refuses_nul() {
        let names = [("m.room.member", "@b:x"), ("m.room.create", ""), ("m.room.member", "@a:x"), ("m", "z")];
        let order = KeyOrder::of(&names).expect("no NUL");
        let sorted: Vec<&str> = order.key.iter().map(|k| names[k.0 as usize].1).collect();
        assert_eq!(sorted, ["z", "", "@a:x", "@b:x"]);
        assert_eq!(order.rank, [3, 1, 2, 0]);
        assert!(KeyOrder::of(&[("m.room.member", "@a\0:x")]).is_none());
    }
}
