//! `tests/data/server_acl.json`: whether a server name passes an
//! `m.room.server_acl`, as Synapse's evaluator decides.

use roomdag::http::acl::ServerAcl;

use super::common::{array, load, obj, str_of};

#[test]
fn server_acl_matches_synapse() {
    let data = load("server_acl.json");
    let mut differ = Vec::new();
    for case in array(&data, "cases") {
        let acl = ServerAcl::from_content(obj(&case["content"]));
        let got = acl.allows(str_of(case, "server"));
        if Some(got) != case["allowed"].as_bool() {
            differ.push(format!("{}: synapse {}, roomdag {got}", str_of(case, "name"), case["allowed"]));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        array(&data, "cases").len(),
        differ.join("\n")
    );
}
