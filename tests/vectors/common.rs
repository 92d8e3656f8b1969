//! Shared helpers: loading the data, turning a data event into a PDU, reading
//! states as `"type\u{0}state_key" → event_id` maps, and the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use roomdag::state_set::{StateMap, StateSetId};
use roomdag::{Outcome, Room};
use serde_json::{Map, Value};

/// `tests/data/`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Parses one data file (relative to `tests/data/`).
pub fn load(relative: &str) -> Value {
    let path = data_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every `*.json` file in a data subdirectory, sorted by name.
pub fn json_files(relative_dir: &str) -> Vec<PathBuf> {
    let dir = data_dir().join(relative_dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no data files in {}", dir.display());
    files
}

/// The `cases` (or other named) array of a data file.
pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_else(|| panic!("no array {key:?}"))
}

/// A string field.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// A JSON object.
pub fn obj(v: &Value) -> &Map<String, Value> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}"))
}

/// A data event as the PDU a server would receive: the `event_id` the data
/// records (the reference hash, which room v3+ PDUs must not carry) is taken
/// out and returned next to the PDU text.
pub fn pdu_of(event: &Value) -> (String, Option<String>) {
    let mut m = obj(event).clone();
    let id = m.remove("event_id").and_then(|v| v.as_str().map(str::to_owned));
    (Value::Object(m).to_string(), id)
}

/// A stored state as `"type\u{0}state_key" → event_id`.
pub fn state_map(room: &Room, id: StateSetId) -> BTreeMap<String, String> {
    named_map(room, room.state(id).unwrap())
}

/// Any state map of the room as `"type\u{0}state_key" → event_id`.
pub fn named_map(room: &Room, map: &StateMap) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, e)| {
            let (t, s) = room.key_name(k);
            (format!("{t}\u{0}{s}"), room.id(e).unwrap().to_owned())
        })
        .collect()
}

/// A data state map (`{"type\u{0}state_key": event_id}`).
pub fn expected_map(v: &Value) -> BTreeMap<String, String> {
    obj(v).iter().map(|(k, e)| (k.clone(), e.as_str().expect("event ID").to_owned())).collect()
}

/// The differences between two state maps, one line per key, with readable
/// labels for event IDs when the data has them.
pub fn map_diff(
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
    labels: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    keys.into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or_else(|| "(absent)".to_owned(), |e| labels(e));
            format!("{}: Synapse {} / roomdag {}", k.replace('\u{0}', "|"), show(want.get(k)), show(got.get(k)))
        })
        .collect()
}

/// A short description of an outcome.
pub fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Accepted { event_id, .. } => format!("accepted ({event_id})"),
        Outcome::Rejected { event_id, reason, .. } => format!("rejected ({event_id}): {reason}"),
        Outcome::Dropped { event_id, stage, reason } => {
            format!("dropped at {stage:?} ({}): {reason}", event_id.as_ref().map_or("no id", |e| e.as_str()))
        }
        Outcome::Duplicate { event_id } => format!("duplicate ({event_id})"),
        Outcome::Deferred { event_id } => format!("deferred ({event_id})"),
    }
}

/// Collects mismatches per case and fails once at the end.
pub struct Report {
    area: &'static str,
    checked: Vec<String>,
    failures: BTreeMap<String, Vec<String>>,
}

impl Report {
    /// A report for one data area.
    pub fn new(area: &'static str) -> Self {
        Self { area, checked: Vec::new(), failures: BTreeMap::new() }
    }

    /// Records that a case was checked (call once per case).
    pub fn case(&mut self, name: &str) {
        self.checked.push(name.to_owned());
    }

    /// Records a mismatch for a case.
    pub fn fail(&mut self, name: &str, msg: impl Into<String>) {
        self.failures.entry(name.to_owned()).or_default().push(msg.into());
    }

    /// Records a mismatch when `got != want`.
    pub fn check_eq<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, what: &str, got: T, want: T) {
        if got != want {
            self.fail(name, format!("{what}: Synapse {want:?} / roomdag {got:?}"));
        }
    }

    /// Records a mismatch when two JSON values differ (printed canonically).
    pub fn check_json(&mut self, name: &str, what: &str, got: &Value, want: &Value) {
        if got != want {
            let show = roomdag::canonical_json::to_canonical_string;
            self.fail(name, format!("{what}:\n      Synapse {}\n      roomdag {}", show(want), show(got)));
        }
    }

    /// Fails unless the failing cases are exactly `known` (each known
    /// difference must still fail, so a fixed one has to leave the list).
    pub fn finish(self, known: &[&str]) {
        let checked: BTreeSet<&str> = self.checked.iter().map(String::as_str).collect();
        assert_eq!(checked.len(), self.checked.len(), "{}: duplicate case names", self.area);
        let mut problems: Vec<String> = Vec::new();
        for k in known {
            if !checked.contains(k) {
                problems.push(format!("KNOWN_DIFFERENCES names {k:?}, which is not a case of this area"));
            } else if !self.failures.contains_key(*k) {
                problems.push(format!("{k}: listed in KNOWN_DIFFERENCES but now matches Synapse: remove it"));
            }
        }
        for (case, msgs) in &self.failures {
            let tag = if known.contains(&case.as_str()) { "known difference" } else { "MISMATCH" };
            eprintln!("[{}] {tag} {case}:\n    {}", self.area, msgs.join("\n    "));
            if !known.contains(&case.as_str()) {
                problems.push(format!("{case}:\n    {}", msgs.join("\n    ")));
            }
        }
        eprintln!(
            "[{}] {} cases checked, {} match Synapse, {} known differences",
            self.area,
            self.checked.len(),
            self.checked.len() - self.failures.len(),
            self.failures.keys().filter(|c| known.contains(&c.as_str())).count()
        );
        assert!(
            problems.is_empty(),
            "{}: {} problem(s) out of {} cases:\n{}",
            self.area,
            problems.len(),
            self.checked.len(),
            problems.join("\n")
        );
    }
}
