//! One comparable view of a room (tests/image.rs, tests/partial.rs), and
//! the image round trip both run.

use std::cell::RefCell;
use std::rc::Rc;

use roomdag::conformance;
use roomdag::fixture::Query;
use roomdag::pages::{MemoryPages, RestoreRows};
use roomdag::placement::{restore_into, LogRecord};
use roomdag::{EventIdx, Room};

/// Everything the conformance contract scores, and the engine's own view
/// of each event, as one comparable value.
pub fn view(room: &mut Room, queries: &[Query]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..room.events().len() {
        let idx = EventIdx(i as u32);
        let e = room.event(idx).unwrap();
        let state = |id| {
            let mut v: Vec<_> =
                room.state(id).unwrap().iter().map(|(k, e)| (room.key_name(k), room.id(e).unwrap())).collect();
            v.sort();
            format!("{v:?}")
        };
        out.push(format!(
            "{} {:?} outlier={} soft={} redacted={} before={} after={} node={:?} prev={:?} auth={:?} rejection={:?} facts={:?} resolved={:?}",
            room.id(idx).unwrap(),
            e.status,
            e.outlier,
            e.soft_failed,
            e.redacted_on_receipt,
            state(e.state_before),
            state(e.state_after),
            e.auth_node().is_some(),
            room.prev_events(idx).unwrap(),
            room.auth_events(idx).unwrap(),
            room.rejection(idx),
            e.facts,
            room.resolution_for(room.prev_events(idx).unwrap()).unwrap(),
        ));
    }
    let mut fwd: Vec<_> = room.forward_extremities().map(|e| room.id(e).unwrap().to_owned()).collect();
    fwd.sort();
    out.push(format!("forward {fwd:?}"));
    let current = room.current_state().unwrap();
    let mut cur: Vec<_> =
        room.state(current).unwrap().iter().map(|(k, e)| (room.key_name(k), room.id(e).unwrap())).collect();
    cur.sort();
    out.push(format!("current {cur:?}"));
    for q in queries {
        out.push(conformance::answer(room, q).to_string());
    }
    out
}

/// A paged room restored from `log`, written as an image and read back,
/// is the same room (every event, state, query, and the partial-DAG
/// bookkeeping the view shows: pending, outliers, soft failures).
#[allow(dead_code)]
pub fn image_round_trip(what: &str, version: &str, log: Vec<LogRecord>, queries: &[Query]) {
    let pages: Rc<RefCell<MemoryPages>> = Rc::default();
    let mut room = Room::new(version).unwrap();
    room.set_pages(Box::new(pages.clone()), 4096).unwrap();
    let n = log.len() as u64;
    let mut room = restore_into(room, log, RestoreRows::Write).unwrap();
    room.save_image(n).unwrap();
    let (mut opened, info) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
    assert_eq!(info.log_length, n, "{what}");
    let (a, b) = (view(&mut room, queries), view(&mut opened, queries));
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{what}: read back from its image");
    }
    let listed = |r: &Room| {
        let mut v: Vec<String> = r.pending().map(|e| r.id(e).unwrap().to_owned()).collect();
        v.extend(r.backward_extremities().unwrap().into_iter().map(|(id, depth)| format!("backward {id} {depth}")));
        v.sort();
        v
    };
    assert_eq!(listed(&room), listed(&opened), "{what}: pending events and backward extremities");
    // The timeline's least depth, kept as events are stored, is the least
    // depth of the events not stored as outliers, and read back.
    let walked = room.events().iter().map(Result::unwrap).filter(|e| !e.outlier).map(|e| e.depth).min().unwrap_or(0);
    assert_eq!((room.min_depth(), opened.min_depth()), (walked, walked), "{what}: min_depth");
}
