//! The event table in a room image ([`crate::image`]): the text arena (event
//! IDs), the auth-list arena, one fixed-width record per [`StoredEvent`]
//! followed by its links (prev events, where its auth list is), and the
//! content facts of the events that have some.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::links::{refs_at, LINK_BLOCK};
use super::{
    packed, CreateFacts, EventStatus, Events, Facts, JoinRule, MemberFacts, Membership, StateKeyIdx, StoredEvent,
    TextRef, EVENTS_CHUNK, TEXT_BLOCK,
};
use crate::ids::{EventIdx, Name};
use crate::image::{index, ImageError, Numbering, Reader, Writer};
use crate::pages::{PageCache, PageError};
use crate::power_levels::{Level, LevelChunk, LevelChunkPool, LevelEntries, LevelMap, PowerLevels};
use crate::state_set::StateSetId;

const OUTLIER: u8 = 1;
const SOFT_FAILED: u8 = 2;
const REJECTED: u8 = 4;
const REDACTED_ON_RECEIPT: u8 = 8;
const RECHECK_REDACTION: u8 = 16;
const HAS_STATE_KEY: u8 = 32;
const HAS_KEY: u8 = 64;

/// Bytes of one event's record (its links follow it, four bytes each).
const RECORD_BYTES: usize = 1 + 4 * 3 + 4 + 4 + 4 * 4 + 8 * 2 + 4 * 3;

/// A full block written as its events' records.
const BLOCK_RECORDS: u8 = 0;
/// A full block that is paged: its row's key, the least and greatest
/// timestamps of its timeline (1 and 0 for none), then its state events'
/// records alone, each after its place in the block.
const BLOCK_PAGED: u8 = 1;

/// Reads the record of event `i` (in a block read `packed`: a message's
/// names are then `placeholder`), and the image's numbers of its names
/// (sender, type, state key).
fn read_record(
    r: &mut Reader<'_>,
    i: usize,
    packed: bool,
    names: &[Name],
    placeholder: &Name,
) -> Result<(StoredEvent, [u32; 3]), ImageError> {
    let rec = r.take(RECORD_BYTES)?;
    let u32_at = |at: usize| u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(rec[at..at + 8].try_into().expect("8 bytes"));
    let flags = rec[0];
    // A packed message is never read as built (see `read_image`).
    let named = !packed || flags & HAS_KEY != 0;
    let name = |v: u32| -> Result<Name, ImageError> {
        if named {
            index(v, names.len(), "a name").map(|i| names[i as usize].clone())
        } else {
            Ok(placeholder.clone())
        }
    };
    let e = StoredEvent {
        idx: EventIdx(i as u32),
        text: TextRef { block: u32_at(1), offset: u32_at(5), len: u32_at(9) },
        links_at: 0,
        id_len: rec[13],
        n_prev: rec[14],
        n_auth: rec[15],
        pdu_prev_count: rec[16],
        outlier: flags & OUTLIER != 0,
        soft_failed: flags & SOFT_FAILED != 0,
        status: if flags & REJECTED != 0 { EventStatus::Rejected } else { EventStatus::Accepted },
        redacted_on_receipt: flags & REDACTED_ON_RECEIPT != 0,
        recheck_redaction: flags & RECHECK_REDACTION != 0,
        first_prev_ix: u32_at(17),
        sender: name(u32_at(21))?,
        event_type: name(u32_at(25))?,
        state_key: if flags & HAS_STATE_KEY != 0 { Some(name(u32_at(29))?) } else { None },
        key: (flags & HAS_KEY != 0).then(|| StateKeyIdx(u32_at(33))),
        depth: i64_at(37),
        origin_server_ts: i64_at(45),
        facts: Facts::None,
        state_before: StateSetId(u32_at(53)),
        state_after: StateSetId(u32_at(57)),
        auth_node_plus_one: std::num::NonZeroU32::new(u32_at(61)),
    };
    Ok((e, [u32_at(21), u32_at(25), u32_at(29)]))
}

/// Writes an event's record, then its links (`links`: its own).
fn write_record(w: &mut Writer<'_>, e: &StoredEvent, links: &[EventIdx], named: &dyn Fn(&Name) -> u32) {
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    let flags = flag(e.outlier, OUTLIER)
        | flag(e.soft_failed, SOFT_FAILED)
        | flag(e.status == EventStatus::Rejected, REJECTED)
        | flag(e.redacted_on_receipt, REDACTED_ON_RECEIPT)
        | flag(e.recheck_redaction, RECHECK_REDACTION)
        | flag(e.state_key.is_some(), HAS_STATE_KEY)
        | flag(e.key.is_some(), HAS_KEY);
    let mut rec = [0u8; RECORD_BYTES];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        rec[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(&[flags]);
    for v in [e.text.block, e.text.offset, e.text.len] {
        put(&v.to_le_bytes());
    }
    put(&[e.id_len, e.n_prev, e.n_auth, e.pdu_prev_count]);
    put(&e.first_prev_ix.to_le_bytes());
    let state_key = e.state_key.as_ref().map_or(0, named);
    for v in [named(&e.sender), named(&e.event_type), state_key, e.key.map_or(0, |k| k.0)] {
        put(&v.to_le_bytes());
    }
    put(&e.depth.to_le_bytes());
    put(&e.origin_server_ts.to_le_bytes());
    let node = e.auth_node_plus_one.map_or(0, std::num::NonZeroU32::get);
    for v in [e.state_before.0, e.state_after.0, node] {
        put(&v.to_le_bytes());
    }
    w.raw(&rec);
    for l in links {
        w.raw(&l.0.to_le_bytes());
    }
}

/// The number of a name in the image's name table, if it has one.
pub(crate) type NameNumber<'a> = &'a dyn Fn(&str) -> Option<u32>;

impl Events {
    /// Writes the table; `name` numbers the names of the room's name table
    /// (every sender, type and state key has one).
    ///
    /// The IDs of every full block must be settled
    /// ([`settle_ids`](Events::settle_ids)): the image names their rows
    /// and holds the IDs of the last, open block only.
    ///
    /// # Errors
    /// A packed block's row could not be read back.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>, name: NameNumber<'_>) -> Result<(), PageError> {
        w.len(self.text.len());
        for b in &self.text {
            w.bytes(b.as_bytes());
        }
        assert!(
            self.pdus.is_none() || self.settled_to == self.blocks.len(),
            "an image of a table with its IDs settled"
        );
        w.len(self.row_keys.len());
        for k in &self.row_keys {
            w.raw(k);
        }
        w.bytes(self.recent.get(self.blocks.len() - self.settled_to).map_or("", String::as_str).as_bytes());
        w.len(self.auth_lists.len());
        for b in &self.auth_lists {
            w.u32s(b.iter().map(|e| e.0));
        }
        w.len(self.len);
        let named = |n: &Name| name(n).expect("the name table holds every event's names");
        // The packed blocks' name numbers, in order: a paged block's row
        // holds them.
        w.u32s(self.names.names().iter().map(named).collect::<Vec<_>>().into_iter());
        let mut with_facts: Vec<(u32, Facts)> = Vec::new();
        // Paged blocks first (they are a prefix): each names its row and
        // holds its state events' records alone, with their places.
        for (b, blk) in self.blocks[..self.paged_to].iter().enumerate() {
            let p = blk.packed.as_ref().expect("a paged block is packed");
            w.u8(BLOCK_PAGED);
            w.raw(&blk.row.expect("a paged block has a row"));
            let (lo, hi) = blk.ts_range.unwrap_or((1, 0));
            w.i64(lo);
            w.i64(hi);
            w.len(blk.states.len());
            let first = (b * EVENTS_CHUNK) as u32;
            let index = |j: usize| first + u32::from(blk.states[j].at);
            for (k, e) in packed::unpack_alone(p, index, blk.states.len(), &self.names).iter().enumerate() {
                let at = usize::from(blk.states[k].at);
                w.u8(blk.states[k].at);
                write_record(w, e, blk.state_links(at), &named);
            }
            with_facts.extend(p.with_facts().map(|(at, f)| (first + at as u32, f.clone())));
        }
        for block in self.walk_blocks(self.paged_to) {
            let (events, links) = block?;
            if events.len() == EVENTS_CHUNK {
                w.u8(BLOCK_RECORDS);
            }
            for e in events.iter() {
                write_record(w, e, e.links_in(&links), &named);
                if !matches!(e.facts, Facts::None) {
                    with_facts.push((e.idx.0, e.facts.clone()));
                }
            }
        }
        // The level-map chunks, each once (a power-levels event shares most
        // of its chunks with the one before): maps list chunk numbers.
        let mut level_chunks: Numbering<'_, [(Name, Level)]> = Numbering::default();
        for (_, f) in &with_facts {
            if let Facts::PowerLevels(p) = f {
                for m in [&p.users, &p.events, &p.notifications] {
                    m.entries.chunks().iter().for_each(|c| level_chunks.number(c));
                }
            }
        }
        w.len(level_chunks.table.len());
        for c in &level_chunks.table {
            w.len(c.len());
            for (k, l) in c.iter() {
                write_name(w, k, name);
                write_level(w, Some(l));
            }
        }
        w.len(with_facts.len());
        for (i, f) in &with_facts {
            w.u32(*i);
            write_facts(w, f, &level_chunks);
        }
        Ok(())
    }

    /// Reads a table written by [`write_image`](Self::write_image), its PDU
    /// texts in `pdus`. Indexes into other tables (states, auth nodes,
    /// state keys) are checked by the caller, which knows their sizes.
    pub(crate) fn read_image(
        r: &mut Reader<'_>,
        names: &[Name],
        pdus: PageCache,
        level_chunks: &mut LevelChunkPool,
    ) -> Result<(Self, RefBounds), ImageError> {
        let n_text = r.len(8)?;
        let mut text = Vec::with_capacity(n_text);
        for i in 0..n_text {
            let mut block = String::from_utf8(r.bytes()?).map_err(|_| corrupt("a text block is not UTF-8"))?;
            // The last block gets room to grow, as a block the room made;
            // the others are full and keep their size (`reserve` would
            // double them: 44 MiB more at Matrix HQ's million events).
            if i + 1 == n_text {
                block.reserve_exact(TEXT_BLOCK.saturating_sub(block.len()));
            }
            text.push(block);
        }
        let n_rows = r.len(16)?;
        let mut row_keys = Vec::with_capacity(n_rows);
        for _ in 0..n_rows {
            row_keys.push(<[u8; 16]>::try_from(r.take(16)?).expect("16 bytes"));
        }
        let tail_ids = String::from_utf8(r.bytes()?).map_err(|_| corrupt("the open block's IDs are not UTF-8"))?;
        let auth_lists = read_refs(r)?;
        // Paged blocks hold their state events' records only: the count is
        // bounded by the bytes left, and must match the row keys of IDs read
        // above (one a full block).
        let len = r.len(1)?;
        if n_rows != len / EVENTS_CHUNK {
            return Err(corrupt("the image names a row of IDs for other than each full block"));
        }
        let mut bounds = RefBounds::default();
        let mut events = Events::for_read(pdus);
        // The events packed as they are read that are not state events are
        // never read as built: they get a placeholder for their names (a
        // name's clone touches its reference count, scattered over memory
        // for a room's 100,000 members: most of a read-back's time), and
        // are packed from the image's name numbers, mapped once each to
        // the table's: numbered as the room numbered them (the rows of
        // paged blocks hold those numbers), then as they come.
        let packed_len = len / EVENTS_CHUNK * EVENTS_CHUNK;
        let placeholder = Name::new("");
        let mut table_number: Vec<u32> = vec![u32::MAX; names.len()];
        for v in r.u32s()? {
            let i = index(v, names.len(), "a name")? as usize;
            let n = events.names.push(names[i].clone());
            if table_number[i] == u32::MAX {
                table_number[i] = n;
            }
        }
        let mut number = |events: &mut Events, v: u32| -> Result<u32, ImageError> {
            let i = index(v, names.len(), "a name")? as usize;
            if table_number[i] == u32::MAX {
                table_number[i] = events.names.number(&names[i]);
            }
            Ok(table_number[i])
        };
        let mut links: Vec<EventIdx> = Vec::new();
        let mut read = |r: &mut Reader<'_>, events: &mut Events, i: usize, links: &mut Vec<EventIdx>| {
            let (e, [sender, event_type, state_key]) = read_record(r, i, i < packed_len, names, &placeholder)?;
            links.clear();
            for l in r.take(4 * e.links_len() as usize)?.chunks_exact(4) {
                links.push(EventIdx(u32::from_le_bytes(l.try_into().expect("4 bytes"))));
            }
            check_refs(&e, &text, &tail_ids, packed_len, links, &auth_lists, len)?;
            bounds.note(&e);
            let state_key = if e.state_key.is_some() { number(events, state_key)? } else { 0 };
            let numbers = [number(events, sender)?, number(events, event_type)?, state_key];
            Ok::<_, ImageError>((e, numbers))
        };
        for b in 0..len / EVENTS_CHUNK {
            let first = b * EVENTS_CHUNK;
            match r.u8()? {
                BLOCK_RECORDS => {
                    for i in first..first + EVENTS_CHUNK {
                        let (e, numbers) = read(r, &mut events, i, &mut links)?;
                        events.push_read(e, &links, numbers);
                    }
                }
                BLOCK_PAGED if events.paged_to == b => {
                    let key = <[u8; 16]>::try_from(r.take(16)?).expect("16 bytes");
                    // Its timeline's timestamps (none: greatest under least).
                    let (lo, hi) = (r.i64()?, r.i64()?);
                    let ts_range = (lo <= hi).then_some((lo, hi));
                    let n = r.len(1 + RECORD_BYTES)?;
                    let mut states = Vec::with_capacity(n);
                    for _ in 0..n {
                        let at = usize::from(r.u8()?);
                        if states.last().is_some_and(|(e, _, _): &(StoredEvent, _, _)| e.idx.ix() >= first + at) {
                            return Err(corrupt("a paged block's state events are out of order"));
                        }
                        let (e, numbers) = read(r, &mut events, first + at, &mut links)?;
                        if e.key.is_none() {
                            return Err(corrupt("a paged block lists an event that is not a state event"));
                        }
                        states.push((e, links.clone(), numbers));
                    }
                    events.push_paged(key, &states, ts_range);
                }
                _ => return Err(corrupt("a block of the event table is neither records nor paged after paged ones")),
            }
        }
        for i in packed_len..len {
            let (e, numbers) = read(r, &mut events, i, &mut links)?;
            events.push_read(e, &links, numbers);
        }
        let n_chunks = r.len(8)?;
        let mut table: Vec<LevelChunk> = Vec::with_capacity(n_chunks);
        let mut entries: Vec<(Name, Level)> = Vec::new();
        for _ in 0..n_chunks {
            let n = r.len(5)?;
            entries.clear();
            for _ in 0..n {
                let k = read_name(r, names)?;
                let l = read_level(r)?.ok_or_else(|| corrupt("a level map entry without a level"))?;
                entries.push((k, l));
            }
            if entries.is_empty() || !entries.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(corrupt("a level-map chunk is empty or out of key order"));
            }
            table.push(level_chunks.chunk(&entries));
        }
        let n_facts = r.len(5)?;
        let mut shared = SharedFacts { table, pool: level_chunks };
        let mut facts = Vec::with_capacity(n_facts);
        for _ in 0..n_facts {
            let i = index(r.u32()?, len, "a content fact's event")?;
            if facts.last().is_some_and(|(last, _)| *last >= i) {
                return Err(corrupt("content facts are out of event order"));
            }
            facts.push((i, read_facts(r, &mut shared)?));
        }
        events.set_read_facts(facts);
        events.text = text;
        events.auth_lists = auth_lists;
        events.settled_to = n_rows;
        events.row_keys = row_keys;
        events.recent = std::collections::VecDeque::from([tail_ids]);
        Ok((events, bounds))
    }
}

/// The largest state, state key and auth node numbers an event table read
/// back refers to (plus one: the sizes those tables need), checked by the
/// caller once it has read them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RefBounds {
    pub(crate) states: u32,
    pub(crate) keys: u32,
    pub(crate) nodes: u32,
}

impl RefBounds {
    fn note(&mut self, e: &StoredEvent) {
        self.states = self.states.max(e.state_before.0.saturating_add(1)).max(e.state_after.0.saturating_add(1));
        if let Some(k) = e.key {
            self.keys = self.keys.max(k.0.saturating_add(1));
        }
        if let Some(node) = e.auth_node() {
            self.nodes = self.nodes.max(node.saturating_add(1));
        }
    }
}

fn corrupt(what: &str) -> ImageError {
    ImageError::Corrupt(what.into())
}

/// The event's ID is where its text reference says (the arena; the open
/// block's IDs `tail_ids`, for an event after the `full` events of full
/// blocks; its block's row, for one before them that is not a state
/// event), its auth list is inside the arena, and its links (`links`) and
/// first prev event name stored events.
fn check_refs(
    e: &StoredEvent,
    text: &[String],
    tail_ids: &str,
    full: usize,
    links: &[EventIdx],
    auth_lists: &[Vec<EventIdx>],
    len: usize,
) -> Result<(), ImageError> {
    let t = e.text;
    let within = |b: &str, offset: u32, len: u32| {
        (offset as usize).checked_add(len as usize).is_some_and(|end| end <= b.len())
            && b.is_char_boundary(offset as usize)
            && b.is_char_boundary(offset as usize + e.id_len as usize)
    };
    let id_ok = match t.block {
        super::id_rows::PAGED => e.idx.ix() < full && e.key.is_none(),
        super::id_rows::RECENT => e.idx.ix() >= full && within(tail_ids, t.offset, u32::from(e.id_len)),
        b => e.id_len as u32 <= t.len && text.get(b as usize).is_some_and(|b| within(b, t.offset, t.len)),
    };
    if !id_ok {
        return Err(corrupt("an event's text is outside the arena"));
    }
    if e.first_prev_ix != u32::MAX {
        index(e.first_prev_ix, len, "a first prev event")?;
    }
    let events = |refs: &[EventIdx]| refs.iter().try_for_each(|l| index(l.0, len, "a linked event").map(|_| ()));
    let (prevs, auth_at) = links.split_at(usize::from(e.n_prev));
    events(prevs)?;
    if let Some(at) = auth_at.first() {
        let list = refs_at(auth_lists, at.0, usize::from(e.n_auth))
            .ok_or_else(|| corrupt("an event's auth list is outside the arena"))?;
        events(list)?;
    }
    Ok(())
}

/// The auth-list arena (`Writer::u32s` a block), each block at most
/// `LINK_BLOCK` long and read back with room for that many.
fn read_refs(r: &mut Reader<'_>) -> Result<Vec<Vec<EventIdx>>, ImageError> {
    let n = r.len(8)?;
    let mut arena = Vec::with_capacity(n);
    for _ in 0..n {
        let b = r.u32s()?;
        if b.len() > LINK_BLOCK {
            return Err(corrupt("a link block is oversized"));
        }
        let mut block = Vec::with_capacity(LINK_BLOCK);
        block.extend(b.into_iter().map(EventIdx));
        arena.push(block);
    }
    Ok(arena)
}

// Content facts: a tag, then the variant's fields. Strings that are names
// (user IDs, event types) are written as their number in the name table.

const CREATE: u8 = 1;
const MEMBER: u8 = 2;
const POWER_LEVELS: u8 = 3;
const JOIN_RULES: u8 = 4;
const HISTORY_VISIBILITY: u8 = 5;
const THIRD_PARTY_INVITE: u8 = 6;
const REDACTION: u8 = 7;
const SERVER_ACL: u8 = 8;

/// A name by its number in the name table, or inline after `u32::MAX`.
fn write_name(w: &mut Writer<'_>, s: &str, name: NameNumber<'_>) {
    match name(s) {
        Some(n) => w.u32(n),
        None => {
            w.u32(u32::MAX);
            w.str(s);
        }
    }
}

fn read_name(r: &mut Reader<'_>, names: &[Name]) -> Result<Name, ImageError> {
    match r.u32()? {
        u32::MAX => Ok(Name::new(&r.str()?)),
        n => Ok(names[index(n, names.len(), "a name")? as usize].clone()),
    }
}

fn write_json(w: &mut Writer<'_>, v: Option<&Value>) {
    w.opt_str(v.map(|v| serde_json::to_string(v).expect("JSON values serialise")).as_deref());
}

fn read_json(r: &mut Reader<'_>) -> Result<Option<Value>, ImageError> {
    r.opt_str()?.map(|s| serde_json::from_str(&s).map_err(|e| ImageError::Corrupt(format!("a fact: {e}")))).transpose()
}

fn write_object(w: &mut Writer<'_>, m: &Map<String, Value>) {
    w.str(&serde_json::to_string(m).expect("JSON objects serialise"));
}

fn read_object(r: &mut Reader<'_>) -> Result<Map<String, Value>, ImageError> {
    serde_json::from_str(&r.str()?).map_err(|e| ImageError::Corrupt(format!("a fact: {e}")))
}

const MEMBERSHIPS: [Membership; 7] = [
    Membership::Join,
    Membership::Invite,
    Membership::Leave,
    Membership::Ban,
    Membership::Knock,
    Membership::Other,
    Membership::Missing,
];
const JOIN_RULE_VALUES: [JoinRule; 6] = [
    JoinRule::Public,
    JoinRule::Invite,
    JoinRule::Knock,
    JoinRule::Restricted,
    JoinRule::KnockRestricted,
    JoinRule::Other,
];

fn position<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).expect("every value is listed") as u8
}

fn nth<T: Clone>(all: &[T], i: u8, what: &str) -> Result<T, ImageError> {
    all.get(i as usize).cloned().ok_or_else(|| ImageError::Corrupt(format!("{what} {i}")))
}

fn write_facts(w: &mut Writer<'_>, f: &Facts, level_chunks: &Numbering<'_, [(Name, Level)]>) {
    match f {
        Facts::None => unreachable!("only events with facts are written"),
        Facts::Create(c) => {
            w.u8(CREATE);
            w.opt_str(c.creator.as_deref());
            w.u8(u8::from(c.creator_present) | u8::from(c.federate) << 1);
            w.strs(&c.additional_creators);
            write_json(w, c.additional_creators_raw.as_ref());
            w.opt_str(c.room_version.as_deref());
        }
        Facts::Member(m) => {
            w.u8(MEMBER);
            w.u8(position(&MEMBERSHIPS, &m.membership));
            write_json(w, m.authorising_user.as_ref());
            write_json(w, m.third_party_invite.as_ref());
        }
        Facts::PowerLevels(p) => {
            w.u8(POWER_LEVELS);
            for m in [&p.users, &p.events, &p.notifications] {
                write_level_map(w, m, level_chunks);
            }
            for l in &p.scalars {
                write_level(w, l.as_ref());
            }
            w.u8(u8::from(p.scalars_strict_ints));
        }
        Facts::JoinRules(j) => {
            w.u8(JOIN_RULES);
            w.u8(position(&JOIN_RULE_VALUES, j));
        }
        Facts::HistoryVisibility(v) => {
            w.u8(HISTORY_VISIBILITY);
            w.opt_str(v.as_deref());
        }
        Facts::ThirdPartyInvite(m) => {
            w.u8(THIRD_PARTY_INVITE);
            write_object(w, m);
        }
        Facts::Redaction(t) => {
            w.u8(REDACTION);
            w.opt_str(t.as_deref());
        }
        Facts::ServerAcl(m) => {
            w.u8(SERVER_ACL);
            write_object(w, m);
        }
    }
}

/// What the facts of an image share: the level-map chunks, numbered as
/// written (each held once, in the room's pool), and one value per plain
/// membership.
struct SharedFacts<'p> {
    table: Vec<LevelChunk>,
    pool: &'p mut LevelChunkPool,
}

fn read_facts(r: &mut Reader<'_>, shared: &mut SharedFacts) -> Result<Facts, ImageError> {
    Ok(match r.u8()? {
        CREATE => {
            let creator = r.opt_str()?;
            let flags = r.u8()?;
            Facts::Create(Box::new(CreateFacts {
                creator,
                creator_present: flags & 1 != 0,
                federate: flags & 2 != 0,
                additional_creators: r.strs()?.into_iter().map(String::from).collect(),
                additional_creators_raw: read_json(r)?,
                room_version: r.opt_str()?,
            }))
        }
        MEMBER => {
            let at = r.u8()?;
            let m = MemberFacts {
                membership: nth(&MEMBERSHIPS, at, "a membership")?,
                authorising_user: read_json(r)?,
                third_party_invite: read_json(r)?,
            };
            // Most memberships say nothing else: one shared value each.
            Facts::Member(shared.pool.member(m))
        }
        POWER_LEVELS => {
            let users = read_level_map(r, shared)?;
            let events = read_level_map(r, shared)?;
            let notifications = read_level_map(r, shared)?;
            let mut scalars = [None; 7];
            for s in &mut scalars {
                *s = read_level(r)?;
            }
            let scalars_strict_ints = r.u8()? != 0;
            Facts::PowerLevels(Arc::new(PowerLevels { users, events, notifications, scalars, scalars_strict_ints }))
        }
        JOIN_RULES => Facts::JoinRules(nth(&JOIN_RULE_VALUES, r.u8()?, "a join rule")?),
        HISTORY_VISIBILITY => Facts::HistoryVisibility(r.opt_str()?.map(|s| Name::new(&s))),
        THIRD_PARTY_INVITE => Facts::ThirdPartyInvite(Box::new(read_object(r)?)),
        REDACTION => Facts::Redaction(r.opt_str()?.map(|s| Name::new(&s))),
        SERVER_ACL => Facts::ServerAcl(Arc::new(read_object(r)?)),
        t => return Err(ImageError::Corrupt(format!("a content fact tagged {t}"))),
    })
}

fn write_level(w: &mut Writer<'_>, l: Option<&Level>) {
    match l {
        None => w.u8(4),
        Some(Level::Int(v)) => match i64::try_from(*v) {
            Ok(v) => {
                w.u8(0);
                w.i64(v);
            }
            Err(_) => {
                w.u8(1);
                w.raw(&v.to_le_bytes());
            }
        },
        Some(Level::Null) => w.u8(2),
        Some(Level::Invalid) => w.u8(3),
    }
}

fn read_level(r: &mut Reader<'_>) -> Result<Option<Level>, ImageError> {
    Ok(match r.u8()? {
        0 => Some(Level::Int(i128::from(r.i64()?))),
        1 => Some(Level::Int(i128::from_le_bytes(r.take(16)?.try_into().expect("16 bytes")))),
        2 => Some(Level::Null),
        3 => Some(Level::Invalid),
        4 => None,
        t => return Err(ImageError::Corrupt(format!("a power level tagged {t}"))),
    })
}

fn write_level_map(w: &mut Writer<'_>, m: &LevelMap, level_chunks: &Numbering<'_, [(Name, Level)]>) {
    w.u8(u8::from(m.all_strict_ints) | u8::from(m.not_an_object) << 1);
    write_json(w, m.other.as_ref());
    w.u32s(m.entries.chunks().iter().map(|c| level_chunks.of(c)));
}

fn read_level_map(r: &mut Reader<'_>, shared: &SharedFacts) -> Result<LevelMap, ImageError> {
    let flags = r.u8()?;
    let other = read_json(r)?;
    let numbers = r.u32s()?;
    let mut chunks = Vec::with_capacity(numbers.len());
    for n in numbers {
        chunks.push(Arc::clone(&shared.table[index(n, shared.table.len(), "a level-map chunk")? as usize]));
    }
    let entries = LevelEntries::from_chunks(chunks).map_err(corrupt)?;
    Ok(LevelMap { entries, all_strict_ints: flags & 1 != 0, not_an_object: flags & 2 != 0, other })
}
