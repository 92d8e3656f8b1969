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
    inner: MemoryPages,
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
        Flaky { inner: MemoryPages::new(), fail_next_put: fail_next_put.clone(), fail_gets: Rc::new(Cell::new(false)) };
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
            assert!(room.lookup(&b.stored[i]).is_none(), "event {i}: not indexed");
        }
        let o = room.ingest(raw, Verification::Unsigned);
        assert!(matches!(o, Outcome::Accepted { .. }), "event {i}: {o:?}");
    }
    // The same room as one that never paged.
    assert_eq!(room.events().len(), b.room.events().len());
    let (mine, theirs) = (room.current_state(), b.room.current_state());
    assert_eq!(room.state_digest(mine), b.room.state_digest(theirs));
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
    let store =
        Flaky { inner: MemoryPages::new(), fail_next_put: Rc::new(Cell::new(false)), fail_gets: fail_gets.clone() };
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
