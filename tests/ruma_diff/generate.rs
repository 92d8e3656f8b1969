//! Random rooms for the ruma differential test: a create event, the
//! creator's join, power levels and join rules, then `n` random events on
//! forks that keep splitting and merging.
//!
//! Everything is a function of `(room version, seed, n)`, and the first `k`
//! events of a room generated with `n > k` are the events of the room
//! generated with `n = k`: shrinking `n` shrinks a failing room to its
//! shortest failing prefix.
//!
//! Each event's `prev_events` are 1–4 recent events (sometimes an old one, to
//! grow long-lived forks); its `auth_events` are selected from the state
//! before it (as roomdag resolves it) most of the time, and deliberately
//! stale or wrong otherwise, so that rejections come both from the auth
//! events and from the state before. Senders, targets and contents are drawn
//! with the room's state in mind (moderators kick, ban and change power
//! levels; members speak), with enough noise that many events fail the auth
//! rules for real reasons.

use std::collections::BTreeMap;

use roomdag::room::DropStage;
use roomdag::signing::{content_hash, encode_base64};
use roomdag::state_set::StateSetId;
use roomdag::{EventIdx, Outcome, Room, Verification};
use serde_json::{json, Map, Value};

/// splitmix64: small, fast and good enough to draw DAG shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x005e_ed0f_da65)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `pct` %.
    pub fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
}

pub const CREATOR: &str = "@creator:a.example";
/// The other users (on four servers).
pub const USERS: [&str; 6] =
    ["@alice:a.example", "@bob:b.example", "@carol:c.example", "@dave:b.example", "@eve:e.example", "@frank:c.example"];

/// A generated room: the roomdag room holding every event, and the PDUs in
/// generation (= arrival, = topological) order.
pub struct GenRoom {
    pub room: Room,
    pub pdus: Vec<String>,
}

/// The parts of a state the generator looks at.
struct View {
    membership: BTreeMap<String, String>,
    power_levels: Option<Map<String, Value>>,
    join_rule: String,
    creators: Vec<String>,
}

impl View {
    fn members_with(&self, m: &str) -> Vec<String> {
        self.membership.iter().filter(|(_, v)| *v == m).map(|(u, _)| u.clone()).collect()
    }

    /// A user's power level (approximately: string levels count as their
    /// value, creators as infinite); only used to pick plausible senders.
    fn level(&self, user: &str) -> i64 {
        if self.creators.iter().any(|c| c == user) {
            return i64::MAX;
        }
        let Some(pl) = &self.power_levels else {
            return if user == CREATOR { 100 } else { 0 };
        };
        let num = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        pl.get("users")
            .and_then(|u| u.get(user))
            .and_then(num)
            .unwrap_or_else(|| pl.get("users_default").and_then(num).unwrap_or(0))
    }
}

struct Gen<'r> {
    rng: &'r mut Rng,
    version: &'static str,
    vnum: u32,
    room: Room,
    pdus: Vec<String>,
    room_id: String,
    creators: Vec<String>,
    /// Per stored event (by index): depth, parsed content, accepted.
    depth: Vec<i64>,
    content: Vec<Value>,
    accepted: Vec<bool>,
    ts: i64,
    partial_power_levels: bool,
}

/// The scalar fields of power-levels content.
const SCALAR_LEVELS: [&str; 7] =
    ["users_default", "events_default", "state_default", "ban", "kick", "invite", "redact"];

/// Generates a room of version `version` with the initial events and `n`
/// random ones. Panics if a generated PDU is dropped (a generator bug: every
/// PDU must be stored, as accepted or rejected).
///
/// With `partial_power_levels`, power-levels events may leave scalar fields
/// out (a change made on a fork without power levels starts from `{}`, and
/// a change drops a field now and then); otherwise every power-levels event
/// carries all seven (`users_default` … `invite`), as every server's and
/// client's do. ruma and Synapse differ on absent fields (see
/// `Shims::synapse_absent_levels` in `tests/ruma_diff/ruma.rs`).
pub fn generate(version: &'static str, seed: u64, n: usize, partial_power_levels: bool) -> GenRoom {
    let mut rng = Rng::new(seed);
    let vnum: u32 = version.parse().expect("numeric room version");
    let mut g = Gen {
        rng: &mut rng,
        version,
        vnum,
        room: Room::new(version).expect("supported room version"),
        pdus: Vec::new(),
        room_id: "!room:a.example".into(),
        creators: vec![CREATOR.into()],
        depth: Vec::new(),
        content: Vec::new(),
        accepted: Vec::new(),
        ts: 1_700_000_000_000,
        partial_power_levels,
    };
    g.initial_events();
    for step in 0..n {
        g.step(step);
    }
    GenRoom { room: g.room, pdus: g.pdus }
}

impl Gen<'_> {
    fn v12(&self) -> bool {
        self.vnum >= 12
    }

    fn id(&self, i: usize) -> String {
        self.room.id(EventIdx(i as u32)).unwrap().to_owned()
    }

    /// Builds, hashes and ingests a PDU; returns its index, or `None` when
    /// the auth rules raised an error that is not an authorization failure
    /// (v12: a creator in `users`): Synapse never stores such a PDU, so
    /// there is nothing to compare.
    fn add(
        &mut self,
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev: &[usize],
        auth: &[String],
    ) -> Option<usize> {
        let depth = prev.iter().map(|p| self.depth[*p]).max().unwrap_or(0) + 1;
        let is_create = ty == "m.room.create";
        let prev_ids: Vec<String> = prev.iter().map(|p| self.id(*p)).collect();
        let (raw, outcome) = loop {
            let mut m = Map::new();
            m.insert("type".into(), json!(ty));
            if let Some(k) = state_key {
                m.insert("state_key".into(), json!(k));
            }
            m.insert("sender".into(), json!(sender));
            if !(is_create && self.v12()) {
                m.insert("room_id".into(), json!(self.room_id));
            }
            m.insert("content".into(), content.clone());
            m.insert("depth".into(), json!(depth));
            m.insert("origin_server_ts".into(), json!(self.ts));
            m.insert("prev_events".into(), json!(prev_ids));
            m.insert("auth_events".into(), json!(auth));
            let h = encode_base64(&content_hash(&m));
            m.insert("hashes".into(), json!({ "sha256": h }));
            let raw = serde_json::to_string(&Value::Object(m)).expect("serialise");
            match self.room.ingest(&raw, Verification::Unsigned) {
                // The same event drawn twice: make it another one.
                Outcome::Duplicate { .. } => self.ts += 1,
                outcome => break (raw, outcome),
            }
        };
        let accepted = match &outcome {
            Outcome::Accepted { redacted_on_receipt: false, .. } => true,
            Outcome::Rejected { redacted_on_receipt: false, .. } => false,
            Outcome::Dropped { stage: DropStage::Auth, .. } => return None,
            other => panic!("generator bug: PDU not stored as generated: {other:?}\n{raw}"),
        };
        let idx = self.room.lookup(outcome.event_id().unwrap().as_str()).unwrap().expect("stored").ix();
        assert_eq!(idx, self.pdus.len(), "events are stored in order");
        self.pdus.push(raw);
        self.depth.push(depth);
        self.content.push(content);
        self.accepted.push(accepted);
        if is_create && self.v12() {
            self.room_id = self.room.room_id().expect("v12 room ID from the create event").to_owned();
        }
        Some(idx)
    }

    fn initial_events(&mut self) {
        let mut create = json!({ "room_version": self.version });
        if self.vnum <= 10 {
            create["creator"] = json!(CREATOR);
        }
        if self.v12() && self.rng.chance(50) {
            // An additional creator, with infinite power too.
            create["additional_creators"] = json!([USERS[0]]);
            self.creators.push(USERS[0].into());
        }
        let c = self.add("m.room.create", Some(""), CREATOR, create, &[], &[]).expect("create stored");
        let create_id = self.id(c);
        let with_create = |g: &Self, ids: &[String]| -> Vec<String> {
            let mut v = if g.v12() { Vec::new() } else { vec![create_id.clone()] };
            v.extend_from_slice(ids);
            v
        };
        let auth = with_create(self, &[]);
        let j = self
            .add("m.room.member", Some(CREATOR), CREATOR, json!({"membership": "join"}), &[c], &auth)
            .expect("join stored");
        let join_id = self.id(j);
        let mut users = Map::new();
        if !self.v12() {
            users.insert(CREATOR.into(), json!(100));
        }
        if !self.creators.iter().any(|c| c == USERS[0]) && self.rng.chance(70) {
            users.insert(USERS[0].into(), json!(100));
        }
        users.insert(USERS[1].into(), json!(50));
        let pl = json!({
            "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": *self.rng.pick(&[0, 0, 50]),
            "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.topic": *self.rng.pick(&[0, 50])},
        });
        self.ts += 10;
        let auth = with_create(self, std::slice::from_ref(&join_id));
        let p = self.add("m.room.power_levels", Some(""), CREATOR, pl, &[j], &auth).expect("power levels stored");
        let pl_id = self.id(p);
        let rule = if self.rng.chance(70) { "public" } else { "invite" };
        self.ts += 10;
        let auth = with_create(self, &[join_id, pl_id]);
        self.add("m.room.join_rules", Some(""), CREATOR, json!({ "join_rule": rule }), &[p], &auth);
    }

    /// The parts of state `st` the generator reads.
    fn view(&self, st: StateSetId) -> View {
        let mut v = View {
            membership: BTreeMap::new(),
            power_levels: None,
            join_rule: "invite".into(),
            creators: if self.v12() { self.creators.clone() } else { Vec::new() },
        };
        for (k, e) in self.room.state(st).unwrap().iter() {
            let (t, s) = self.room.key_name(k);
            let content = &self.content[e.ix()];
            match t {
                "m.room.member" => {
                    let m = content.get("membership").and_then(Value::as_str).unwrap_or("").to_owned();
                    v.membership.insert(s.to_owned(), m);
                }
                "m.room.power_levels" if s.is_empty() => v.power_levels = content.as_object().cloned(),
                "m.room.join_rules" if s.is_empty() => {
                    v.join_rule = content.get("join_rule").and_then(Value::as_str).unwrap_or("").to_owned();
                }
                _ => {}
            }
        }
        v
    }

    /// The auth events the spec's selection algorithm picks from state `st`.
    fn select_auth(&self, st: StateSetId, ty: &str, key: Option<&str>, sender: &str, content: &Value) -> Vec<String> {
        let mut types: Vec<(&str, String)> = Vec::new();
        if !self.v12() {
            types.push(("m.room.create", String::new()));
        }
        types.push(("m.room.power_levels", String::new()));
        types.push(("m.room.member", sender.to_owned()));
        if ty == "m.room.member" {
            let target = key.unwrap_or_default();
            types.push(("m.room.member", target.to_owned()));
            let membership = content.get("membership").and_then(Value::as_str).unwrap_or("");
            if matches!(membership, "join" | "invite" | "knock") {
                types.push(("m.room.join_rules", String::new()));
            }
            if membership == "join" && self.vnum >= 8 {
                if let Some(u) = content.get("join_authorised_via_users_server").and_then(Value::as_str) {
                    types.push(("m.room.member", u.to_owned()));
                }
            }
        }
        let state = self.room.state(st).unwrap();
        let mut out: Vec<String> = Vec::new();
        for (t, k) in types {
            if let Some(e) = self.room.key_of(t, &k).and_then(|key| state.get(key)) {
                let id = self.id(e.ix());
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// A random earlier accepted event (for stale auth events and old forks).
    fn some_accepted(&mut self) -> usize {
        loop {
            let i = self.rng.below(self.pdus.len());
            if self.accepted[i] {
                return i;
            }
        }
    }

    fn choose_prevs(&mut self) -> Vec<usize> {
        let n = self.pdus.len();
        let k = *self.rng.pick(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4]);
        let window = 8.min(n - 1); // never the create event alone
        let mut prevs: Vec<usize> = Vec::new();
        for _ in 0..k {
            let p = if self.rng.chance(12) {
                self.some_accepted()
            } else {
                let p = n - 1 - self.rng.below(window);
                // Mostly accepted prev events; a rejected one now and then.
                if !self.accepted[p] && self.rng.chance(70) {
                    continue;
                }
                p
            };
            if p != 0 && !prevs.contains(&p) {
                prevs.push(p);
            }
        }
        if prevs.is_empty() {
            prevs.push(n - 1);
        }
        prevs
    }

    fn step(&mut self, step: usize) {
        let prevs = self.choose_prevs();
        let prev_idx: Vec<EventIdx> = prevs.iter().map(|p| EventIdx(*p as u32)).collect();
        let st = self.room.resolve_after(&prev_idx).unwrap();
        let view = self.view(st);
        let (ty, key, sender, content) = self.choose_event(&view, step);

        let mut auth = self.select_auth(st, &ty, key.as_deref(), &sender, &content);
        let r = self.rng.below(100);
        if r < 8 {
            // Stale: selected from the state after some other event.
            let other = self.some_accepted();
            let st = self.room.event(EventIdx(other as u32)).unwrap().state_after;
            auth = self.select_auth(st, &ty, key.as_deref(), &sender, &content);
        } else if r < 11 && !auth.is_empty() {
            auth.remove(self.rng.below(auth.len()));
        } else if r < 14 {
            // An extra event: the topic or some other state event, an
            // unexpected auth event (or a duplicate of a selected type).
            // (Not the v12 create event: listing it is a format error, the
            // PDU is dropped.)
            let other = self.some_accepted();
            let id = self.id(other);
            if !auth.contains(&id) && (other != 0 || !self.v12()) {
                auth.push(id);
            }
        }
        if self.rng.chance(30) {
            self.rng.shuffle(&mut auth);
        }
        // Timestamps go forward on average but jitter (forks overlap in
        // time), with ties now and then (the event ID breaks them).
        self.ts += 100;
        let ts = self.ts;
        self.ts = ts - 150 + 50 * self.rng.below(7) as i64;
        self.add(&ty, key.as_deref(), &sender, content, &prevs, &auth);
        self.ts = ts;
    }

    /// A joined user, preferring those with at least `level` (75 % of the
    /// time), now and then anybody.
    fn sender(&mut self, view: &View, level: i64) -> String {
        if self.rng.chance(5) {
            return self.any_user();
        }
        let joined = view.members_with("join");
        let strong: Vec<String> = joined.iter().filter(|u| view.level(u) >= level).cloned().collect();
        if !strong.is_empty() && self.rng.chance(75) {
            return self.rng.pick(&strong).clone();
        }
        if joined.is_empty() {
            return CREATOR.into();
        }
        self.rng.pick(&joined).clone()
    }

    fn any_user(&mut self) -> String {
        if self.rng.chance(15) {
            CREATOR.into()
        } else {
            (*self.rng.pick(&USERS)).into()
        }
    }

    fn level_value(&mut self) -> Value {
        let v = *self.rng.pick(&[0, 0, 25, 50, 50, 75, 100, 100]);
        // v3–v9 accept levels given as strings.
        if self.vnum <= 9 && self.rng.chance(10) {
            json!(v.to_string())
        } else {
            json!(v)
        }
    }

    fn choose_event(&mut self, view: &View, step: usize) -> (String, Option<String>, String, Value) {
        let member = |m: &str| json!({ "membership": m });
        let a = self.rng.below(100);
        let s = |x: &str| x.to_owned();
        match a {
            // Joins (knocks in v7+ now and then).
            0..=15 => {
                let u = self.any_user();
                if self.vnum >= 7 && (view.join_rule.starts_with("knock") || self.rng.chance(10)) && self.rng.chance(50)
                {
                    return (s("m.room.member"), Some(u.clone()), u, member("knock"));
                }
                let mut c = member("join");
                if self.vnum >= 8 && (view.join_rule.contains("restricted") || self.rng.chance(5)) {
                    let auth = self.sender(view, 0);
                    c["join_authorised_via_users_server"] = json!(auth);
                }
                if self.rng.chance(20) {
                    c["displayname"] = json!(format!("user {step}"));
                }
                (s("m.room.member"), Some(u.clone()), u, c)
            }
            16..=21 => {
                let sender = self.sender(view, 50);
                let target = self.any_user();
                (s("m.room.member"), Some(target), sender, member("invite"))
            }
            22..=27 => {
                let joined = view.members_with("join");
                let u = if joined.is_empty() || self.rng.chance(10) {
                    self.any_user()
                } else {
                    self.rng.pick(&joined).clone()
                };
                (s("m.room.member"), Some(u.clone()), u, member("leave"))
            }
            // Kicks, bans, unbans.
            28..=39 => {
                let sender = self.sender(view, 50);
                let (target, m) = match a {
                    28..=32 => {
                        let mut cands = view.members_with("join");
                        cands.extend(view.members_with("invite"));
                        (if cands.is_empty() { self.any_user() } else { self.rng.pick(&cands).clone() }, "leave")
                    }
                    33..=37 => (self.any_user(), "ban"),
                    _ => {
                        let banned = view.members_with("ban");
                        (if banned.is_empty() { self.any_user() } else { self.rng.pick(&banned).clone() }, "leave")
                    }
                };
                let mut c = member(m);
                if self.rng.chance(30) {
                    c["reason"] = json!("r");
                }
                (s("m.room.member"), Some(target), sender, c)
            }
            // Power levels.
            40..=51 => {
                let sender = self.sender(view, 75);
                let mut pl = view.power_levels.clone().unwrap_or_default();
                if !self.partial_power_levels {
                    // Complete the content with the spec's defaults.
                    for (f, d) in SCALAR_LEVELS.iter().zip([0, 0, 50, 50, 50, 0, 50]) {
                        pl.entry(*f).or_insert(json!(d));
                    }
                } else if self.rng.chance(10) {
                    pl.remove(*self.rng.pick(&SCALAR_LEVELS));
                }
                for _ in 0..1 + self.rng.below(2) {
                    match self.rng.below(10) {
                        0..=4 => {
                            let u = if self.rng.chance(25) { sender.clone() } else { self.any_user() };
                            if view.creators.contains(&u) && self.rng.chance(90) {
                                continue; // v12: creators may not be listed
                            }
                            let users = pl.entry("users").or_insert_with(|| json!({}));
                            if let Some(users) = users.as_object_mut() {
                                if self.rng.chance(15) {
                                    users.remove(&u);
                                } else {
                                    let lv = self.level_value();
                                    users.insert(u, lv);
                                }
                            }
                        }
                        5..=7 => {
                            let field = *self.rng.pick(&SCALAR_LEVELS);
                            let lv = self.level_value();
                            pl.insert(field.into(), lv);
                        }
                        _ => {
                            let ty = *self.rng.pick(&[
                                "m.room.topic",
                                "m.room.name",
                                "org.example.state",
                                "m.room.power_levels",
                                "m.room.join_rules",
                                "m.room.message",
                            ]);
                            let lv = self.level_value();
                            let events = pl.entry("events").or_insert_with(|| json!({}));
                            if let Some(events) = events.as_object_mut() {
                                events.insert(ty.into(), lv);
                            }
                        }
                    }
                }
                (s("m.room.power_levels"), Some(String::new()), sender, Value::Object(pl))
            }
            // Join rules.
            52..=57 => {
                let sender = self.sender(view, 50);
                let mut rules = vec!["public", "public", "invite"];
                if self.vnum >= 7 {
                    rules.push("knock");
                }
                if self.vnum >= 8 {
                    rules.push("restricted");
                }
                if self.vnum >= 10 {
                    rules.push("knock_restricted");
                }
                let rule = *self.rng.pick(&rules);
                let mut c = json!({ "join_rule": rule });
                if rule.contains("restricted") {
                    c["allow"] = json!([{"type": "m.room_membership", "room_id": "!elsewhere:b.example"}]);
                }
                (s("m.room.join_rules"), Some(String::new()), sender, c)
            }
            // Topic, name, other state.
            58..=65 => {
                let sender = self.sender(view, 50);
                if self.rng.chance(50) {
                    (s("m.room.topic"), Some(String::new()), sender, json!({ "topic": format!("topic {step}") }))
                } else {
                    (s("m.room.name"), Some(String::new()), sender, json!({ "name": format!("name {step}") }))
                }
            }
            66..=71 => {
                let sender = self.sender(view, 50);
                let key = match self.rng.below(5) {
                    0 | 1 => String::new(),
                    2 => "k".into(),
                    3 => sender.clone(),
                    _ => self.any_user(), // another user's ID: rejected unless it is the sender's
                };
                (s("org.example.state"), Some(key), sender, json!({ "n": step }))
            }
            72..=73 => {
                let sender = self.sender(view, 0);
                if self.vnum <= 5 && self.rng.chance(60) {
                    // v3–v5: m.room.aliases is allowed iff the state key is the sender's server.
                    let sender = self.any_user();
                    let server = if self.rng.chance(70) {
                        sender.split(':').nth(1).unwrap_or_default().to_owned()
                    } else {
                        "b.example".into()
                    };
                    (s("m.room.aliases"), Some(server), sender, json!({ "aliases": [format!("#a{step}:b.example")] }))
                } else {
                    let c = json!({"display_name": "x", "key_validity_url": "https://x.example/v",
                                   "public_key": "AAAA"});
                    (s("m.room.third_party_invite"), Some(format!("tok{step}")), sender, c)
                }
            }
            _ => {
                let sender = self.sender(view, 0);
                let c = json!({ "msgtype": "m.text", "body": format!("m{step}") });
                (s("m.room.message"), None, sender, c)
            }
        }
    }
}
