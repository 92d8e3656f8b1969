//! `cargo bench --bench hq -- [--events N] [--members M] [--servers S] [--version V] [--seed X] [--replay] [--image]`:
//! a simulated Matrix HQ (issue 13), generated deterministically and ingested
//! without signatures ([`Verification::Unsigned`]).
//!
//! Defaults: 1,000,000 events, 100,000 members, 1,000 servers, room v11.
//! Under `cargo test --all-targets` (no `--bench` flag) it runs a tiny room
//! (2,000 events, 500 members) as a check that the generator and the engine
//! still agree, and that its room image reads back.
//!
//! `--replay` also times reopening the room from its records; `--image`
//! keeps the PDUs in a (memory) page store and times writing the room's
//! image and reading it back, then the first `/state_ids` (a Worker's cold
//! start).
//!
//! The room: create, the creator's join, power levels (a moderator at 50),
//! public join rules, shared history visibility, name and topic; then the
//! members join from `--servers` servers (a third of them on the first, the
//! rest skewed towards low-numbered servers), some leave and some of those
//! rejoin, the moderator kicks and bans a few, the topic and the power
//! levels change now and then, and messages fill the rest. The DAG is
//! linear except for occasional forks of 2–3 branches (messages and new
//! joins) that a message merges. A few non-moderators try to change the
//! topic: those are the only events the auth rules should reject. Every PDU
//! has its correct `auth_events`, `depth`, content hash and reference-hash
//! event ID (the crate's own functions), and a placeholder signature block
//! of a real one's size (never verified) so byte counts match signed PDUs.
//!
//! Prints Markdown tables: the room, ingest time (total and per tenth of the
//! room), memory, storage size, the first `/state_ids` answer and per-query
//! latencies. With `--image`, memory is also counted as a room object's
//! heap without its page store's rows (in a Worker those are SQLite rows,
//! outside the object's 128 MB; a global allocator here tags each block by
//! owner): at its peak during ingest, over the queries (the caches trimmed
//! after each, as a room object does) and over a cold start.

use std::time::{Duration, Instant};

use roomdag::event::Membership;
use roomdag::ids::EventIdx;
use roomdag::placement::{restore, LogRecord};
use roomdag::redaction::redact;
use roomdag::signing::{content_hash, encode_base64, event_id_for_reference_hash, redacted_signing_bytes};
use roomdag::{queries, Outcome, Room, RoomVersionRules, Verification};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- heap accounting

/// The process's heap, counted by owner: a room object in a Worker keeps its
/// page store's rows in the Durable Object's SQLite, outside its 128 MB, so
/// the rows a [`CountedPages`] store holds are counted apart from the rest.
/// Each block carries its owner in a header, so a row freed anywhere leaves
/// the right count; the peak of what is not the store's is kept.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static IN_STORE: Cell<bool> = const { Cell::new(false) };
    }
    // One thread allocates in this bench: plain statics behind relaxed
    // atomics cost next to nothing.
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static STORE: AtomicUsize = AtomicUsize::new(0);
    static PEAK_OTHER: AtomicUsize = AtomicUsize::new(0);

    fn header(layout: Layout) -> usize {
        layout.align().max(16)
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let h = header(layout);
            let Ok(full) = Layout::from_size_align(layout.size() + h, layout.align().max(16)) else {
                return std::ptr::null_mut();
            };
            let base = System.alloc(full);
            if base.is_null() {
                return base;
            }
            let store = IN_STORE.try_with(Cell::get).unwrap_or(false);
            base.cast::<usize>().write(store as usize);
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            let in_store =
                if store { STORE.fetch_add(layout.size(), Relaxed) + layout.size() } else { STORE.load(Relaxed) };
            PEAK_OTHER.fetch_max(live - in_store, Relaxed);
            base.add(h)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let h = header(layout);
            let base = ptr.sub(h);
            if base.cast::<usize>().read() == 1 {
                STORE.fetch_sub(layout.size(), Relaxed);
            }
            LIVE.fetch_sub(layout.size(), Relaxed);
            System.dealloc(base, Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(16)));
        }
    }

    /// Runs `f` with its allocations counted as the page store's.
    pub fn in_store<T>(f: impl FnOnce() -> T) -> T {
        IN_STORE.with(|c| c.set(true));
        let out = f();
        IN_STORE.with(|c| c.set(false));
        out
    }

    /// Bytes live now: (everything, the page store's rows).
    pub fn live() -> (usize, usize) {
        (LIVE.load(Relaxed), STORE.load(Relaxed))
    }

    /// The highest the heap has been without the page store's rows.
    pub fn peak_without_store() -> usize {
        PEAK_OTHER.load(Relaxed)
    }

    /// Takes `peak` as the peak if it is higher.
    pub fn raise_peak(peak: usize) {
        PEAK_OTHER.fetch_max(peak, Relaxed);
    }

    /// Starts a new peak from what is live now.
    pub fn reset_peak() {
        PEAK_OTHER.store(LIVE.load(Relaxed) - STORE.load(Relaxed), Relaxed);
    }
}

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// A memory page store whose rows count as the store's, not the room
/// object's (in a Worker they are SQLite rows, outside the object's memory).
struct CountedPages(roomdag::pages::MemoryPages);

/// Rows and bytes each table of the page store holds, and bytes written to
/// it in all (a row of the ID index's buckets is written again and again as
/// the index grows; SQLite keeps the rows no image names any more).
#[derive(Clone, Copy, Default)]
struct TableSize {
    rows: usize,
    bytes: usize,
    written: usize,
}

thread_local! {
    static TABLES: std::cell::RefCell<std::collections::BTreeMap<&'static str, TableSize>> = Default::default();
}

fn table_sizes() -> Vec<(&'static str, TableSize)> {
    TABLES.with(|t| t.borrow().iter().map(|(k, v)| (*k, *v)).collect())
}

impl CountedPages {
    /// The bytes of row `key` of `table`, if there is one.
    fn row_len(&self, table: roomdag::pages::Table, key: &str) -> Option<usize> {
        roomdag::pages::PageStore::get(&self.0, table, key).ok().flatten().map(|v| v.len())
    }
}

impl roomdag::pages::PageStore for CountedPages {
    fn get(&self, table: roomdag::pages::Table, key: &str) -> Result<Option<Vec<u8>>, roomdag::pages::PageError> {
        // What a read returns is the engine's (a copy, as from SQLite).
        self.0.get(table, key)
    }

    fn put(&mut self, table: roomdag::pages::Table, key: &str, value: &[u8]) -> Result<(), roomdag::pages::PageError> {
        heap::in_store(|| {
            // A PDU's row is new (an event is stored once): not looked up,
            // which would cost ingest a read of the store a PDU.
            let old = if table == roomdag::pages::Table::Pdu { None } else { self.row_len(table, key) };
            TABLES.with(|t| {
                let mut t = t.borrow_mut();
                let size = t.entry(table.name()).or_default();
                size.rows += usize::from(old.is_none());
                size.bytes = size.bytes + value.len() - old.unwrap_or(0);
                size.written += value.len();
            });
            self.0.put(table, key, value)
        })
    }

    fn delete(&mut self, table: roomdag::pages::Table, key: &str) -> Result<(), roomdag::pages::PageError> {
        heap::in_store(|| {
            if let Some(old) = self.row_len(table, key) {
                TABLES.with(|t| {
                    let mut t = t.borrow_mut();
                    let size = t.entry(table.name()).or_default();
                    size.rows -= 1;
                    size.bytes -= old;
                });
            }
            self.0.delete(table, key)
        })
    }
}

// ---------------------------------------------------------------- arguments

struct Args {
    events: usize,
    members: usize,
    servers: usize,
    version: String,
    seed: u64,
    /// Keep the records and time reopening the room from them.
    replay: bool,
    /// Page the PDUs and time writing the room's image and reading it back.
    image: bool,
    test_mode: bool,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not.
    let test_mode = !argv.iter().any(|a| a == "--bench");
    let mut a = Args {
        events: if test_mode { 2_000 } else { 1_000_000 },
        members: if test_mode { 500 } else { 100_000 },
        servers: if test_mode { 50 } else { 1_000 },
        version: "11".into(),
        seed: 13,
        replay: false,
        image: test_mode,
        test_mode,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag.as_str(), None),
        };
        let mut value = |what: &str| -> String {
            inline.clone().or_else(|| it.next().cloned()).unwrap_or_else(|| panic!("{what} needs a value"))
        };
        let number =
            |s: String| -> usize { s.replace(['_', ','], "").parse().unwrap_or_else(|_| panic!("not a number: {s}")) };
        match name {
            "--events" => a.events = number(value(name)),
            "--members" => a.members = number(value(name)),
            "--servers" => a.servers = number(value(name)),
            "--version" => a.version = value(name),
            "--seed" => a.seed = number(value(name)) as u64,
            "--replay" => a.replay = true,
            "--image" => a.image = true,
            "--bench" => {}
            other => eprintln!("hq: ignoring argument {other:?}"),
        }
    }
    assert!(a.members >= 3, "--members must be at least 3");
    assert!(a.servers >= 1, "--servers must be at least 1");
    a
}

// ---------------------------------------------------------------- PRNG

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

// ---------------------------------------------------------------- generator

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    FirstJoin,
    Leave,
    Rejoin,
    Kick,
    Ban,
    Topic,
    PowerLevels,
    BadTopic,
}

const KINDS: [Kind; 8] =
    [Kind::FirstJoin, Kind::Leave, Kind::Rejoin, Kind::Kick, Kind::Ban, Kind::Topic, Kind::PowerLevels, Kind::BadTopic];

/// A set of user numbers with O(1) insert, remove and random pick.
#[derive(Default)]
struct UserSet {
    list: Vec<u32>,
    pos: Vec<u32>,
}

impl UserSet {
    fn with_users(n: usize) -> Self {
        Self { list: Vec::new(), pos: vec![u32::MAX; n] }
    }
    fn insert(&mut self, u: u32) {
        if self.pos[u as usize] == u32::MAX {
            self.pos[u as usize] = self.list.len() as u32;
            self.list.push(u);
        }
    }
    fn remove(&mut self, u: u32) {
        let p = std::mem::replace(&mut self.pos[u as usize], u32::MAX);
        if p != u32::MAX {
            self.list.swap_remove(p as usize);
            if let Some(&moved) = self.list.get(p as usize) {
                self.pos[moved as usize] = p;
            }
        }
    }
    fn len(&self) -> usize {
        self.list.len()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum M {
    Never,
    Join,
    Leave,
    Ban,
}

const CREATOR: u32 = 0;
const MODERATOR: u32 = 1;
const WORDS: [&str; 24] = [
    "matrix",
    "federation",
    "room",
    "state",
    "server",
    "synapse",
    "client",
    "element",
    "bridge",
    "encryption",
    "key",
    "sync",
    "event",
    "join",
    "the",
    "a",
    "is",
    "to",
    "and",
    "of",
    "works",
    "why",
    "thanks",
    "hello",
];

/// What ingest measured.
#[derive(Default)]
struct Stats {
    accepted: usize,
    rejected_expected: usize,
    rejected_unexpected: usize,
    dropped: usize,
    other: usize,
    problems: Vec<String>,
    ingest: Duration,
    slices: Vec<Duration>,
    slice_len: usize,
    raw_bytes: u64,
    records: usize,
    store_bytes: u64,
    /// The records, when kept for `--replay`.
    kept: Vec<LogRecord>,
    keep: bool,
    /// Per kind: planned actions done.
    done: [usize; KINDS.len()],
    messages: usize,
    forks: usize,
}

struct Hq {
    rules: &'static RoomVersionRules,
    rng: Rng,
    room_id: String,
    create: String,
    power_levels: String,
    join_rules: String,
    pl_content: Value,
    /// Per user: home server number, membership, membership event ID.
    server_of: Vec<u32>,
    membership: Vec<M>,
    member_event: Vec<Option<Box<str>>>,
    next_new_user: u32,
    joined: UserSet,
    left: UserSet,
    ts: i64,
    /// The single forward extremity between forks: (ID, depth).
    tip: (String, i64),
    room: Room,
    stats: Stats,
}

impl Hq {
    fn new(args: &Args) -> Self {
        let rules = RoomVersionRules::supported(&args.version).expect("a hosted room version");
        let mut rng = Rng(args.seed);
        let n = args.members;
        // A third of the members on the first server (the way matrix.org
        // hosts many), the rest skewed towards low-numbered servers.
        let server_of = (0..n)
            .map(|u| {
                if u < 2 || args.servers == 1 || rng.chance(0.33) {
                    0
                } else {
                    1 + ((args.servers - 1) as f64 * rng.unit().powi(2)) as u32
                }
            })
            .collect();
        let mut room = Room::new(rules.id).expect("a hosted room version");
        room.set_keep_records(true);
        if args.image {
            // The PDUs in a page store (memory here), as a room object keeps them.
            room.set_pages(Box::new(CountedPages(roomdag::pages::MemoryPages::new())), 8 << 20).expect("an empty room");
        }
        Self {
            rules,
            rng,
            room_id: "!hq:s0.example".into(),
            create: String::new(),
            power_levels: String::new(),
            join_rules: String::new(),
            pl_content: Value::Null,
            server_of,
            membership: vec![M::Never; n],
            member_event: vec![None; n],
            next_new_user: 2,
            joined: UserSet::with_users(n),
            left: UserSet::with_users(n),
            ts: 1_600_000_000_000,
            tip: (String::new(), 0),
            room,
            stats: Stats { slice_len: (args.events / 10).max(1), keep: args.replay, ..Stats::default() },
        }
    }

    fn user(&self, u: u32) -> String {
        format!("@user{u}:s{}.example", self.server_of[u as usize])
    }

    fn member_of(&self, u: u32) -> Option<&str> {
        self.member_event[u as usize].as_deref()
    }

    /// Builds a PDU on `prev`, ingests it and returns its ID and depth.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev: &[(String, i64)],
        auth: &[&str],
        expect_accept: bool,
    ) -> (String, i64) {
        let rules = self.rules;
        self.ts += 1 + self.rng.below(60_000) as i64;
        let depth = prev.iter().map(|p| p.1).max().unwrap_or(0) + 1;
        let is_create = ty == "m.room.create";
        let mut m = Map::new();
        let auth: Vec<&str> =
            auth.iter().copied().filter(|a| !(rules.room_ids_as_hashes && *a == self.create.as_str())).collect();
        m.insert("auth_events".into(), json!(auth));
        m.insert("content".into(), content);
        m.insert("depth".into(), json!(depth));
        m.insert("origin_server_ts".into(), json!(self.ts));
        m.insert("prev_events".into(), json!(prev.iter().map(|p| p.0.as_str()).collect::<Vec<_>>()));
        if !(rules.room_ids_as_hashes && is_create) {
            m.insert("room_id".into(), json!(self.room_id));
        }
        m.insert("sender".into(), json!(sender));
        if let Some(k) = state_key {
            m.insert("state_key".into(), json!(k));
        }
        m.insert("type".into(), json!(ty));
        m.insert("hashes".into(), json!({ "sha256": encode_base64(&content_hash(&m)) }));
        let id = event_id_for_reference_hash(&redacted_signing_bytes(&redact(&m, rules)), rules);
        // A placeholder of a real signature's size (never verified).
        let h = Sha256::digest(id.as_bytes());
        let sig = encode_base64(&[h.as_slice(), h.as_slice()].concat());
        let server = sender.split_once(':').map_or("", |(_, s)| s).to_owned();
        m.insert("signatures".into(), json!({ server: { "ed25519:a_hqbench": sig } }));
        let raw = serde_json::to_string(&m).expect("serialises");
        self.ingest(&raw, &id, expect_accept);
        if is_create && rules.room_ids_as_hashes {
            self.room_id = format!("!{}", &id[1..]);
        }
        (id, depth)
    }

    fn ingest(&mut self, raw: &str, id: &str, expect_accept: bool) {
        let s = &mut self.stats;
        let n = s.accepted + s.rejected_expected + s.rejected_unexpected + s.dropped + s.other;
        let t = Instant::now();
        let outcome = self.room.ingest(raw, Verification::Unsigned);
        let records = self.room.take_records();
        let dt = t.elapsed();
        s.ingest += dt;
        let slice = n / s.slice_len;
        if s.slices.len() <= slice {
            s.slices.resize(slice + 1, Duration::ZERO);
        }
        s.slices[slice] += dt;
        s.raw_bytes += raw.len() as u64;
        for r in &records {
            let status =
                r.status.map_or(
                    "deferred",
                    |st| if st == roomdag::EventStatus::Accepted { "accepted" } else { "rejected" },
                );
            let kind = match r.kind {
                roomdag::placement::RecordKind::Timeline => "timeline",
                roomdag::placement::RecordKind::Outlier => "outlier",
            };
            s.store_bytes += do_record_bytes(s.records, r.event_id(), status, r.raw(), kind);
            s.records += 1;
        }
        if s.keep {
            s.kept.extend(records.into_iter().map(LogRecord::Event));
        }
        let ok_id = outcome.event_id().map(|e| e.as_str()) == Some(id);
        match (&outcome, expect_accept) {
            (Outcome::Accepted { redacted_on_receipt: false, .. }, true) if ok_id => s.accepted += 1,
            (Outcome::Rejected { .. }, false) if ok_id => s.rejected_expected += 1,
            (Outcome::Rejected { reason, .. }, true) => {
                s.rejected_unexpected += 1;
                if s.problems.len() < 10 {
                    s.problems.push(format!("rejected {id}: {reason}"));
                }
            }
            (Outcome::Dropped { reason, stage, .. }, _) => {
                s.dropped += 1;
                if s.problems.len() < 10 {
                    s.problems.push(format!("dropped {id} at {stage:?}: {reason}"));
                }
            }
            (o, _) => {
                s.other += 1;
                if s.problems.len() < 10 {
                    s.problems.push(format!("{id} (expected accept: {expect_accept}): {o:?}"));
                }
            }
        }
    }

    fn generated(&self) -> usize {
        let s = &self.stats;
        s.accepted + s.rejected_expected + s.rejected_unexpected + s.dropped + s.other
    }

    fn message_content(&mut self) -> Value {
        let words = 3 + (self.rng.unit().powi(2) * 60.0) as usize;
        let body: Vec<&str> = (0..words).map(|_| WORDS[self.rng.below(WORDS.len())]).collect();
        let body = body.join(" ");
        if self.rng.chance(0.2) {
            json!({"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                   "formatted_body": format!("<p>{body}</p>")})
        } else {
            json!({"msgtype": if self.rng.chance(0.05) { "m.notice" } else { "m.text" }, "body": body})
        }
    }

    /// A joined user, skewed towards a few very active ones.
    fn pick_sender(&mut self) -> u32 {
        let n = self.joined.len();
        self.joined.list[((n as f64 * self.rng.unit().powi(3)) as usize).min(n - 1)]
    }

    /// A joined user who is neither the creator nor the moderator.
    fn pick_ordinary(&mut self) -> Option<u32> {
        for _ in 0..16 {
            let u = self.joined.list[self.rng.below(self.joined.len())];
            if u != CREATOR && u != MODERATOR {
                return Some(u);
            }
        }
        None
    }

    fn message(&mut self, sender: u32, prev: &[(String, i64)]) -> (String, i64) {
        let content = self.message_content();
        let member = self.member_of(sender).expect("a joined sender").to_owned();
        let (create, pl) = (self.create.clone(), self.power_levels.clone());
        let s = self.user(sender);
        self.stats.messages += 1;
        self.add("m.room.message", None, &s, content, prev, &[&create, &pl, &member], true)
    }

    /// A membership event of `target`, sent by `sender`.
    fn membership_event(&mut self, sender: u32, target: u32, content: Value, prev: &[(String, i64)]) -> (String, i64) {
        let joining = content["membership"] == "join";
        let mut auth = vec![self.create.clone(), self.power_levels.clone()];
        if let Some(m) = self.member_of(sender) {
            auth.push(m.to_owned());
        }
        if sender != target {
            auth.push(self.member_of(target).expect("a target with a membership").to_owned());
        }
        if joining {
            auth.push(self.join_rules.clone());
        }
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let (s, t) = (self.user(sender), self.user(target));
        let (id, depth) = self.add("m.room.member", Some(&t), &s, content.clone(), prev, &auth, true);
        self.member_event[target as usize] = Some(id.clone().into_boxed_str());
        self.membership[target as usize] = match content["membership"].as_str() {
            Some("join") => M::Join,
            Some("ban") => M::Ban,
            _ => M::Leave,
        };
        (id, depth)
    }

    fn join_content(&mut self, u: u32) -> Value {
        if self.rng.chance(0.5) {
            let media: String = format!("{:016x}", self.rng.next());
            json!({"membership": "join", "displayname": format!("User {u}"),
                   "avatar_url": format!("mxc://s{}.example/{media}", self.server_of[u as usize])})
        } else {
            json!({"membership": "join", "displayname": format!("User {u}")})
        }
    }

    fn creator_state(&mut self, ty: &str, content: Value) {
        let creator = self.user(CREATOR);
        let auth = [self.create.clone(), self.power_levels.clone(), self.member_of(CREATOR).unwrap().to_owned()];
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let prev = [self.tip.clone()];
        self.tip = self.add(ty, Some(""), &creator, content, &prev, &auth, true);
    }

    fn setup(&mut self) {
        let creator = self.user(CREATOR);
        let mut create = json!({"room_version": self.rules.id});
        if !self.rules.implicit_room_creator {
            create["creator"] = json!(creator);
        }
        self.tip = self.add("m.room.create", Some(""), &creator, create, &[], &[], true);
        self.create = self.tip.0.clone();
        let c = self.create.clone();
        let prev = [self.tip.clone()];
        self.tip = self.add(
            "m.room.member",
            Some(&creator),
            &creator,
            json!({"membership": "join", "displayname": "HQ"}),
            &prev,
            &[&c],
            true,
        );
        self.member_event[CREATOR as usize] = Some(self.tip.0.clone().into_boxed_str());
        self.membership[CREATOR as usize] = M::Join;
        self.joined.insert(CREATOR);
        let mut users = Map::new();
        if !self.rules.creator_power {
            users.insert(creator.clone(), json!(100));
        }
        users.insert(self.user(MODERATOR), json!(50));
        self.pl_content = json!({"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "events": {"m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.topic": 50,
                       "m.room.pinned_events": 50}});
        let auth = [self.create.clone(), self.member_of(CREATOR).unwrap().to_owned()];
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let prev = [self.tip.clone()];
        let pl = self.pl_content.clone();
        self.tip = self.add("m.room.power_levels", Some(""), &creator, pl, &prev, &auth, true);
        self.power_levels = self.tip.0.clone();
        self.creator_state("m.room.join_rules", json!({"join_rule": "public"}));
        self.join_rules = self.tip.0.clone();
        self.creator_state("m.room.history_visibility", json!({"history_visibility": "shared"}));
        self.creator_state("m.room.name", json!({"name": "Matrix HQ (simulated)"}));
        self.creator_state("m.room.topic", json!({"topic": "The official Matrix HQ, simulated"}));
        let c = self.join_content(MODERATOR);
        let prev = [self.tip.clone()];
        self.tip = self.membership_event(MODERATOR, MODERATOR, c, &prev);
        self.joined.insert(MODERATOR);
    }

    /// Does one planned action on the tip; false when it cannot be done now.
    fn action(&mut self, kind: Kind) -> bool {
        let prev = [self.tip.clone()];
        let n = self.membership.len() as u32;
        match kind {
            Kind::FirstJoin => {
                if self.next_new_user >= n {
                    return false;
                }
                let u = self.next_new_user;
                self.next_new_user += 1;
                let c = self.join_content(u);
                self.tip = self.membership_event(u, u, c, &prev);
                self.joined.insert(u);
            }
            Kind::Rejoin => {
                if self.left.len() == 0 {
                    return false;
                }
                let u = self.left.list[self.rng.below(self.left.len())];
                let c = self.join_content(u);
                self.tip = self.membership_event(u, u, c, &prev);
                self.left.remove(u);
                self.joined.insert(u);
            }
            Kind::Leave | Kind::Kick | Kind::Ban => {
                let Some(u) = self.pick_ordinary() else { return false };
                let (sender, content) = match kind {
                    Kind::Leave => (u, json!({"membership": "leave"})),
                    Kind::Kick => (MODERATOR, json!({"membership": "leave", "reason": "spam"})),
                    _ => (MODERATOR, json!({"membership": "ban", "reason": "spam"})),
                };
                self.tip = self.membership_event(sender, u, content, &prev);
                self.joined.remove(u);
                if kind != Kind::Ban {
                    self.left.insert(u);
                }
            }
            Kind::Topic => {
                let topic =
                    format!("Matrix HQ: {} ({} members)", WORDS[self.rng.below(WORDS.len())], self.joined.len());
                let auth =
                    [self.create.clone(), self.power_levels.clone(), self.member_of(MODERATOR).unwrap().to_owned()];
                let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
                let m = self.user(MODERATOR);
                self.tip = self.add("m.room.topic", Some(""), &m, json!({"topic": topic}), &prev, &auth, true);
            }
            Kind::PowerLevels => {
                let level = if self.pl_content["events"]["m.room.pinned_events"] == 50 { 0 } else { 50 };
                self.pl_content["events"]["m.room.pinned_events"] = json!(level);
                let pl = self.pl_content.clone();
                self.creator_state("m.room.power_levels", pl);
                self.power_levels = self.tip.0.clone();
            }
            Kind::BadTopic => {
                // A member without power tries to change the topic: rejected,
                // stored, and never a prev event.
                let Some(u) = self.pick_ordinary() else { return false };
                let auth = [self.create.clone(), self.power_levels.clone(), self.member_of(u).unwrap().to_owned()];
                let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
                let s = self.user(u);
                self.add("m.room.topic", Some(""), &s, json!({"topic": "my topic now"}), &prev, &auth, false);
            }
        }
        self.stats.done[KINDS.iter().position(|k| *k == kind).unwrap()] += 1;
        true
    }

    /// A fork of 2–3 branches of messages and new joins, merged by a message.
    fn fork(&mut self, budget: usize, joins_left: &mut usize, remaining: usize) {
        let branches = if self.rng.chance(0.7) { 2 } else { 3 };
        let lens: Vec<usize> = (0..branches).map(|_| 1 + self.rng.below(4)).collect();
        let total: usize = lens.iter().sum();
        if total + 1 > budget {
            return;
        }
        let base = self.tip.clone();
        let mut tips = vec![base; branches];
        let mut new_members = Vec::new();
        for step in 0..*lens.iter().max().unwrap() {
            for b in 0..branches {
                if step >= lens[b] {
                    continue;
                }
                let prev = [tips[b].clone()];
                // New joins in a branch, at the rate they come in overall.
                if *joins_left > 0
                    && self.next_new_user < self.membership.len() as u32
                    && self.rng.below(remaining) < *joins_left
                {
                    let u = self.next_new_user;
                    self.next_new_user += 1;
                    let c = self.join_content(u);
                    tips[b] = self.membership_event(u, u, c, &prev);
                    new_members.push(u);
                    *joins_left -= 1;
                    self.stats.done[0] += 1;
                } else {
                    let s = self.pick_sender();
                    tips[b] = self.message(s, &prev);
                }
            }
        }
        for u in new_members {
            self.joined.insert(u);
        }
        let s = self.pick_sender();
        self.tip = self.message(s, &tips);
        self.stats.forks += 1;
    }

    fn run(&mut self, events: usize) {
        self.setup();
        let m = self.membership.len();
        // Planned counts of each action (the rest are messages).
        let mut plan: [usize; KINDS.len()] = [
            m - 2,                     // first joins
            m * 6 / 100,               // leaves
            m * 3 / 100,               // rejoins
            m / 200,                   // kicks
            m / 500,                   // bans
            (events / 50_000).max(1),  // topic changes
            (events / 200_000).max(1), // power level changes
            (events / 200_000).max(1), // rejected topic changes
        ];
        let planned: usize = plan.iter().sum();
        assert!(
            planned + self.generated() < events,
            "--events {events} is too few for --members {m}: the memberships alone take {planned}"
        );
        while self.generated() < events {
            let remaining = events - self.generated();
            let others: usize = plan.iter().sum();
            if remaining > 8 && self.joined.len() > 2 && self.rng.chance(0.02) {
                let mut joins = plan[0];
                self.fork(remaining - others.saturating_sub(plan[0]), &mut joins, remaining);
                plan[0] = joins;
                continue;
            }
            let mut r = self.rng.below(remaining);
            let mut chosen = None;
            for (i, c) in plan.iter().enumerate() {
                if r < *c {
                    chosen = Some(i);
                    break;
                }
                r -= c;
            }
            match chosen {
                Some(i) if self.action(KINDS[i]) => plan[i] -= 1,
                _ => {
                    let s = self.pick_sender();
                    let prev = [self.tip.clone()];
                    self.tip = self.message(s, &prev);
                }
            }
        }
    }

    /// Bytes of the generator's own bookkeeping (counted in the peak RSS).
    fn generator_bytes(&self) -> usize {
        let n = self.membership.len();
        n * (4 + 1 + std::mem::size_of::<Option<Box<str>>>() + 8)
            + self.member_event.iter().flatten().map(|s| s.len()).sum::<usize>()
            + (self.joined.list.capacity() + self.left.list.capacity()) * 4
    }
}

// ---------------------------------------------------------------- storage size

/// Length of a V8 varint.
fn varint(mut n: usize) -> u64 {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Bytes of a string in V8's serialization (one-byte if Latin-1, else two-byte).
fn v8_string(s: &str) -> u64 {
    if s.chars().all(|c| (c as u32) < 0x100) {
        let n = s.chars().count();
        1 + varint(n) + n as u64
    } else {
        let n = s.encode_utf16().count() * 2;
        1 + varint(n) + n as u64
    }
}

/// The bytes one record takes in the Durable Object store (js/stores.js
/// `DurableObjectStore`): key `r:` + 12 digits, value the object
/// `{i, eventId, status, raw, kind}` that `takeRecords` hands over, in V8's
/// structured-clone serialization (version header, object tags, one-byte
/// strings, an Smi for `i`). SQLite's own row and page overhead is not counted.
fn do_record_bytes(i: usize, event_id: &str, status: &str, raw: &str, kind: &str) -> u64 {
    let key = 14;
    let header = 2 + 1 + 1 + varint(5); // version, 'o', '{', property count
    let int = 1 + varint(i * 2); // zig-zag
    let props = v8_string("i")
        + int
        + v8_string("eventId")
        + v8_string(event_id)
        + v8_string("status")
        + v8_string(status)
        + v8_string("raw")
        + v8_string(raw)
        + v8_string("kind")
        + v8_string(kind);
    key + header + props
}

// ---------------------------------------------------------------- measurement

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

/// A query's latencies, and the most heap one call of it used above what
/// was live before it (the room's caches included, before they were trimmed).
fn row(name: &str, (mut v, heap): (Vec<Duration>, usize)) {
    v.sort();
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        v.len(),
        us(percentile(&v, 0.5)),
        us(percentile(&v, 0.99)),
        us(*v.last().expect("samples")),
        mib(heap as u64)
    );
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let args = parse_args();
    let rss_start = proc_status_kib("VmRSS:") * 1024;
    let heap_start = heap::live().0;
    println!(
        "# Simulated Matrix HQ: --events {} --members {} --servers {} --version {} --seed {}{}\n",
        args.events,
        args.members,
        args.servers,
        args.version,
        args.seed,
        if args.test_mode { " (test mode: tiny room)" } else { "" }
    );
    let mut hq = Hq::new(&args);
    let wall = Instant::now();
    hq.run(args.events);
    let wall = wall.elapsed();
    let hwm = proc_status_kib("VmHWM:") * 1024;
    let rss = proc_status_kib("VmRSS:") * 1024;
    let heap_ingest = heap::peak_without_store();
    let (heap_live, heap_store) = heap::live();
    let gen_bytes = hq.generator_bytes() as u64;
    let s = &hq.stats;
    let room = &hq.room;

    println!("## Ingest outcomes\n");
    println!("| outcome | count |\n|---|---|");
    println!("| accepted (as generated) | {} |", s.accepted);
    println!("| rejected, deliberately (powerless topic changes) | {} |", s.rejected_expected);
    println!("| rejected, unexpectedly | {} |", s.rejected_unexpected);
    println!("| dropped | {} |", s.dropped);
    println!("| other (duplicate, deferred, wrong ID, redacted on receipt) | {} |", s.other);
    for p in &s.problems {
        println!("\n- {p}");
    }
    let names = [
        "first joins",
        "leaves",
        "rejoins",
        "kicks",
        "bans",
        "topic changes",
        "power-level changes",
        "rejected topic changes",
    ];
    let done: Vec<String> = names.iter().zip(s.done).map(|(n, c)| format!("{n} {c}")).collect();
    println!("\nGenerated: {}, messages {} (incl. {} fork merges).\n", done.join(", "), s.messages, s.forks);

    // The room.
    let current = room.current_state_map().unwrap();
    let mut members = 0usize;
    let mut joined = 0usize;
    let mut servers = std::collections::HashSet::new();
    for (k, e) in current.iter() {
        let (t, user) = room.key_name(k);
        if t == "m.room.member" {
            members += 1;
            if room.event(e).unwrap().membership() == Some(&Membership::Join) {
                joined += 1;
                servers.insert(user.rsplit_once(':').map_or("", |(_, s)| s).to_owned());
            }
        }
    }
    let state_events = room.events().iter().map(Result::unwrap).filter(|e| e.state_key.is_some()).count();
    let accepted: Vec<EventIdx> =
        room.events().iter().map(Result::unwrap).filter(|e| e.is_accepted()).map(|e| e.idx).collect();
    let fork_events =
        room.events().iter().map(Result::unwrap).filter(|e| room.prev_events(e.idx).unwrap().len() > 1).count();
    println!("## The room\n");
    println!("| | |\n|---|---|");
    println!("| events stored | {} |", thousands(room.events().len() as u64));
    println!(
        "| memberships in current state (joined) | {} ({}) |",
        thousands(members as u64),
        thousands(joined as u64)
    );
    println!("| servers with a joined member (of {}) | {} |", args.servers, servers.len());
    println!("| current state entries | {} |", thousands(current.len() as u64));
    println!("| state events in the DAG | {} |", thousands(state_events as u64));
    println!("| events with 2–3 prev events (merges) | {} |", thousands(fork_events as u64));
    println!("| distinct states / auth-index nodes | {} / {} |", room.states().len(), room.auth_index().len());
    println!();

    println!("## Ingest (Room::ingest, Verification::Unsigned, records taken after each)\n");
    println!("| | |\n|---|---|");
    println!(
        "| ingest total | {:.1} s ({:.1} µs/event) |",
        s.ingest.as_secs_f64(),
        s.ingest.as_secs_f64() * 1e6 / args.events as f64
    );
    println!("| generation + ingest wall time | {:.1} s |", wall.as_secs_f64());
    for (i, d) in s.slices.iter().enumerate() {
        let from = i * s.slice_len;
        let to = ((i + 1) * s.slice_len).min(args.events);
        if to > from {
            println!(
                "| events {}–{} | {:.1} µs/event |",
                thousands(from as u64),
                thousands(to as u64),
                d.as_secs_f64() * 1e6 / (to - from) as f64
            );
        }
    }
    println!();

    println!("## Memory and storage\n");
    if args.replay {
        println!("(`--replay` keeps a copy of every record in memory: the RSS rows below count it too.)\n");
    }
    println!("| | |\n|---|---|");
    println!("| raw PDU bytes (as ingested) | {} ({} B/event) |", mib(s.raw_bytes), s.raw_bytes / args.events as u64);
    println!("| RSS before generation | {} |", mib(rss_start));
    println!("| peak RSS (VmHWM) after ingest | {} |", mib(hwm));
    println!("| RSS after ingest | {} |", mib(rss));
    println!("| of which the generator's bookkeeping (estimate) | {} |", mib(gen_bytes));
    let room_mem = hwm.saturating_sub(rss_start).saturating_sub(gen_bytes);
    let heap_room = |peak: usize| (peak as u64).saturating_sub(heap_start as u64).saturating_sub(gen_bytes);
    if args.image {
        println!(
            "| page store rows (PDUs; SQLite in a Durable Object, outside the object's memory) | {} |",
            mib(heap_store as u64)
        );
        println!(
            "| **room object's heap at its peak during ingest, without the page store's rows** | **{}** ({:.2}× raw; {} live after ingest) |",
            mib(heap_room(heap_ingest)),
            heap_room(heap_ingest) as f64 / s.raw_bytes as f64,
            mib(heap_room(heap_live - heap_store))
        );
    }
    if args.image {
        let (held, paged, (buckets, bloom)) = room.id_index_footprint();
        for (table, size) in table_sizes() {
            let named = if table == "id_buckets" {
                format!(
                    "; the index names {buckets} of them ({}, {} entries; {} held in memory, a Bloom filter of {})",
                    mib(8 * paged as u64),
                    thousands(paged as u64),
                    thousands(held as u64),
                    mib(bloom as u64)
                )
            } else if table == "state_pools" {
                let [removed, added, lists] = room.states().pools_footprint();
                format!(
                    "; rows of removed positions / added entries / chunk lists {} / {} / {}, {} of them held in memory",
                    removed.0,
                    added.0,
                    lists.0,
                    mib((removed.1 + added.1 + lists.1) as u64)
                )
            } else {
                String::new()
            };
            println!(
                "| page store table `{table}` | {} rows, {} ({} written in all{named}) |",
                thousands(size.rows as u64),
                mib(size.bytes as u64),
                mib(size.written as u64)
            );
        }
    }
    println!("| room object ≈ peak − start − generator | {} |", mib(room_mem));
    println!("| room object / raw PDU bytes | {:.2}× |", room_mem as f64 / s.raw_bytes as f64);
    println!(
        "| Durable Object store: {} records (key + V8-serialised value) | {} ({:.2}× raw) |",
        thousands(s.records as u64),
        mib(s.store_bytes),
        s.store_bytes as f64 / s.raw_bytes as f64
    );
    println!();

    // Queries, from a server with a joined member (the creator's). What the
    // lines above built to describe the room is dropped first (it read
    // every member's event: their blocks of the event table).
    let origin = "s0.example";
    let newest = *accepted.last().expect("an accepted event");
    let newest_id = room.id(newest).unwrap().to_owned();
    drop(current);
    hq.room.trim_caches();
    heap::reset_peak();
    let room = &hq.room;
    let t = Instant::now();
    let first = queries::state_ids(room, origin, &newest_id).expect("state_ids");
    let first_time = t.elapsed();
    println!("## Queries (origin {origin})\n");
    println!(
        "First answer: `/state_ids` at the newest event, right after ingest: {} ({} state IDs, {} auth-chain IDs). \
         {}\n",
        us(first_time),
        thousands(first.pdu_ids.len() as u64),
        thousands(first.auth_chain_ids.len() as u64),
        if args.replay || args.image {
            "A cold start (reopening from the records, `--replay`, or from a room image, `--image`) is timed below."
        } else {
            "No cold start here: the room lives in memory; `--replay` keeps the records and times reopening from them, \
             `--image` reads the room back from its image."
        }
    );
    drop(first);
    let mut rng = Rng(args.seed ^ 0x5EED);
    let budget = |n: usize| if args.test_mode { n / 10 } else { n };
    // The bench's own list of accepted events, live from here on.
    let bench_bytes = (accepted.capacity() * std::mem::size_of::<EventIdx>()) as u64;
    println!(
        "| query (random accepted events) | samples | median | p99 | max | most heap one call used |\n|---|---|---|---|---|---|"
    );
    // Each query on a random accepted event, timed; then the room's caches
    // trimmed to its budget, as a room object does after each request.
    let mut timed = |room: &mut Room, n: usize, query: &dyn Fn(&Room, &str)| {
        let mut v = Vec::new();
        let mut most = 0;
        for _ in 0..budget(n) {
            let id = room.id(accepted[rng.below(accepted.len())]).unwrap().to_owned();
            let peak = heap::peak_without_store();
            heap::reset_peak();
            let before = heap::live();
            let t = Instant::now();
            query(room, &id);
            v.push(t.elapsed());
            most = most.max(heap::peak_without_store() - (before.0 - before.1));
            heap::raise_peak(peak);
            room.trim_caches();
        }
        (v, most)
    };
    let room = &mut hq.room;
    row(
        "/state_ids",
        timed(room, 500, &|room, id| {
            std::hint::black_box(queries::state_ids(room, origin, id).expect("state_ids"));
        }),
    );
    row(
        "/backfill limit 100",
        timed(room, 2_000, &|room, id| {
            std::hint::black_box(queries::backfill(room, origin, &[id.to_owned()], 100).expect("backfill"));
        }),
    );
    row(
        "/get_missing_events limit 10",
        timed(room, 2_000, &|room, id| {
            std::hint::black_box(
                queries::get_missing_events(room, origin, &[], &[id.to_owned()], Some(10)).expect("gme"),
            );
        }),
    );
    row(
        "/event",
        timed(room, 10_000, &|room, id| {
            let served = queries::event(room, origin, id).expect("event");
            std::hint::black_box(room.raw(served.event).expect("stored PDU"));
        }),
    );
    println!();
    println!("Query times are the engine's work only (no JSON serialisation of the answer, no HTTP).");
    if args.image {
        println!(
            "\nThe room object's heap at its peak over these queries, the first answer included (the caches trimmed \
             after each, as a room object does), without the page store's rows: {}.",
            mib(heap_room(heap::peak_without_store()).saturating_sub(bench_bytes))
        );
    }

    if args.image {
        // The room written as an image into its page store and read back: a
        // Worker's cold start (the log after the image is empty here).
        let mut room = std::mem::replace(&mut hq.room, Room::new(&args.version).expect("a hosted room version"));
        let t = Instant::now();
        let info = room.save_image(room.events().len() as u64).expect("an image");
        let written = t.elapsed();
        let store = room.into_page_store().expect("paged");
        heap::reset_peak();
        let t = Instant::now();
        let (reopened, _) = Room::open_image(store, 8 << 20).expect("the image reads").expect("an image");
        let read = t.elapsed();
        let t = Instant::now();
        let a = queries::state_ids(&reopened, origin, &newest_id).expect("state_ids");
        let first = t.elapsed();
        let first_ids = a.pdu_ids.len();
        drop(a);
        println!(
            "\nCold start from a room image ({} bytes in {} parts of 1 MiB; written in {:.2} s): read back in {:.2} s, \
             then the first `/state_ids` at the newest event ({} IDs) in {} (peak RSS, PDUs in a memory page store: {}; \
             the reopened room object's heap at its peak, without the page store's rows: {}).",
            thousands(info.bytes),
            info.parts,
            written.as_secs_f64(),
            read.as_secs_f64(),
            thousands(first_ids as u64),
            us(first),
            mib(proc_status_kib("VmHWM:") * 1024),
            mib(heap_room(heap::peak_without_store()).saturating_sub(bench_bytes))
        );
        let after: Vec<String> = table_sizes()
            .into_iter()
            .map(|(table, size)| format!("`{table}` {} rows, {}", thousands(size.rows as u64), mib(size.bytes as u64)))
            .collect();
        println!(
            "
The page store once the image is committed (rows no image names deleted): {}.",
            after.join("; ")
        );
        hq.room = reopened;
    }
    // What the room object holds, part by part: the heap (without the page
    // store's rows) as each part is dropped in turn.
    let mut room = std::mem::replace(&mut hq.room, Room::new(&args.version).expect("a hosted room version"));
    room.trim_caches();
    let held = || {
        let (all, store) = heap::live();
        all - store
    };
    let (mut last, start) = (held(), held());
    let mut parts: Vec<(&str, usize)> = Vec::new();
    room.drop_by_parts(&mut |part| {
        let now = held();
        parts.push((part, last.saturating_sub(now)));
        last = now;
    });
    println!(
        "\n## What the room object holds, part by part\n\n{} ({} in all, its caches trimmed), as each part is \
         dropped in turn; a name (sender, type, state key) held by several parts is counted with the last to drop \
         it, the interner.\n",
        if args.image {
            "The room read back from its image, after its first `/state_ids`"
        } else {
            "The room after ingest and the queries"
        },
        mib((start - last) as u64)
    );
    println!("| part | MiB |\n|---|---|");
    for (part, bytes) in parts {
        println!("| {part} | {:.2} |", bytes as f64 / (1024.0 * 1024.0));
    }
    if args.replay {
        let version = hq.room.rules().id;
        let records = std::mem::take(&mut hq.stats.kept);
        drop(hq.room);
        let n_records = records.len();
        let t = Instant::now();
        let reopened = restore(version, records).expect("the records replay");
        let replay = t.elapsed();
        let t = Instant::now();
        let a = queries::state_ids(&reopened, origin, &newest_id).expect("state_ids");
        let first = t.elapsed();
        println!(
            "\nCold start as the Worker does it today (`placement::restore` of all {} records, no signature checks), \
             then the first `/state_ids` at the newest event ({} IDs): {:.1} s + {} (peak RSS with the records kept: {}).",
            thousands(n_records as u64),
            thousands(a.pdu_ids.len() as u64),
            replay.as_secs_f64(),
            us(first),
            mib(proc_status_kib("VmHWM:") * 1024)
        );
    }
    let s = &hq.stats;
    assert!(
        s.rejected_unexpected == 0 && s.dropped == 0 && s.other == 0,
        "the generator and the engine disagree: {:?}",
        s.problems
    );
}
