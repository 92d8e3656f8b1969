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
