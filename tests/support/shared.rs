//! Where the public test material lives: `$ROOMDAG_SHARED/<kind>`, else
//! `../shared/<kind>` when it exists, else the project's own copy in
//! `tests/shared/<kind>` (see `tests/shared/README.md`).

use std::path::{Path, PathBuf};

/// The directory of one kind of shared material (`fixtures`, `oracle`).
pub fn shared_dir(kind: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ROOMDAG_SHARED") {
        return PathBuf::from(dir).join(kind);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let steering = root.join("../shared").join(kind);
    if steering.is_dir() {
        steering
    } else {
        root.join("tests/shared").join(kind)
    }
}

/// The Synapse-judged fixtures: `$ROOMDAG_FIXTURES`, else [`shared_dir`]`("fixtures")`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("ROOMDAG_FIXTURES").map(PathBuf::from).unwrap_or_else(|| shared_dir("fixtures"))
}

/// The directories whose rooms the suites replay, in order of precedence:
/// `$ROOMDAG_FIXTURES` alone when set; else [`fixtures_dir`], then the
/// project's own copy (which holds rooms of its own, e.g. the feature rooms:
/// a room in both is taken from the first).
#[allow(dead_code)]
pub fn fixture_dirs() -> Vec<PathBuf> {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shared/fixtures");
    let first = fixtures_dir();
    if std::env::var_os("ROOMDAG_FIXTURES").is_some() || first == own {
        vec![first]
    } else {
        vec![first, own]
    }
}

/// A named fixture file (`NAME.json` or `NAME.json.gz`): from [`fixtures_dir`],
/// else from the project's copy (a test that names a room finds it even when
/// the fixtures directory holds other rooms).
#[allow(dead_code)]
pub fn fixture_file(name: &str) -> Option<PathBuf> {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shared/fixtures");
    [fixtures_dir(), own]
        .iter()
        .flat_map(|d| [d.join(format!("{name}.json")), d.join(format!("{name}.json.gz"))])
        .find(|p| p.exists())
}

/// Every room fixture with queries and expected answers, from
/// [`fixture_dirs`] (a room in two directories is taken from the first),
/// sorted by name: (name, room, queries, expected).
#[allow(dead_code)]
pub fn fixture_rooms() -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    let mut out: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
    for dir in fixture_dirs() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
            let Some(name) = file.strip_suffix(".json.gz").or_else(|| file.strip_suffix(".json")) else { continue };
            if name.ends_with(".expected") || name.ends_with(".queries") || out.iter().any(|(n, ..)| n == name) {
                continue;
            }
            let ext = if file.ends_with(".gz") { ".json.gz" } else { ".json" };
            let queries = dir.join(format!("{name}.queries{ext}"));
            let expected = dir.join(format!("{name}.expected{ext}"));
            if queries.exists() && expected.exists() {
                out.push((name.to_owned(), path, queries, expected));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no fixtures found in {:?}", fixture_dirs());
    out
}
