//! Server access control lists (`m.room.server_acl`; spec: server-server
//! API, "Server Access Control Lists").
//!
//! > the server name (without port) is matched case-insensitively against
//! > the `deny` globs, then the `allow` globs; anything not allowed is denied.
//! > IP literals are denied unless `allow_ip_literals` is true (default).

use serde_json::{Map, Value};

use crate::ids::split_host_port;

/// A parsed `m.room.server_acl` content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAcl {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_ip_literals: bool,
}

impl ServerAcl {
    /// Reads the content (entries that are not strings are ignored).
    pub fn from_content(content: &Map<String, Value>) -> Self {
        let list = |k: &str| -> Vec<String> {
            content
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(fold).collect())
                .unwrap_or_default()
        };
        Self {
            allow: list("allow"),
            deny: list("deny"),
            allow_ip_literals: content.get("allow_ip_literals").and_then(Value::as_bool).unwrap_or(true),
        }
    }

    /// Whether `server` (a server name, with or without port) may take part.
    pub fn allows(&self, server: &str) -> bool {
        let host = fold(split_host_port(server).0);
        if !self.allow_ip_literals && is_ip_literal(&host) {
            return false;
        }
        if self.deny.iter().any(|g| glob_match(g, &host)) {
            return false;
        }
        self.allow.iter().any(|g| glob_match(g, &host))
    }
}

/// Case folding for matching: Synapse compiles the globs into
/// case-insensitive regular expressions (Unicode simple case folding).
/// Server names are ASCII, and the only other characters that fold to an
/// ASCII letter are U+212A KELVIN SIGN (`k`) and U+017F LONG S (`s`).
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{17F}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Matrix globs: `*` matches any run of characters, `?` exactly one.
/// Iterative (two-pointer backtracking), linear in practice.
pub fn glob_match(glob: &str, s: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A `*` in the glob is always the wildcard, even against a `*` in the text.
        if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == '*' {
        gi += 1;
    }
    gi == g.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything.example"));
        assert!(glob_match("*.evil.example", "a.b.evil.example"));
        assert!(!glob_match("*.evil.example", "evil.example"));
        assert!(glob_match("?.example", "a.example"));
        assert!(!glob_match("?.example", "ab.example"));
    }

    #[test]
    fn acl_rules() {
        let acl = ServerAcl::from_content(
            json!({"allow": ["*"], "deny": ["*.Evil.example", "bad.example"], "allow_ip_literals": false})
                .as_object()
                .unwrap(),
        );
        assert!(acl.allows("good.example:8448"));
        assert!(!acl.allows("BAD.example"));
        assert!(!acl.allows("x.evil.example"));
        assert!(!acl.allows("1.2.3.4"));
        assert!(!acl.allows("[::1]:80"));
        let empty = ServerAcl::from_content(json!({}).as_object().unwrap());
        assert!(!empty.allows("good.example"), "default deny");
    }
}
