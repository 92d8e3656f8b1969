//! The paged store's failure paths (issue 13): a page store that fails to
//! write leaves nothing stored and the PDU can be sent again; one that fails
//! to read gives a typed error and a 500, never a panic.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use roomdag::http::{outgoing_pdu, room_query, route, Target};
use roomdag::pages::{MemoryPages, PageError, PageStore, Table};
use roomdag::room::DropStage;
use roomdag::{EventIdx, Outcome, Room, Verification};

use crate::common::Builder;

/// A memory store whose next write or every read can be made to fail.
struct Flaky {
    inner: Rc<RefCell<MemoryPages>>,
    fail_next_put: Rc<Cell<bool>>,
    fail_gets: Rc<Cell<bool>>,
}

impl PageStore for Flaky {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        if self.fail_gets.get() {
            return Err(PageError::Backend("disk on fire".into()));
        }
        self.inner.get(table, key)
    }
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        if self.fail_next_put.replace(false) {
            return Err(PageError::Backend("no space left".into()));
        }
        self.inner.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.inner.delete(table, key)
    }
}

fn a_room_with_messages() -> Builder {
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let join = b.creator_join.clone();
    let mut prev = b.join_rules.clone();
    for i in 0..30 {
        let raw = b.message(&creator, &join, &[&prev], &format!("message {i}"));
        prev = b.add_ok(raw);
    }
    b
}

#[test]
fn a_failed_page_write_stores_nothing_and_the_pdu_can_be_sent_again() {
    let mut b = a_room_with_messages();
    let fail_next_put = Rc::new(Cell::new(false));
    let store =
        Flaky { inner: Rc::default(), fail_next_put: fail_next_put.clone(), fail_gets: Rc::new(Cell::new(false)) };
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(store), 4096).unwrap();
    for (i, raw) in b.raws.iter().enumerate() {
        if i % 7 == 3 {
            fail_next_put.set(true);
            let before = room.events().len();
            match room.ingest(raw, Verification::Unsigned) {
                Outcome::Dropped { stage: DropStage::Store, reason, .. } => {
                    assert!(reason.contains("no space left"), "{reason}")
                }
                other => panic!("event {i}: expected a store drop, got {other:?}"),
            }
            assert_eq!(room.events().len(), before, "event {i}: nothing stored");
            assert!(room.lookup(&b.stored[i]).unwrap().is_none(), "event {i}: not indexed");
        }
        let o = room.ingest(raw, Verification::Unsigned);
        assert!(matches!(o, Outcome::Accepted { .. }), "event {i}: {o:?}");
    }
    // The same room as one that never paged.
    assert_eq!(room.events().len(), b.room.events().len());
    let (mine, theirs) = (room.current_state().unwrap(), b.room.current_state().unwrap());
    assert_eq!(room.state_digest(mine).unwrap(), b.room.state_digest(theirs).unwrap());
    for i in 0..room.events().len() {
        let idx = EventIdx(i as u32);
        assert_eq!(outgoing_pdu(&room, idx, false).unwrap(), outgoing_pdu(&b.room, idx, false).unwrap());
    }
    // The page store holds exactly the stored events' PDUs.
    assert!(room.page_stats().unwrap().bytes <= 4096);
}

#[test]
fn a_failed_page_read_is_a_500_not_a_panic() {
    let b = a_room_with_messages();
    let fail_gets = Rc::new(Cell::new(false));
    let store = Flaky { inner: Rc::default(), fail_next_put: Rc::new(Cell::new(false)), fail_gets: fail_gets.clone() };
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(store), 4096).unwrap();
    for raw in &b.raws {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    fail_gets.set(true);
    // The oldest event is long out of the 4 KiB cache.
    let first = &b.stored[0];
    assert_eq!(room.raw(EventIdx(0)).unwrap_err(), PageError::Backend("disk on fire".into()));
    let path = format!("/_matrix/federation/v1/event/{first}");
    let target = Target::parse(&path).unwrap();
    let endpoint = route("GET", &target).unwrap();
    let e = room_query(&room, &endpoint, &target, None, "a.example", "roomdag.example", 0).unwrap_err();
    assert_eq!((e.status, e.errcode), (500, "M_UNKNOWN"), "{e:?}");
    // Receiving still works (ingest never reads PDUs back), and once the
    // store answers again so does the query.
    fail_gets.set(false);
    assert!(room_query(&room, &endpoint, &target, None, "a.example", "roomdag.example", 0).is_ok());
    assert!(room.set_pages(Box::new(MemoryPages::new()), 4096).is_err(), "pages only on an empty room");
}

#[test]
fn a_rolled_back_batch_leaves_the_page_store_as_before_it() {
    let b = a_room_with_messages();
    let pages = Rc::new(RefCell::new(MemoryPages::new()));
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(pages.clone()), 4096).unwrap();
    let (first, rest) = b.raws.split_at(10);
    for raw in first {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    assert_eq!(pages.borrow().len(), 10);
    let cp = room.checkpoint();
    for raw in rest {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    assert_eq!(pages.borrow().len(), b.raws.len());
    room.rollback(cp);
    assert_eq!(pages.borrow().len(), 10, "the batch's rows are deleted with it");
    assert_eq!(room.events().len(), 10);
    // And the batch can be received again.
    for raw in rest {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    assert_eq!(pages.borrow().len(), b.raws.len());
}

/// A room of `n` messages with a join every 40 events (state events).
fn a_long_room(n: usize) -> Builder {
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let join = b.creator_join.clone();
    let mut prev = b.join_rules.clone();
    for i in 0..n {
        let raw = if i % 40 == 0 {
            b.join(&format!("@user{i}:b.example"), &[&prev])
        } else {
            b.message(&creator, &join, &[&prev], &format!("message {i}"))
        };
        prev = b.add_ok(raw);
    }
    b
}

/// With a page store, the IDs of a full block's events that are not state
/// events are written as one row and no longer held: each reads back
/// right, is found by lookup, and a store that cannot read them back gives
/// typed errors (a 500, a PDU dropped and received again later) while state
/// events keep theirs. A block filled in a batch is not written while the
/// batch may roll back, and a row that cannot be written is written at the
/// next trim, its IDs held meanwhile.
#[test]
fn the_ids_of_full_blocks_are_rows_read_back_when_needed() {
    let b = a_long_room(1200);
    let (fail_next_put, fail_gets) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let store = Flaky { inner: pages.clone(), fail_next_put: fail_next_put.clone(), fail_gets: fail_gets.clone() };
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(store), 4096).unwrap();
    // Three full blocks; the third's row is written at the next trim.
    let (first, batch) = b.raws.split_at(3 * 256);
    for raw in first {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    let rows = |pages: &Rc<RefCell<MemoryPages>>| pages.borrow().len_of(Table::Ids);
    assert_eq!(rows(&pages), 2, "a row per full block");

    // A batch: the block filled before it is settled as it runs (its state
    // events' IDs kept, and kept through a rollback), and the block it
    // fills is not written while it may roll back.
    let cp = room.checkpoint();
    for raw in &batch[..300] {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    room.trim_caches();
    assert_eq!(rows(&pages), 3, "no row for the block of an open batch");
    room.rollback(cp);
    assert_eq!(room.events().len(), 3 * 256);
    for i in 512..768 {
        if room.event(EventIdx(i as u32)).unwrap().is_state() {
            assert_eq!(room.state_id(EventIdx(i as u32)), b.stored[i], "state event {i}");
        }
    }
    // Up to the end of the fourth block: its row is written at the next trim.
    let (upto, rest) = batch.split_at(256);
    for raw in upto {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    assert_eq!(rows(&pages), 3);
    // A row that cannot be written waits for the next trim.
    fail_next_put.set(true);
    room.trim_caches();
    assert!(!fail_next_put.get());
    assert_eq!(rows(&pages), 3, "the fourth block's row failed");
    assert_eq!(&*room.id(EventIdx(1000)).unwrap(), b.stored[1000], "its IDs are held meanwhile");
    room.trim_caches();
    assert_eq!(rows(&pages), 4);
    for raw in rest {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }

    // Every ID reads back and is found, as in a room that never paged.
    for (i, id) in b.stored.iter().enumerate() {
        let idx = EventIdx(i as u32);
        assert_eq!(&*room.id(idx).unwrap(), id.as_str(), "event {i}");
        assert_eq!(room.lookup(id).unwrap(), Some(idx), "event {i}");
        assert_eq!(outgoing_pdu(&room, idx, false).unwrap(), outgoing_pdu(&b.room, idx, false).unwrap());
    }
    assert_eq!(room.lookup("$not-stored").unwrap(), None);
    room.trim_caches();
    let (n, full) = (b.stored.len(), 4 * 256);
    let states = (0..full).filter(|i| room.event(EventIdx(*i as u32)).unwrap().is_state()).count();
    let held = room.events().text_footprint().1;
    assert!(held <= (states + n - full) * 44, "{held} bytes of IDs held for {states} state events");

    // The store stops answering: an old message's ID is an error, and so
    // is its record (its block is paged: a row of packed records); a state
    // event's ID and record are still held.
    let mut b = b;
    let old = (1..256usize).find(|i| !room.event(EventIdx(*i as u32)).unwrap().is_state()).unwrap();
    let join = (1..256usize).find(|i| room.event(EventIdx(*i as u32)).unwrap().is_state()).unwrap();
    let other = (256..512usize).find(|i| !room.event(EventIdx(*i as u32)).unwrap().is_state()).unwrap();
    assert!(pages.borrow().len_of(Table::Blocks) >= 4, "a row per full block settled");
    room.trim_caches();
    // The cache holds one block's row (4 KiB): block 0's, read last.
    room.event(EventIdx(old as u32)).unwrap();
    fail_gets.set(true);
    assert_eq!(room.id(EventIdx(old as u32)).unwrap_err(), PageError::Backend("disk on fire".into()));
    assert!(!room.event(EventIdx(old as u32)).unwrap().is_state(), "a row in the cache is read from it");
    assert_eq!(room.event(EventIdx(other as u32)).unwrap_err(), PageError::Backend("disk on fire".into()));
    assert_eq!(room.prev_events(EventIdx(other as u32)).unwrap_err(), PageError::Backend("disk on fire".into()));
    assert_eq!(room.state_id(EventIdx(join as u32)), b.stored[join]);
    assert!(room.state_event(EventIdx(join as u32)).is_state());
    let path = format!("/_matrix/federation/v1/event/{}", b.stored[old]);
    let target = Target::parse(&path).unwrap();
    let endpoint = route("GET", &target).unwrap();
    let e = room_query(&room, &endpoint, &target, None, "a.example", "roomdag.example", 0).unwrap_err();
    assert_eq!((e.status, e.errcode), (500, "M_UNKNOWN"), "{e:?}");
    // A PDU whose prev event is that message cannot be placed: dropped,
    // nothing stored, and received once the store answers again.
    let (creator, member) = (b.creator.clone(), b.creator_join.clone());
    let late = b.message(&creator, &member, &[&b.stored[old].clone()], "a late reply");
    let before = room.events().len();
    match room.ingest(&late, Verification::Unsigned) {
        Outcome::Dropped { stage: DropStage::Store, reason, .. } => {
            assert!(reason.contains("disk on fire"), "{reason}")
        }
        other => panic!("expected a store drop, got {other:?}"),
    }
    assert_eq!(room.events().len(), before);
    fail_gets.set(false);
    assert!(matches!(room.ingest(&late, Verification::Unsigned), Outcome::Accepted { .. }));
    assert!(room_query(&room, &endpoint, &target, None, "a.example", "roomdag.example", 0).is_ok());
}

/// A paged room holding `b`'s events behind a cache of `cache` bytes, and
/// its page store.
fn paged_copy(b: &Builder, cache: usize) -> (Room, Rc<RefCell<MemoryPages>>) {
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(pages.clone()), cache).unwrap();
    for raw in &b.raws {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    room.trim_caches();
    (room, pages)
}

/// `/timestamp_to_event` answers as a scan of every event does, reading
/// only the blocks whose timestamps may hold a better answer: in a room
/// whose timestamps jump back and forth, and in one whose timestamps rise
/// (one or two blocks read a query, of a room of any size).
#[test]
fn timestamp_to_event_reads_only_the_blocks_that_may_hold_its_answer() {
    use roomdag::queries::{timestamp_to_event, Direction};
    let mut b = Builder::new_v11();
    let (creator, join) = (b.creator.clone(), b.creator_join.clone());
    let mut prev = b.join_rules.clone();
    let base = b.ts;
    let mut seed = 7u64;
    for i in 0..1500i64 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // One in ten thrown anywhere in the room's span; some repeated.
        b.ts = match i % 10 {
            7 => base + (seed >> 33) as i64 % 1_600_000,
            3 => b.ts - 1,
            _ => base + i * 1000,
        };
        let raw = b.message(&creator, &join, &[&prev], &format!("message {i}"));
        prev = b.add_ok(raw);
    }
    let (room, _) = paged_copy(&b, 4096);
    let mut all: Vec<(i128, i64, EventIdx)> = Vec::new();
    room.events()
        .walk(|e, _, _| -> Result<(), PageError> {
            if e.is_accepted() && !e.outlier {
                all.push((i128::from(e.origin_server_ts), e.depth, e.idx));
            }
            Ok(())
        })
        .unwrap();
    let scan = |ts: i128, forward: bool| {
        let fit = all.iter().copied().filter(|k| if forward { k.0 >= ts } else { k.0 <= ts });
        if forward { fit.min() } else { fit.max() }.map(|k| k.2)
    };
    let mut probes: Vec<i128> = all.iter().step_by(7).flat_map(|k| [k.0 - 1, k.0, k.0 + 1]).collect();
    probes.extend([0, i128::from(base) - 1, i128::from(b.ts) * 2, i128::from(i64::MAX) + 5, -5]);
    for ts in probes {
        for (dir, forward) in [(Direction::Forward, true), (Direction::Backward, false)] {
            let got = timestamp_to_event(&room, "a.example", ts, dir).ok();
            assert_eq!(got, scan(ts, forward), "ts {ts}, forward {forward}");
        }
    }

    // Timestamps that rise: a query reads at most two blocks' rows.
    let b = a_long_room(3000);
    let (mut room, _) = paged_copy(&b, 4096);
    for i in (5..3000).step_by(97) {
        let ts = i128::from(room.event(EventIdx(i as u32)).unwrap().origin_server_ts);
        room.trim_caches();
        let misses = room.page_stats().unwrap().misses;
        let found = timestamp_to_event(&room, "a.example", ts, Direction::Forward).unwrap();
        assert_eq!(found, EventIdx(i as u32));
        assert!(room.page_stats().unwrap().misses - misses <= 2, "event {i}: blocks read");
    }
}

/// A row of a paged block that is not the one written (its hash differs
/// from its key) is a typed error, never a panic: reading one of its
/// messages fails, a query of one answers 500, a PDU after one is dropped
/// at the store stage with nothing stored, and its state events are still
/// read (they are held packed apart).
#[test]
fn a_damaged_block_row_is_a_typed_error() {
    let mut b = a_long_room(1200);
    let (mut room, pages) = paged_copy(&b, 4096);
    let rows = pages.borrow().rows_of(Table::Blocks);
    assert_eq!(rows.len(), room.events().full_blocks(), "a row per full block");
    for (key, mut row) in rows {
        let at = row.len() / 2;
        row[at] ^= 0x5a;
        pages.borrow_mut().put(Table::Blocks, &key, &row).unwrap();
    }
    let is_state = |b: &Builder, i: usize| b.room.event(EventIdx(i as u32)).unwrap().is_state();
    let message = (256..512).find(|i| !is_state(&b, *i)).unwrap();
    let state = (256..512).find(|i| is_state(&b, *i)).unwrap();
    match room.event(EventIdx(message as u32)) {
        Err(PageError::Corrupt { table: Table::Blocks, .. }) => {}
        other => panic!("expected a corrupt row, got {other:?}"),
    }
    let fields = |r: &Room| {
        let idx = EventIdx(state as u32);
        let e = r.state_event(idx);
        let auth: Vec<String> = r.auth_events(idx).unwrap().iter().map(|a| r.state_id(*a).to_owned()).collect();
        format!(
            "{} {:?} {:?} {:?} {} {} {:?} {auth:?}",
            r.state_id(idx),
            e.sender,
            e.event_type,
            e.state_key,
            e.depth,
            e.origin_server_ts,
            e.facts
        )
    };
    assert_eq!(fields(&room), fields(&b.room), "a state event of a damaged block reads as stored");
    let path = format!("/_matrix/federation/v1/event/{}", b.stored[message]);
    let target = Target::parse(&path).unwrap();
    let endpoint = route("GET", &target).unwrap();
    let e = room_query(&room, &endpoint, &target, None, "a.example", "roomdag.example", 0).unwrap_err();
    assert_eq!((e.status, e.errcode), (500, "M_UNKNOWN"), "{e:?}");
    let (creator, member) = (b.creator.clone(), b.creator_join.clone());
    let late = b.message(&creator, &member, &[&b.stored[message].clone()], "a late reply");
    let before = (room.events().len(), pages.borrow().len());
    match room.ingest(&late, Verification::Unsigned) {
        Outcome::Dropped { stage: DropStage::Store, reason, .. } => assert!(reason.contains("corrupt"), "{reason}"),
        other => panic!("expected a store drop, got {other:?}"),
    }
    assert_eq!((room.events().len(), pages.borrow().len()), before, "nothing stored");
    room.trim_caches();
}

/// A memory store counting the reads of each table.
struct CountingReads {
    inner: Rc<RefCell<MemoryPages>>,
    reads: Rc<RefCell<std::collections::HashMap<Table, usize>>>,
}

impl PageStore for CountingReads {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        *self.reads.borrow_mut().entry(table).or_default() += 1;
        self.inner.get(table, key)
    }
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        self.inner.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.inner.delete(table, key)
    }
}

/// With a page store, the ID index's entries of settled messages move to
/// rows of hash buckets: the room holds the entries of state events and
/// recent events only; every ID is still found (after a rollback, and read
/// back from an image); a new PDU's duplicate check rarely reads a bucket
/// (the Bloom filter); a damaged bucket is a typed error and a 500, never
/// a wrong answer, while state events are still found.
#[test]
fn the_id_entries_of_settled_messages_are_buckets_in_the_page_store() {
    let mut b = a_long_room(5000);
    let (creator, member) = (b.creator.clone(), b.creator_join.clone());
    let later: Vec<String> = {
        let mut prev = b.stored.last().unwrap().clone();
        (0..400)
            .map(|i| {
                let raw = b.message(&creator, &member, &[&prev], &format!("later {i}"));
                prev = b.add_ok(raw.clone());
                raw
            })
            .collect()
    };
    let extra = b.message(&creator, &member, &[&b.stored.last().unwrap().clone()], "rolled back");
    let (n, old) = (b.stored.len(), b.stored.len() - later.len());
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let reads: Rc<RefCell<std::collections::HashMap<Table, usize>>> = Rc::default();
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(CountingReads { inner: pages.clone(), reads: reads.clone() }), 4096).unwrap();
    for raw in &b.raws[..old] {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    room.trim_caches();
    let states = (0..old).filter(|i| room.event(EventIdx(*i as u32)).unwrap().is_state()).count();
    let (held, paged, (buckets, _)) = room.id_index_footprint();
    assert_eq!(held + paged, old);
    assert!(paged > 0 && buckets >= 1 && pages.borrow().len_of(Table::IdBuckets) >= buckets);
    // Held: the state events, the last two blocks (not settled), and
    // settled messages until an eighth of those paged gather (or 1,024).
    assert!(held <= states + 512 + 1024.max(paged / 8), "{held} held, {paged} paged, {states} state events");
    let found = |room: &Room, upto: usize| {
        for (i, id) in b.stored.iter().enumerate() {
            assert_eq!(room.lookup(id).unwrap(), (i < upto).then_some(EventIdx(i as u32)), "event {i}");
        }
    };
    found(&room, old);

    // New PDUs: their own IDs pass the filter rarely, their prev events
    // are recent (held): few bucket reads.
    let bucket_reads = |reads: &Rc<RefCell<std::collections::HashMap<Table, usize>>>| {
        reads.borrow().get(&Table::IdBuckets).copied().unwrap_or(0)
    };
    let before = bucket_reads(&reads);
    for raw in &later {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    let read = bucket_reads(&reads) - before;
    assert!(read * 10 <= later.len(), "{read} bucket reads for {} new PDUs", later.len());
    // Sent again, each is a duplicate (found, wherever its entry is).
    for raw in b.raws.iter().step_by(97) {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Duplicate { .. }));
    }
    // A batch rolled back forgets its events, not the paged ones.
    let cp = room.checkpoint();
    assert!(matches!(room.ingest(&extra, Verification::Unsigned), Outcome::Accepted { .. }));
    room.rollback(cp);
    found(&room, n);

    // Read back from an image: found from the rows the image names. Rows
    // that merges replaced stay until the image is committed, then go.
    let (_, _, (buckets, _)) = room.id_index_footprint();
    assert!(pages.borrow().len_of(Table::IdBuckets) > buckets, "rows replaced by merges, kept until an image");
    let log_length = room.take_records().len() as u64;
    room.save_image(log_length).unwrap();
    assert_eq!(pages.borrow().len_of(Table::IdBuckets), buckets, "only the rows the image names");
    let (opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    assert_eq!(opened.id_index_footprint(), room.id_index_footprint());
    found(&opened, n);

    // Every bucket damaged: a settled message's lookup is Corrupt and
    // `/event` a 500; a state event is still found (held).
    let rows = pages.borrow().rows_of(Table::IdBuckets);
    for (key, mut row) in rows {
        row[0] ^= 1;
        pages.borrow_mut().put(Table::IdBuckets, &key, &row).unwrap();
    }
    let (opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    let message = (0..1024usize).find(|i| !opened.event(EventIdx(*i as u32)).unwrap().is_state()).unwrap();
    let state = (1..old).find(|i| opened.state_event(EventIdx(*i as u32)).is_state()).unwrap();
    match opened.lookup(&b.stored[message]) {
        Err(PageError::Corrupt { table: Table::IdBuckets, .. }) => {}
        other => panic!("expected a corrupt bucket, got {other:?}"),
    }
    assert_eq!(opened.lookup(&b.stored[state]).unwrap(), Some(EventIdx(state as u32)));
    let path = format!("/_matrix/federation/v1/event/{}", b.stored[message]);
    let target = Target::parse(&path).unwrap();
    let endpoint = route("GET", &target).unwrap();
    let e = room_query(&opened, &endpoint, &target, None, "a.example", "roomdag.example", 0).unwrap_err();
    assert_eq!((e.status, e.errcode), (500, "M_UNKNOWN"), "{e:?}");
}

/// A room read back from an image written while its full blocks were not
/// all paged yet (a batch that filled several is packed and paged over the
/// next trims; the image writes those as records) answers
/// `/timestamp_to_event` as the room it was written from: each full block
/// read back knows its timeline's timestamps.
#[test]
fn timestamp_to_event_after_an_image_of_blocks_not_yet_paged() {
    use roomdag::queries::{timestamp_to_event, Direction};
    let b = a_long_room(1500);
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(pages.clone()), 4096).unwrap();
    let cp = room.checkpoint();
    for raw in &b.raws {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    room.release(cp);
    let log_length = room.take_records().len() as u64;
    room.save_image(log_length).unwrap();
    let (opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    for i in (0..b.stored.len()).step_by(11) {
        let ts = i128::from(room.event(EventIdx(i as u32)).unwrap().origin_server_ts);
        for t in [ts - 1, ts, ts + 1] {
            for dir in [Direction::Forward, Direction::Backward] {
                let (want, got) =
                    (timestamp_to_event(&room, "a.example", t, dir), timestamp_to_event(&opened, "a.example", t, dir));
                assert_eq!(got.ok(), want.ok(), "event {i}, ts {t}, {dir:?}");
            }
        }
    }
}

/// The states' pools (state chunks' entries, chunk lists) are rows once
/// full and stored: a room of 3,600 state events behind a 4 KiB cache
/// answers `/state_ids` as the room in memory, before and after an image;
/// a rollback reads no row; every row damaged, a state not built is a 500
/// and a PDU whose state before needs one is dropped at the store stage
/// with nothing stored, while a room that kept running takes PDUs after
/// its newest state (built).
#[test]
fn the_states_pools_are_rows_read_back_when_needed() {
    let mut b = Builder::new_v11();
    let mut prev = b.join_rules.clone();
    for round in 0..3 {
        for i in 0..1200 {
            let raw = b.join(&format!("@user{i}:b.example"), &[&prev]);
            prev = b.add_ok(raw);
        }
        let raw = b.creator_state("m.room.topic", "", serde_json::json!({"topic": format!("round {round}")}), &[&prev]);
        prev = b.add_ok(raw);
    }
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let reads: Rc<RefCell<std::collections::HashMap<Table, usize>>> = Rc::default();
    let mut room = Room::new("11").unwrap();
    room.set_pages(Box::new(CountingReads { inner: pages.clone(), reads: reads.clone() }), 4096).unwrap();
    let (last, old) = (b.raws.last().unwrap().clone(), b.raws[..b.raws.len() - 1].to_vec());
    for raw in &old {
        assert!(matches!(room.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
    }
    room.trim_caches();
    let rows = pages.borrow().len_of(Table::StatePools);
    assert!(rows >= 6, "{rows} rows of the states' pools");
    let [removed, added, lists] = room.states().pools_footprint();
    assert!(removed.0 >= 1 && added.0 >= 1 && lists.0 >= 1, "{removed:?} {added:?} {lists:?}");
    let state_ids = |room: &Room, id: &str| {
        let s = roomdag::queries::state_ids(room, "b.example", id).unwrap();
        let mut ids: Vec<String> = s.pdu_ids.iter().map(|e| room.id(*e).unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let same = |room: &Room| {
        for id in b.stored[..old.len()].iter().step_by(53) {
            assert_eq!(state_ids(room, id), state_ids(&b.room, id), "/state_ids at {id}");
        }
    };
    same(&room);
    assert!(reads.borrow().get(&Table::StatePools).copied().unwrap_or(0) > 0, "states built from rows");
    // A host that stores batches (checkpoint, release) gets the rows as
    // each batch is released, never while one is open.
    let batched: Rc<RefCell<MemoryPages>> = Rc::default();
    let mut host = Room::new("11").unwrap();
    host.set_pages(Box::new(batched.clone()), 4096).unwrap();
    for batch in old.chunks(500) {
        let cp = host.checkpoint();
        let rows = batched.borrow().len_of(Table::StatePools);
        for raw in batch {
            assert!(matches!(host.ingest(raw, Verification::Unsigned), Outcome::Accepted { .. }));
        }
        assert_eq!(batched.borrow().len_of(Table::StatePools), rows, "no row while the batch may roll back");
        host.release(cp);
    }
    assert_eq!(batched.borrow().len_of(Table::StatePools), rows, "the same rows, written as batches were released");
    same(&host);

    // A batch rolled back reads no row and forgets its states.
    let cp = room.checkpoint();
    let states = room.states().len();
    assert!(matches!(room.ingest(&last, Verification::Unsigned), Outcome::Accepted { .. }));
    let before = reads.borrow().get(&Table::StatePools).copied();
    room.rollback(cp);
    assert_eq!(reads.borrow().get(&Table::StatePools).copied(), before, "a rollback reads no row");
    assert_eq!(room.states().len(), states);

    // An image names the rows: read back, the same answers.
    let log_length = room.take_records().len() as u64;
    room.save_image(log_length).unwrap();
    let (opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    same(&opened);

    // Every row damaged: an old state is a 500, a PDU after an old event
    // is dropped at the store stage with nothing stored, a PDU after the
    // newest event is taken.
    let rows = pages.borrow().rows_of(Table::StatePools);
    for (key, mut row) in rows {
        row[0] ^= 1;
        pages.borrow_mut().put(Table::StatePools, &key, &row).unwrap();
    }
    let (mut opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    let old_id = &b.stored[700].clone();
    match roomdag::queries::state_ids(&opened, "b.example", old_id) {
        Err(e) => assert!(e.to_string().contains("state_pools"), "{e}"),
        Ok(s) => panic!("expected a damaged row, got {} IDs", s.pdu_ids.len()),
    }
    let path = format!("/_matrix/federation/v1/state_ids/{}?event_id={old_id}", b.room_id);
    let target = Target::parse(&path).unwrap();
    let endpoint = route("GET", &target).unwrap();
    let e = room_query(&opened, &endpoint, &target, None, "b.example", "roomdag.example", 0).unwrap_err();
    assert_eq!((e.status, e.errcode), (500, "M_UNKNOWN"), "{e:?}");
    let events = opened.events().len();
    let branch = b.join("@late:b.example", &[old_id]);
    match opened.ingest(&branch, Verification::Unsigned) {
        Outcome::Dropped { stage: DropStage::Store, .. } => {}
        other => panic!("expected a drop at the store stage, got {other:?}"),
    }
    assert_eq!(opened.events().len(), events, "nothing stored");
    // The room that kept running holds its newest states built.
    let o = room.ingest(&last, Verification::Unsigned);
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
}

/// Rows of IDs, blocks, ID buckets and the states' pools that the room does not name
/// (a room rebuilt from its log numbers its events otherwise; a write that
/// failed halfway) are deleted once an image naming the room's rows is
/// committed; the named ones stay, and the room read back answers as
/// before. A store that cannot list its keys keeps them.
#[test]
fn rows_no_room_names_are_deleted_once_its_image_is_committed() {
    let b = a_long_room(3000);
    let (mut room, pages) = paged_copy(&b, 4096);
    let tables = [Table::Ids, Table::Blocks, Table::IdBuckets, Table::StatePools];
    let counts = |pages: &Rc<RefCell<MemoryPages>>| tables.map(|t| pages.borrow().len_of(t));
    let mut named = counts(&pages);
    // (The ID index's rows a merge replaced stay until an image too.)
    let (_, _, (buckets, _)) = room.id_index_footprint();
    named[2] = buckets;
    assert!(named[0] >= 10 && named[1] >= 10 && named[2] >= 1, "{named:?}");
    for t in tables {
        for k in 0..3 {
            pages.borrow_mut().put(t, &format!("{:032x}", k + 1), b"left over").unwrap();
        }
    }
    let pdus = pages.borrow().len_of(Table::Pdu);
    let log_length = room.take_records().len() as u64;
    room.save_image(log_length).unwrap();
    assert_eq!(counts(&pages), named, "only the rows the room names");
    assert_eq!(pages.borrow().len_of(Table::Pdu), pdus, "no other table's row");
    let (opened, _) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    for (i, id) in b.stored.iter().enumerate().step_by(37) {
        assert_eq!(opened.lookup(id).unwrap(), Some(EventIdx(i as u32)));
        assert_eq!(opened.id(EventIdx(i as u32)).unwrap(), id.as_str());
    }

    /// A store that cannot list its keys.
    struct Unlisted(Rc<RefCell<MemoryPages>>);
    impl PageStore for Unlisted {
        fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
            self.0.get(table, key)
        }
        fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
            self.0.put(table, key, value)
        }
        fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
            self.0.delete(table, key)
        }
    }
    let (mut room, _) = Room::open_image(Box::new(Unlisted(pages.clone())), 4096).unwrap().expect("an image");
    pages.borrow_mut().put(Table::Ids, &format!("{:032x}", 9), b"left over").unwrap();
    room.save_image(log_length).unwrap();
    assert_eq!(pages.borrow().len_of(Table::Ids), named[0] + 1, "kept: the store cannot list its keys");
}
