//! The event table in a room image ([`crate::image`]): the text arena (event
//! IDs), the link arena (prev and auth events) and one fixed-width record
//! per [`StoredEvent`]; the few content facts as one JSON list.

use super::{EventStatus, Events, Facts, StoredEvent, TextRef, EVENTS_CHUNK, LINK_BLOCK, TEXT_BLOCK};
use crate::ids::{EventIdx, Name};
use crate::image::{index, ImageError, Reader, Writer};
use crate::pages::PageCache;
use crate::state_set::StateSetId;

const OUTLIER: u8 = 1;
const SOFT_FAILED: u8 = 2;
const REJECTED: u8 = 4;
const REDACTED_ON_RECEIPT: u8 = 8;
const RECHECK_REDACTION: u8 = 16;
const HAS_STATE_KEY: u8 = 32;
const HAS_KEY: u8 = 64;

/// Bytes of one event's record, at the least (for count checks).
const RECORD_BYTES: usize = 56;

impl Events {
    /// Writes the table; `name` gives the number of an interned name.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>, name: &dyn Fn(&Name) -> u32) {
        w.len(self.text.len());
        for b in &self.text {
            w.bytes(b.as_bytes());
        }
        w.len(self.links.len());
        for b in &self.links {
            w.u32s(b.iter().map(|e| e.0));
        }
        w.len(self.len);
        let mut facts: Vec<(u32, &Facts)> = Vec::new();
        for e in self.iter() {
            let flag = |on: bool, bit: u8| if on { bit } else { 0 };
            let flags = flag(e.outlier, OUTLIER)
                | flag(e.soft_failed, SOFT_FAILED)
                | flag(e.status == EventStatus::Rejected, REJECTED)
                | flag(e.redacted_on_receipt, REDACTED_ON_RECEIPT)
                | flag(e.recheck_redaction, RECHECK_REDACTION)
                | flag(e.state_key.is_some(), HAS_STATE_KEY)
                | flag(e.key.is_some(), HAS_KEY);
            w.u8(flags);
            w.u32(e.text.block);
            w.u32(e.text.offset);
            w.u32(e.text.len);
            w.u32(e.links_at);
            w.raw(&[e.id_len, e.n_prev, e.n_auth, e.pdu_prev_count]);
            w.u32(e.first_prev_ix);
            w.u32(name(&e.sender));
            w.u32(name(&e.event_type));
            w.u32(e.state_key.as_ref().map_or(0, name));
            w.u32(e.key.map_or(0, |k| k.0));
            w.i64(e.depth);
            w.i64(e.origin_server_ts);
            w.u32(e.state_before.0);
            w.u32(e.state_after.0);
            w.u32(e.auth_node_plus_one.map_or(0, std::num::NonZeroU32::get));
            if !matches!(e.facts, Facts::None) {
                facts.push((e.idx.0, &e.facts));
            }
        }
        w.bytes(&serde_json::to_vec(&facts).expect("facts serialise"));
    }

    /// Reads a table written by [`write_image`](Self::write_image), its PDU
    /// texts in `pdus`. Indexes into other tables (states, auth nodes,
    /// state keys) are checked by the caller, which knows their sizes.
    pub(crate) fn read_image(r: &mut Reader<'_>, names: &[Name], pdus: PageCache) -> Result<Self, ImageError> {
        let n_text = r.len(8)?;
        let mut text = Vec::with_capacity(n_text);
        for _ in 0..n_text {
            let b = String::from_utf8(r.bytes()?).map_err(|_| corrupt("a text block is not UTF-8"))?;
            let mut block = String::with_capacity(b.len().max(TEXT_BLOCK));
            block.push_str(&b);
            text.push(block);
        }
        let n_links = r.len(8)?;
        let mut links = Vec::with_capacity(n_links);
        for _ in 0..n_links {
            let b = r.u32s()?;
            if b.len() > LINK_BLOCK {
                return Err(corrupt("a link block is oversized"));
            }
            let mut block = Vec::with_capacity(LINK_BLOCK);
            block.extend(b.into_iter().map(EventIdx));
            links.push(block);
        }
        let len = r.len(RECORD_BYTES)?;
        let name = |v: u32| index(v, names.len(), "a name").map(|i| names[i as usize].clone());
        let mut chunks: Vec<Vec<StoredEvent>> = Vec::with_capacity(len.div_ceil(EVENTS_CHUNK));
        for i in 0..len {
            let flags = r.u8()?;
            let text_ref = TextRef { block: r.u32()?, offset: r.u32()?, len: r.u32()? };
            let links_at = r.u32()?;
            let [id_len, n_prev, n_auth, pdu_prev_count] = [r.u8()?, r.u8()?, r.u8()?, r.u8()?];
            let first_prev_ix = r.u32()?;
            let sender = name(r.u32()?)?;
            let event_type = name(r.u32()?)?;
            let state_key = r.u32()?;
            let key = r.u32()?;
            let e = StoredEvent {
                idx: EventIdx(i as u32),
                text: text_ref,
                links_at,
                id_len,
                n_prev,
                n_auth,
                pdu_prev_count,
                outlier: flags & OUTLIER != 0,
                soft_failed: flags & SOFT_FAILED != 0,
                status: if flags & REJECTED != 0 { EventStatus::Rejected } else { EventStatus::Accepted },
                redacted_on_receipt: flags & REDACTED_ON_RECEIPT != 0,
                recheck_redaction: flags & RECHECK_REDACTION != 0,
                first_prev_ix,
                sender,
                event_type,
                state_key: if flags & HAS_STATE_KEY != 0 { Some(name(state_key)?) } else { None },
                key: (flags & HAS_KEY != 0).then_some(super::StateKeyIdx(key)),
                depth: r.i64()?,
                origin_server_ts: r.i64()?,
                facts: Facts::None,
                state_before: StateSetId(r.u32()?),
                state_after: StateSetId(r.u32()?),
                auth_node_plus_one: std::num::NonZeroU32::new(r.u32()?),
            };
            check_refs(&e, &text, &links, len)?;
            if chunks.last().is_none_or(|c| c.len() == EVENTS_CHUNK) {
                chunks.push(Vec::with_capacity(EVENTS_CHUNK));
            }
            chunks.last_mut().expect("just ensured").push(e);
        }
        let facts: Vec<(u32, Facts)> =
            serde_json::from_slice(&r.bytes()?).map_err(|e| ImageError::Corrupt(format!("the content facts: {e}")))?;
        for (i, f) in facts {
            index(i, len, "a content fact's event")?;
            chunks[i as usize / EVENTS_CHUNK][i as usize % EVENTS_CHUNK].facts = f;
        }
        Ok(Events { chunks, len, text, links, pdus: Some(pdus) })
    }
}

fn corrupt(what: &str) -> ImageError {
    ImageError::Corrupt(what.into())
}

/// The event's text and links are inside the arenas, its links and first
/// prev event name stored events.
fn check_refs(e: &StoredEvent, text: &[String], links: &[Vec<EventIdx>], len: usize) -> Result<(), ImageError> {
    let t = e.text;
    let in_text = text
        .get(t.block as usize)
        .is_some_and(|b| (t.offset as usize).checked_add(t.len as usize).is_some_and(|end| end <= b.len()));
    let id_ok = in_text && e.id_len as u32 <= t.len && {
        let b = &text[t.block as usize];
        b.is_char_boundary(t.offset as usize) && b.is_char_boundary((t.offset + e.id_len as u32) as usize)
    };
    if !id_ok {
        return Err(corrupt("an event's text is outside the arena"));
    }
    if e.first_prev_ix != u32::MAX {
        index(e.first_prev_ix, len, "a first prev event")?;
    }
    let n = e.n_prev as usize + e.n_auth as usize;
    if n > 0 {
        let at = e.links_at as usize;
        let ok = links.get(at / LINK_BLOCK).is_some_and(|b| at % LINK_BLOCK + n <= b.len());
        if !ok {
            return Err(corrupt("an event's links are outside the arena"));
        }
        for l in &links[at / LINK_BLOCK][at % LINK_BLOCK..at % LINK_BLOCK + n] {
            index(l.0, len, "a linked event")?;
        }
    }
    Ok(())
}
