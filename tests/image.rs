//! Room images (`roomdag::image`, issue 13): a room written into its page
//! store and read back, then given the rest of its log, is the room that
//! received every event live: every fixture, cut at a third, two thirds and
//! the end, compared event by event, state by state and query by query.
//! A corrupt or missing image is a typed error, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

#[path = "support/room_view.rs"]
mod room_view;
#[path = "support/shared.rs"]
mod shared;

use room_view::view;
use roomdag::fixture;
use roomdag::image::{self, ImageError};
use roomdag::pages::{MemoryPages, PageStore, RestoreRows, Table};
use roomdag::placement::{LogRecord, Restoring};
use roomdag::{Room, Verification};

type Shared = Rc<RefCell<MemoryPages>>;

/// Every fixture room with queries: (name, room, queries).
fn fixtures() -> Vec<(String, std::path::PathBuf, std::path::PathBuf)> {
    shared::fixture_rooms().into_iter().map(|(name, room, queries, _)| (name, room, queries)).collect()
}

/// Every PDU of a fixture, and its pinned keys' header.
fn pdus_of(path: &std::path::Path) -> (String, roomdag::signing::PinnedKeys, Vec<String>) {
    let mut version = None;
    let mut keys = None;
    let mut pdus = Vec::new();
    fixture::stream_room(fixture::open(path).unwrap(), |header, _, ev| {
        version.get_or_insert_with(|| header.room_version.clone().unwrap());
        if keys.is_none() {
            keys = Some(header.pinned_keys()?);
        }
        pdus.push(ev.pdu.get().to_owned());
        Ok(())
    })
    .unwrap();
    (version.unwrap(), keys.unwrap(), pdus)
}

fn paged_room(version: &str, pages: &Shared) -> Room {
    let mut r = Room::new(version).unwrap();
    r.set_pages(Box::new(pages.clone()), 4096).unwrap();
    r
}

#[test]
fn every_fixture_read_back_from_an_image_is_the_room_received_live() {
    for (name, path, queries) in fixtures() {
        let queries = fixture::read_queries(fixture::open(&queries).unwrap()).unwrap().queries;
        let (version, keys, pdus) = pdus_of(&path);
        let n = pdus.len();
        for cut in [n / 3, 2 * n / 3, n] {
            let pages: Shared = Rc::default();
            let mut live = paged_room(&version, &pages);
            for p in &pdus[..cut] {
                live.ingest(p, Verification::Keys(&keys));
            }
            let log_length = live.take_records().len() as u64;
            let info = live.save_image(log_length).unwrap();
            assert_eq!((info.events, info.log_length), (live.events().len() as u64, log_length), "{name}");
            let writes = pages.borrow().writes;
            let (opened, read) = Room::open_image(Box::new(pages.clone()), 4096).unwrap().expect("an image");
            assert_eq!(read, info, "{name}");
            assert_eq!(pages.borrow().writes, writes, "{name}: reading an image writes nothing");
            for p in &pdus[cut..] {
                live.ingest(p, Verification::Keys(&keys));
            }
            let tail: Vec<LogRecord> = live.take_records().into_iter().map(LogRecord::Event).collect();
            let mut restoring = Restoring::resume(opened, RestoreRows::Trust);
            restoring.replay(tail).unwrap();
            let mut again = restoring.finish();
            assert_eq!(again.events().len(), live.events().len(), "{name} cut at {cut}");
            let (a, b) = (view(&mut live, &queries), view(&mut again, &queries));
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{name}: cut at {cut} of {n}");
            }
            assert_eq!(a.len(), b.len());
            // The reopened room goes on taking events and writing records.
            assert!(again.take_records().is_empty());
        }
        eprintln!("{name}: {n} events, read back from images at 1/3, 2/3 and the end");
    }
}

/// One fixture room, paged, with an image saved at its end.
fn room_with_image() -> (Shared, Room, image::ImageInfo) {
    let (_, path, _) = fixtures().into_iter().find(|(n, ..)| n.starts_with("v11")).expect("a v11 fixture");
    let (version, keys, pdus) = pdus_of(&path);
    let pages: Shared = Rc::default();
    let mut room = paged_room(&version, &pages);
    for p in &pdus {
        room.ingest(p, Verification::Keys(&keys));
    }
    let n = room.take_records().len() as u64;
    let info = room.save_image(n).unwrap();
    (pages, room, info)
}

fn image_rows(pages: &Shared) -> Vec<String> {
    let mut keys = Vec::new();
    let mut k = 0;
    let info = image::info(&*pages.borrow()).unwrap().unwrap();
    while k < info.parts {
        keys.push(format!("{}/{k:06}", info.generation));
        k += 1;
    }
    keys
}

#[test]
fn a_new_image_replaces_the_previous_one_and_leaves_no_parts_behind() {
    let (pages, mut room, first) = room_with_image();
    let rows_before = pages.borrow().len();
    let second = room.save_image(first.log_length).unwrap();
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(pages.borrow().len(), rows_before, "the old generation's parts are deleted");
    for key in image_rows(&pages) {
        assert!(key.starts_with(&format!("{}/", second.generation)));
        assert!(pages.borrow().get(Table::Image, &key).unwrap().is_some());
    }
}

#[test]
fn a_room_without_pages_or_in_a_batch_writes_no_image() {
    let mut plain = Room::new("11").unwrap();
    assert_eq!(plain.save_image(0), Err(ImageError::NotPaged));
    let (pages, mut room, _) = room_with_image();
    let rows = pages.borrow().len();
    let cp = room.checkpoint();
    assert_eq!(room.save_image(0), Err(ImageError::BatchOpen));
    room.release(cp);
    assert_eq!(pages.borrow().len(), rows);
    assert!(Room::open_image(Box::new(Shared::default()), 4096).unwrap().is_none(), "no image: None");
}

#[test]
fn a_corrupt_or_truncated_image_is_a_typed_error_never_a_panic() {
    let (pages, _room, info) = room_with_image();
    let keys = image_rows(&pages);
    let original: Vec<Vec<u8>> = keys.iter().map(|k| pages.borrow().get(Table::Image, k).unwrap().unwrap()).collect();
    let restore = |pages: &Shared| {
        for (k, v) in keys.iter().zip(&original) {
            pages.borrow_mut().put(Table::Image, k, v).unwrap();
        }
    };
    // Flip bytes all over the image (a deterministic spread of positions):
    // each read either fails with a typed error or, where the byte was a
    // value rather than structure, gives a room; it never panics.
    let total: usize = original.iter().map(Vec::len).sum();
    let mut errors = 0;
    for step in 0..400usize {
        let pos = (step * 7919 + step * step * 104_729) % total;
        let (mut part, mut at) = (0, pos);
        while at >= original[part].len() {
            at -= original[part].len();
            part += 1;
        }
        let mut bytes = original[part].clone();
        bytes[at] ^= 0x5a;
        pages.borrow_mut().put(Table::Image, &keys[part], &bytes).unwrap();
        // A room that opens builds its states when asked: every one is
        // built and read too (a corrupt chunk may give a wrong state, never
        // a panic).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Room::open_image(Box::new(pages.clone()), 4096).map(|opened| {
                opened.map(|(room, _)| {
                    let entries: usize = (0..room.states().len() as u32)
                        .map(|i| room.state(roomdag::state_set::StateSetId(i)).map_or(0, |m| m.iter().count()))
                        .sum();
                    (entries, room.current_state_map().map_or(0, |m| m.len()))
                })
            })
        }));
        match r {
            Ok(Err(ImageError::Corrupt(_))) => errors += 1,
            Ok(Ok(Some(_))) => {}
            Ok(other) => panic!("byte {pos}: {other:?}"),
            Err(_) => panic!("byte {pos}: reading a corrupt image panicked"),
        }
        restore(&pages);
    }
    assert!(errors > 100, "most flipped bytes are caught ({errors} of 400)");
    // Cut short, a part missing, a meta of another format.
    let last = keys.last().unwrap();
    let short = &original.last().unwrap()[..original.last().unwrap().len() / 2];
    pages.borrow_mut().put(Table::Image, last, short).unwrap();
    assert!(matches!(Room::open_image(Box::new(pages.clone()), 4096), Err(ImageError::Corrupt(_))));
    pages.borrow_mut().delete(Table::Image, last).unwrap();
    assert!(matches!(Room::open_image(Box::new(pages.clone()), 4096), Err(ImageError::Store(_))));
    restore(&pages);
    let meta = serde_json::to_vec(&image::ImageInfo { format: 99, ..info.clone() }).unwrap();
    pages.borrow_mut().put(Table::Image, "meta", &meta).unwrap();
    assert_eq!(Room::open_image(Box::new(pages.clone()), 4096).err(), Some(ImageError::Format(99)));
    pages.borrow_mut().put(Table::Image, "meta", b"{not json").unwrap();
    assert!(matches!(Room::open_image(Box::new(pages.clone()), 4096), Err(ImageError::Corrupt(_))));
    let meta = serde_json::to_vec(&image::ImageInfo { bytes: info.bytes + 1, ..info }).unwrap();
    pages.borrow_mut().put(Table::Image, "meta", &meta).unwrap();
    assert!(matches!(Room::open_image(Box::new(pages.clone()), 4096), Err(ImageError::Corrupt(_))));
}
