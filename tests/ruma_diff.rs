//! Differential test: roomdag's state resolution against ruma-state-res
//! (crates.io, a dev-dependency only) on random DAGs, room versions 3–12
//! (state resolution v2 for v3–v11, v2.1 for v12).
//!
//! For each version, proptest draws `(seed, n)` (a fixed RNG seed, so the
//! cases are the same on every run) and `generate` builds a room of `n`
//! random events after the initial four, ingested into [`roomdag::Room`].
//! Then, with every stored event converted to ruma's PDU type:
//!
//! * **merges**: for every event whose prev events' states after differ,
//!   ruma resolves those states, and the result must equal roomdag's state
//!   before the event;
//! * **current state**: ruma's resolution of the forward extremities' states
//!   must equal [`roomdag::Room::current_state`] (every 25 events and at
//!   the end);
//! * **arbitrary resolutions**: random sets of 2–3 events' states after
//!   (not necessarily siblings), resolved by both;
//! * **statuses**: ruma's authorization checks on receipt (state-independent
//!   rules, then the state-dependent rules against the auth events and
//!   against the state before) must accept exactly the events roomdag
//!   accepted — ruma's resolution reads those statuses as `rejected()`.
//!
//! A disagreement fails the test unless [`classify`] recognises it as a
//! documented difference between ruma and Synapse (roomdag is held to
//! Synapse); those are counted in the summary. proptest then shrinks the
//! failing case (a smaller `n` is a prefix of the same room), and the report
//! gives the minimal room as labelled events, the disagreement, a replay
//! command and a file with the PDUs.
//!
//! Environment:
//! * `ROOMDAG_RUMA_CASES=N`: cases per room version (default 24);
//! * `ROOMDAG_RUMA_EVENTS=N`: the largest `n` drawn (default 120);
//! * `ROOMDAG_RUMA_SEED=S`: proptest's RNG seed (default fixed), to explore other cases;
//! * `ROOMDAG_RUMA_VERSIONS=3,12`: only these room versions;
//! * `ROOMDAG_RUMA_REPLAY=V:SEED:N`: check that one room only, verbosely.
//! * `ROOMDAG_RUMA_PARTIAL_LEVELS=1`: power-levels events may leave scalar
//!   fields out (see [`ABSENT_POWER_LEVEL`]); disagreements no shim explains
//!   are then put to Synapse (see [`SYNAPSE_AGREES`]);
//! * `ROOMDAG_RUMA_ASK_SYNAPSE=1`: put them to Synapse in any mode.
//!
//! Long mode (≈ 50 s in release on 2 cores, 470k events, 147k merges):
//! `ROOMDAG_RUMA_CASES=300 ROOMDAG_RUMA_EVENTS=300 cargo test --release --test ruma_diff`.
//!
//! The summary lines go straight to stderr (shown without `--nocapture`).

#[path = "ruma_diff/generate.rs"]
mod generate;

#[path = "ruma_diff/ruma.rs"]
mod ruma;

#[path = "support/shared.rs"]
mod shared;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use roomdag::state_set::StateSetId;
use roomdag::{EventIdx, EventStatus, Room};
use ruma_common::OwnedEventId;
use ruma_events::StateEventType;
use ruma_state_res::StateMap;
use serde_json::Value;

use generate::{generate, GenRoom, Rng};
use ruma::{RumaRoom, Shims};

const VERSIONS: [&str; 10] = ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

/// `ROOMDAG_RUMA_PARTIAL_LEVELS=1`: power-levels events may leave fields out.
fn partial_levels() -> bool {
    std::env::var("ROOMDAG_RUMA_PARTIAL_LEVELS").is_ok_and(|v| v == "1")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Counts for the summary.
#[derive(Default, Clone, Debug)]
struct Stats {
    rooms: usize,
    events: usize,
    rejected: usize,
    merges: usize,
    current: usize,
    arbitrary: usize,
    statuses: usize,
    /// Disagreements classified as known ruma-vs-Synapse differences.
    known: BTreeMap<&'static str, usize>,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.rooms += o.rooms;
        self.events += o.events;
        self.rejected += o.rejected;
        self.merges += o.merges;
        self.current += o.current;
        self.arbitrary += o.arbitrary;
        self.statuses += o.statuses;
        for (k, v) in &o.known {
            *self.known.entry(k).or_default() += v;
        }
    }

    fn line(&self) -> String {
        let known = if self.known.is_empty() {
            "none".to_owned()
        } else {
            self.known.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{} rooms, {} events ({} rejected); resolutions compared: {} merges, {} current states, {} arbitrary; \
             {} statuses compared; known differences: {known}",
            self.rooms, self.events, self.rejected, self.merges, self.current, self.arbitrary, self.statuses
        )
    }
}

/// What disagreed.
enum Subject {
    /// The state before this event (a merge of its prev events' states).
    Merge(usize),
    /// The current state (after this many events).
    Current(usize),
    /// Resolving the states after these events.
    Arbitrary(Vec<usize>),
    /// This event's status.
    Status(usize),
}

struct Disagreement {
    subject: Subject,
    /// The input states (as ruma maps) of a resolution; for a status, the
    /// state before the event.
    inputs: Vec<(String, StateMap<OwnedEventId>)>,
    /// roomdag's resolved state (for resolutions).
    roomdag: Option<BTreeMap<(String, String), String>>,
    detail: String,
}

/// Known difference: **ruma has no default join rule.** When neither the
/// auth events nor the state hold an `m.room.join_rules` event, ruma-state-res
/// 0.18 rejects every join: `check_room_member_join` calls
/// `fetch_state.join_rule()?` (`src/event_auth/room_member.rs`), which fails
/// with "no `m.room.join_rules` event in current state"
/// (`FetchStateExt::join_rule`, `src/event_auth.rs`). Synapse reads the join
/// rule as `invite` then (`_is_membership_change_allowed`,
/// `synapse/event_auth.py`: `join_rule = JoinRules.INVITE` when
/// `auth_events` has no join-rules event), so a join by a user already
/// joined or invited is allowed (and roomdag, held to Synapse, agrees).
/// The generated rooms hit it on forks from before the initial join rules,
/// with auth events that leave the join rules out, and (v2.0) when state
/// resolution drops the join rules (MSC4297 problem A).
const NO_DEFAULT_JOIN_RULE: &str = "ruma: no default join rule";

/// Known difference: **absent power-level fields.** Auth rule 10.4 (9.4
/// before v12) compares each of `users_default`, `events_default`,
/// `state_default`, `ban`, `kick`, `invite`, `redact` that was added, changed
/// or removed with the sender's level. ruma-state-res compares the *default*
/// of a field absent on one side (`check_room_power_levels`,
/// `src/event_auth.rs`); Synapse compares only the values present
/// (`_check_power_levels`, `synapse/event_auth.py`), so adding `ban: 50` to
/// a content without `ban` passes for a sender at 50 in both, but removing
/// `state_default` from a content where it was 0 is judged differently.
/// Only seen with `ROOMDAG_RUMA_PARTIAL_LEVELS=1` (real servers and clients
/// write every field).
const ABSENT_POWER_LEVEL: &str = "ruma: absent power-level fields read as defaults";
const BOTH: &str = "ruma: no default join rule, and absent power-level fields";

/// Known differences, confirmed case by case: a disagreement none of the
/// shims explains by itself (e.g. both differences chained through a
/// resolution, where ruma checks a power-levels event against power levels
/// no shim can guess) is put to Synapse itself (`ruma_diff/synapse_judge.py`
/// on the Synapse oracle, when one is installed); if Synapse gives roomdag's
/// answer, ruma is the one that differs.
const SYNAPSE_AGREES: &str = "ruma differs from Synapse (Synapse, asked, gives roomdag's answer)";

/// Whether unexplained disagreements are put to Synapse: with
/// `ROOMDAG_RUMA_PARTIAL_LEVELS=1` (where the two known differences chain),
/// or `ROOMDAG_RUMA_ASK_SYNAPSE=1`. Off by default, so that a real bug fails
/// (and shrinks) fast.
fn ask_synapse() -> bool {
    partial_levels() || std::env::var("ROOMDAG_RUMA_ASK_SYNAPSE").is_ok_and(|v| v == "1")
}

/// A Python with Synapse and the oracle: `$ROOMDAG_ORACLE_PYTHON`,
/// `oracle/setup.sh`'s venv, or the one `npm test` installs.
fn oracle_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("ROOMDAG_ORACLE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([shared::shared_dir("oracle").join(".venv/bin/python"), root.join(".roomdag/oracle-venv/bin/python")])
        .find(|p| p.exists())
}

/// Whether Synapse, replaying the same PDUs, gives roomdag's answer on the
/// disagreement's subject (false when no Synapse oracle is installed).
fn synapse_agrees(version: &str, room: &Room, pdus: &[String], d: &Disagreement) -> bool {
    let Some(python) = oracle_python() else { return false };
    let (upto, indices): (usize, Vec<usize>) = match &d.subject {
        Subject::Merge(i) => (i + 1, room.prev_events(EventIdx(*i as u32)).unwrap().iter().map(|p| p.ix()).collect()),
        Subject::Status(i) => (i + 1, Vec::new()),
        Subject::Current(k) => (*k, Vec::new()),
        Subject::Arbitrary(es) => (es.iter().max().map_or(0, |m| m + 1), es.clone()),
    };
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ruma_diff-judge-{}-{:?}.jsonl",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, pdus[..upto].join("\n") + "\n").is_err() {
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ruma_diff/synapse_judge.py");
    let out = std::process::Command::new(python)
        .env("ROOMDAG_ORACLE_DIR", shared::shared_dir("oracle"))
        .arg(script)
        .arg(version)
        .arg(&path)
        .args(indices.iter().map(|i| i.to_string()))
        .output();
    let _ = std::fs::remove_file(&path);
    let Ok(out) = out else { return false };
    let Ok(verdict) = serde_json::from_slice::<Value>(&out.stdout) else {
        stderr_line(&format!("[ruma_diff] synapse_judge.py failed: {}", String::from_utf8_lossy(&out.stderr)));
        return false;
    };
    match &d.subject {
        Subject::Status(i) => {
            let ours = if room.event(EventIdx(*i as u32)).unwrap().status == EventStatus::Rejected {
                "rejected"
            } else {
                "accepted"
            };
            verdict["statuses"][*i].as_str() == Some(ours)
        }
        _ => {
            let Some(want) = d.roomdag.as_ref() else { return false };
            let Some(theirs) = verdict["resolved"].as_object() else { return false };
            let theirs: BTreeMap<(String, String), String> = theirs
                .iter()
                .filter_map(|(k, v)| {
                    let (t, s) = k.split_once('\u{0}')?;
                    Some(((t.to_owned(), s.to_owned()), v.as_str()?.to_owned()))
                })
                .collect();
            theirs == *want
        }
    }
}

/// Recognises a disagreement that exactly one documented difference between
/// ruma-state-res and Synapse explains: ruma, made to apply Synapse's rule
/// in that one place, agrees with roomdag. Anything else fails the test.
fn classify(ruma: &RumaRoom, d: &Disagreement) -> Option<&'static str> {
    match &d.subject {
        Subject::Status(i) => {
            let before = &d.inputs[0].1;
            if ruma.pdus[*i].rejected {
                return None; // every known difference is ruma rejecting what Synapse accepts
            }
            let join_rule = Shims { default_join_rule: true, ..Shims::default() };
            let levels = Shims { synapse_absent_levels: true, ..Shims::default() };
            let both = Shims { default_join_rule: true, synapse_absent_levels: true };
            if ruma.verdict(*i, before, join_rule).is_ok() {
                Some(NO_DEFAULT_JOIN_RULE)
            } else if partial_levels() && ruma.verdict(*i, before, levels).is_ok() {
                Some(ABSENT_POWER_LEVEL)
            } else if partial_levels() && ruma.verdict(*i, before, both).is_ok() {
                Some(BOTH)
            } else {
                None
            }
        }
        _ => {
            let want = d.roomdag.as_ref()?;
            let states: Vec<StateMap<OwnedEventId>> = d.inputs.iter().map(|(_, m)| m.clone()).collect();
            let agrees = |view: &RumaRoom| view.resolve(&states).is_ok_and(|got| view.named(&got) == *want);
            if agrees(&ruma.with_default_join_rule()) {
                return Some(NO_DEFAULT_JOIN_RULE);
            }
            if !partial_levels() {
                return None;
            }
            // The power levels a power-levels event may be checked against:
            // its own cited ones (`None`), or any input state's.
            let pl_key = (StateEventType::RoomPowerLevels, String::new());
            let mut guesses: Vec<Option<&OwnedEventId>> = vec![None];
            guesses.extend(states.iter().filter_map(|st| st.get(&pl_key)).map(Some));
            let joined = ruma.with_default_join_rule();
            if guesses.iter().any(|g| agrees(&ruma.with_synapse_absent_levels(*g))) {
                Some(ABSENT_POWER_LEVEL)
            } else if guesses.iter().any(|g| agrees(&joined.with_synapse_absent_levels(*g))) {
                Some(BOTH)
            } else {
                None
            }
        }
    }
}

/// Short labels: `e12` for the event with index 12.
fn label(ruma: &RumaRoom, id: &str) -> String {
    match ruma.by_id.iter().find(|(k, _)| k.as_str() == id) {
        Some((_, i)) => format!("e{i}"),
        None => id.to_owned(),
    }
}

fn diff_states(
    ruma: &RumaRoom,
    roomdag: &BTreeMap<(String, String), String>,
    theirs: &BTreeMap<(String, String), String>,
) -> Option<String> {
    let keys: BTreeSet<&(String, String)> = roomdag.keys().chain(theirs.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (a, b) = (roomdag.get(k), theirs.get(k));
        if a != b {
            let show = |x: Option<&String>| x.map_or("(absent)".to_owned(), |id| label(ruma, id));
            let _ = writeln!(out, "    ({}, {:?}): roomdag {}, ruma {}", k.0, k.1, show(a), show(b));
        }
    }
    (!out.is_empty()).then_some(out)
}

fn named_roomdag(room: &Room, st: StateSetId) -> BTreeMap<(String, String), String> {
    room.state(st)
        .unwrap()
        .iter()
        .map(|(k, e)| {
            let (t, s) = room.key_name(k);
            ((t.to_owned(), s.to_owned()), room.id(e).unwrap().to_owned())
        })
        .collect()
}

/// Compares one resolution; returns the disagreement, if any.
fn compare_resolution(
    room: &Room,
    ruma: &RumaRoom,
    subject: Subject,
    inputs: &[(String, StateSetId)],
    roomdag_result: StateSetId,
) -> Option<Disagreement> {
    let maps: Vec<(String, StateMap<OwnedEventId>)> =
        inputs.iter().map(|(name, st)| (name.clone(), ruma.state_map(room, *st))).collect();
    let states: Vec<StateMap<OwnedEventId>> = maps.iter().map(|(_, m)| m.clone()).collect();
    let ours = named_roomdag(room, roomdag_result);
    let detail = match ruma.resolve(&states) {
        Err(e) => Some(format!("    {e}\n")),
        Ok(resolved) => diff_states(ruma, &ours, &ruma.named(&resolved)),
    }?;
    Some(Disagreement { subject, inputs: maps, roomdag: Some(ours), detail })
}

/// The distinct states after `events`, named by the first event having each.
fn states_after(room: &Room, events: &[usize]) -> Vec<(String, StateSetId)> {
    let mut out: Vec<(String, StateSetId)> = Vec::new();
    for e in events {
        let st = room.event(EventIdx(*e as u32)).unwrap().state_after;
        if !out.iter().any(|(_, s)| *s == st) {
            out.push((format!("state after e{e}"), st));
        }
    }
    out
}

/// Every check on one generated room (see the module docs). `Err` is the
/// first unclassified disagreement, as a report.
fn check_room(version: &'static str, seed: u64, n: usize, verbose: bool) -> Result<Stats, String> {
    let GenRoom { mut room, pdus } = generate(version, seed, n, partial_levels());
    let ruma = RumaRoom::new(&room);
    let mut stats = Stats { rooms: 1, events: pdus.len(), ..Stats::default() };
    let mut found: Vec<Disagreement> = Vec::new();
    let mut rng = Rng::new(seed ^ 0xa5a5_a5a5);
    let total = room.events().len();
    let mut note = |d: Disagreement, stats: &mut Stats, ruma: &RumaRoom| match classify(ruma, &d) {
        Some(kind) => *stats.known.entry(kind).or_default() += 1,
        None => found.push(d),
    };

    for i in 0..total {
        let idx = EventIdx(i as u32);
        let ev = room.event(idx).unwrap();
        let rejected = ev.status == EventStatus::Rejected;
        stats.rejected += usize::from(rejected);
        // Statuses.
        let before = ruma.state_map(&room, ev.state_before);
        stats.statuses += 1;
        let verdict = ruma.verdict(i, &before, Shims::default());
        if verdict.is_ok() == rejected {
            let detail = format!(
                "    roomdag: {}, ruma: {}\n",
                room.rejection(idx).map_or("accepted".to_owned(), |r| format!("rejected ({r})")),
                verdict.as_ref().err().map_or("accepted".to_owned(), |r| format!("rejected ({r})")),
            );
            let inputs = vec![(format!("state before e{i}"), before)];
            note(Disagreement { subject: Subject::Status(i), inputs, roomdag: None, detail }, &mut stats, &ruma);
        }
        // Merges.
        let prevs: Vec<usize> = room.prev_events(idx).unwrap().iter().map(|p| p.ix()).collect();
        let inputs = states_after(&room, &prevs);
        if inputs.len() >= 2 && i > 0 {
            stats.merges += 1;
            if let Some(d) = compare_resolution(&room, &ruma, Subject::Merge(i), &inputs, ev.state_before) {
                note(d, &mut stats, &ruma);
            }
        }
    }

    // Arbitrary resolutions: random sets of 2–3 events' states after.
    for _ in 0..total / 8 {
        let k = 2 + rng.below(2);
        let events: Vec<usize> = (0..k).map(|_| 1 + rng.below(total - 1)).collect();
        let inputs = states_after(&room, &events);
        if inputs.len() < 2 {
            continue;
        }
        let idxs: Vec<EventIdx> = events.iter().map(|e| EventIdx(*e as u32)).collect();
        let got = room.resolve_after(&idxs).unwrap();
        stats.arbitrary += 1;
        if let Some(d) = compare_resolution(&room, &ruma, Subject::Arbitrary(events), &inputs, got) {
            note(d, &mut stats, &ruma);
        }
    }

    // The current state, at the end.
    let extremities: Vec<usize> = room.forward_extremities().map(|e| e.ix()).collect();
    let inputs = states_after(&room, &extremities);
    let current = room.current_state().unwrap();
    if inputs.len() >= 2 {
        stats.current += 1;
        if let Some(d) = compare_resolution(&room, &ruma, Subject::Current(total), &inputs, current) {
            note(d, &mut stats, &ruma);
        }
    }
    // …and along the way: the current state of each prefix is checked when
    // proptest shrinks `n`; every 25 events it is checked here too.
    for cut in (25..total).step_by(25) {
        let mut prefix = Room::new(version).expect("room");
        for raw in &pdus[..cut] {
            prefix.ingest(raw, roomdag::Verification::Unsigned);
        }
        let extremities: Vec<usize> = prefix.forward_extremities().map(|e| e.ix()).collect();
        let inputs = states_after(&prefix, &extremities);
        if inputs.len() < 2 {
            continue;
        }
        let current = prefix.current_state().unwrap();
        // The prefix's events are the room's first `cut` events: same
        // indices, same states (as sets), so `ruma` (built from the whole
        // room) serves.
        stats.current += 1;
        if let Some(d) = compare_resolution(&prefix, &ruma, Subject::Current(cut), &inputs, current) {
            note(d, &mut stats, &ruma);
        }
    }

    // What no shim explains, Synapse may (see `SYNAPSE_AGREES`); the first
    // disagreement Synapse does not settle fails the room.
    if ask_synapse() {
        while let Some(d) = found.first() {
            if !synapse_agrees(version, &room, &pdus, d) {
                break;
            }
            *stats.known.entry(SYNAPSE_AGREES).or_default() += 1;
            found.remove(0);
        }
    }

    if verbose {
        eprintln!("[ruma_diff] v{version} seed {seed} n {n}: {}", stats.line());
        eprintln!("{}", describe_room(&room, &ruma, total));
    }
    match found.into_iter().next() {
        None => Ok(stats),
        Some(d) => Err(report(version, seed, n, &room, &ruma, &pdus, &d)),
    }
}

fn subject_text(s: &Subject) -> String {
    match s {
        Subject::Merge(i) => format!("the state before e{i} (resolving its prev events' states after)"),
        Subject::Current(k) => format!("the current state after the first {k} events"),
        Subject::Arbitrary(es) => {
            format!("resolving the states after {}", es.iter().map(|e| format!("e{e}")).collect::<Vec<_>>().join(", "))
        }
        Subject::Status(i) => format!("the status of e{i}"),
    }
}

/// One line per event, up to `upto` (exclusive).
fn describe_room(room: &Room, ruma: &RumaRoom, upto: usize) -> String {
    let mut out = String::new();
    for i in 0..upto.min(room.events().len()) {
        let idx = EventIdx(i as u32);
        let p = &ruma.pdus[i];
        let raw: Value = serde_json::from_str(&room.raw(idx).expect("stored PDU")).expect("JSON");
        let list = |v: &[OwnedEventId]| v.iter().map(|e| label(ruma, e.as_str())).collect::<Vec<_>>().join(",");
        let status = match room.rejection(idx) {
            None => "accepted".to_owned(),
            Some(r) => format!("REJECTED: {r}"),
        };
        let _ = writeln!(
            out,
            "  e{i} {} {}{} by {} ts={} prev=[{}] auth=[{}] {} [{status}]",
            p.event_id,
            p.event_type,
            p.state_key.as_ref().map_or(String::new(), |k| format!(" {k:?}")),
            p.sender,
            p.origin_server_ts.get(),
            list(&p.prev_events),
            list(&p.auth_events),
            raw["content"],
        );
    }
    out
}

fn report(
    version: &str,
    seed: u64,
    n: usize,
    room: &Room,
    ruma: &RumaRoom,
    pdus: &[String],
    d: &Disagreement,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "roomdag and ruma-state-res disagree on room v{version}, seed {seed}, n {n} \
         (replay: {}ROOMDAG_RUMA_REPLAY={version}:{seed}:{n} cargo test --test ruma_diff -- --nocapture)",
        if partial_levels() { "ROOMDAG_RUMA_PARTIAL_LEVELS=1 " } else { "" }
    );
    let _ = writeln!(out, "  on {}:", subject_text(&d.subject));
    out.push_str(&d.detail);
    for (name, m) in &d.inputs {
        let mut entries: Vec<String> =
            ruma.named(m).into_iter().map(|((t, s), e)| format!("({t}, {s:?})={}", label(ruma, &e))).collect();
        entries.sort();
        let _ = writeln!(out, "  input {name}: {}", entries.join(" "));
    }
    let upto = match &d.subject {
        Subject::Merge(i) | Subject::Status(i) => i + 1,
        Subject::Current(k) => *k,
        Subject::Arbitrary(_) => room.events().len(),
    };
    let _ = writeln!(out, "  events (e0…e{}):", upto - 1);
    out.push_str(&describe_room(room, ruma, upto));
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ruma_diff-v{version}-{seed}-{n}.jsonl"));
    if std::fs::write(&path, pdus[..upto].join("\n") + "\n").is_ok() {
        let _ = writeln!(out, "  PDUs (one per line, in arrival order): {}", path.display());
    }
    out
}

/// Runs proptest over `(seed, n)` for one room version.
fn run_version(version: &'static str, cases: usize, max_events: usize, base_seed: u64) -> Result<Stats, String> {
    let config = Config {
        cases: cases as u32,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(base_seed ^ version.parse::<u64>().unwrap().wrapping_mul(0x9e37_79b9)),
        max_shrink_iters: 400,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let stats = Mutex::new(Stats::default());
    let result = runner.run(&(any::<u64>(), 1..=max_events), |(seed, n)| match check_room(version, seed, n, false) {
        Ok(s) => {
            stats.lock().unwrap().add(&s);
            Ok(())
        }
        Err(report) => Err(TestCaseError::fail(report.lines().next().unwrap_or_default().to_owned())),
    });
    match result {
        Ok(()) => Ok(stats.into_inner().unwrap()),
        Err(TestError::Fail(why, (seed, n))) => {
            stderr_line(&format!("[ruma_diff] v{version}: minimal failing case: seed {seed}, n {n}: {why}"));
            Err(check_room(version, seed, n, false).err().unwrap_or_else(|| "flaky case".to_owned()))
        }
        Err(e) => Err(format!("proptest: {e}")),
    }
}

fn stderr_line(s: &str) {
    // Straight to the file descriptor: libtest captures print!/eprint! only.
    let _ = writeln!(std::io::stderr(), "{s}");
}

#[test]
fn state_resolution_matches_ruma_on_random_dags() {
    if let Ok(replay) = std::env::var("ROOMDAG_RUMA_REPLAY") {
        let parts: Vec<&str> = replay.split(':').collect();
        let [v, seed, n] = parts[..] else { panic!("ROOMDAG_RUMA_REPLAY=VERSION:SEED:N") };
        let version = VERSIONS.into_iter().find(|x| *x == v).expect("room version 3–12");
        match check_room(version, seed.parse().expect("seed"), n.parse().expect("n"), true) {
            Ok(s) => stderr_line(&format!("[ruma_diff] replay OK: {}", s.line())),
            Err(r) => panic!("{r}"),
        }
        return;
    }
    let cases = env_usize("ROOMDAG_RUMA_CASES", 24);
    let max_events = env_usize("ROOMDAG_RUMA_EVENTS", 120).max(1);
    let base_seed = std::env::var("ROOMDAG_RUMA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x7275_6d61);
    let only: Option<Vec<String>> =
        std::env::var("ROOMDAG_RUMA_VERSIONS").ok().map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let versions: Vec<&'static str> =
        VERSIONS.into_iter().filter(|v| only.as_ref().is_none_or(|o| o.iter().any(|x| x == v))).collect();

    let start = Instant::now();
    let queue = Mutex::new(versions.clone());
    let results: Mutex<BTreeMap<u32, (&'static str, Result<Stats, String>, f64)>> = Mutex::new(BTreeMap::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(versions.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(v) = queue.lock().unwrap().pop() else { break };
                let t = Instant::now();
                let r = run_version(v, cases, max_events, base_seed);
                results.lock().unwrap().insert(v.parse().unwrap(), (v, r, t.elapsed().as_secs_f64()));
            });
        }
    });

    let mut total = Stats::default();
    let mut failures: Vec<String> = Vec::new();
    for (_, (v, r, secs)) in results.into_inner().unwrap() {
        match r {
            Ok(s) => {
                stderr_line(&format!("[ruma_diff] v{v:<2} ({secs:.1} s): {}", s.line()));
                total.add(&s);
            }
            Err(report) => {
                stderr_line(&format!("[ruma_diff] v{v:<2} ({secs:.1} s): FAILED"));
                failures.push(report);
            }
        }
    }
    stderr_line(&format!(
        "[ruma_diff] ruma-state-res 0.18, v{}, {cases} cases/version, n ≤ {max_events}, {:.1} s: {}",
        versions.join("/v"),
        start.elapsed().as_secs_f64(),
        total.line()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
