"""Generate tests/data/server_acl.json.

Every verdict is Synapse's: the ACL content goes through
synapse.storage.controllers.state.server_acl_evaluator_from_event (which
drops non-string entries, non-list lists and a non-boolean
allow_ip_literals) and the Rust ServerAclEvaluator.server_matches_acl_event,
given the server name without its port (synapse.util.stringutils.
parse_server_name), as FederationServer checks an origin.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from _common import DATA, SYNAPSE_VERSION, write_json

from synapse.storage.controllers.state import server_acl_evaluator_from_event
from synapse.util.stringutils import parse_server_name

# (name, content)
ACLS = [
    ("allow_all", {"allow": ["*"]}),
    ("empty", {}),
    ("allow_all_deny_evil", {"allow": ["*"], "deny": ["evil.example", "*.evil.example"], "allow_ip_literals": False}),
    ("allow_example_only", {"allow": ["*.example"]}),
    ("single_char_glob", {"allow": ["?.example", "bad?.org"]}),
    ("deny_wins", {"allow": ["*"], "deny": ["*"]}),
    ("ip_literals_default", {"allow": ["*"], "deny": ["10.*", "[2001:db8::1]"]}),
    ("ip_literals_not_bool", {"allow": ["*"], "allow_ip_literals": "false"}),
    ("lists_not_lists", {"allow": "*", "deny": "evil.example"}),
    ("non_string_entries", {"allow": [42, None, "a.example", ["b.example"]], "deny": [{"x": 1}]}),
    ("case_insensitive", {"allow": ["A.EXAMPLE", "*.Example"], "deny": ["EVIL.example"]}),
    ("unicode_case_folding", {"allow": ["\u212a.example", "\u017f.example", "\u00e5.example"]}),
    ("regex_characters_are_literal", {"allow": ["a+.example", "(a).example", "a[b].example", "^a.example$", "a\\.example", ".*"]}),
    ("stars_and_questions", {"allow": ["**", "*?"], "deny": ["?"]}),
    ("glob_with_port", {"allow": ["*:8448", "b.example:8448"]}),
    ("whitespace_glob", {"allow": ["  a.example", ""]}),
]

SERVERS = [
    "a.example", "A.Example", "b.example:8448", "k.example", "s.example", "evil.example",
    "x.evil.example", "bad1.org", "matrix.org", "1.2.3.4", "1.2.3.4:80", "10.0.0.1",
    "[::1]", "[2001:db8::1]:8448", "1.2.3", "localhost", "a+.example", "aa.example",
    "xn--bcher-kva.example", "a.example.", "*.example", "?.example",
]


def main() -> None:
    cases = []
    for name, content in ACLS:
        ev = server_acl_evaluator_from_event(SimpleNamespace(content=content))
        for server in SERVERS:
            host = parse_server_name(server)[0]
            cases.append({"name": f"{name}/{server}", "content": content, "server": server,
                          "allowed": ev.server_matches_acl_event(host)})
    write_json(os.path.join(DATA, "server_acl.json"), {
        "provenance": f"Synapse {SYNAPSE_VERSION}: server_acl_evaluator_from_event + "
                      "ServerAclEvaluator.server_matches_acl_event on the server name without port "
                      "(tests/data/gen/server_acl.py)",
        "cases": cases,
    })


if __name__ == "__main__":
    main()
