//! `canonical_json.json`: strict (room v6+) and lenient (v1–v5) canonical JSON.
//!
//! The engine parses JSON with `serde_json` (as `pdu::parse_pdu` does) and then
//! validates / encodes the `Value`, so each case is: parse the input text,
//! then check `validate_strict` and `to_canonical_string` against Synapse.

use roomdag::canonical_json::{to_canonical_string, validate_strict};
use serde_json::Value;

use super::common::{array, load, str_of, Report};

/// Cases where roomdag is known to disagree with Synapse. Both come from
/// `serde_json::Value` (no `arbitrary_precision`) losing the number's text:
/// - `float_negative_zero_rejected`: `-0.0` parses like the integer `-0`, so
///   strict mode (v6+) accepts it (Synapse: "Bad JSON value: float") and
///   lenient mode (v3–v5) writes `0` (Synapse: `-0.0`).
/// - `int_2_pow_64_rejected`: integers outside i64/u64 become floats, so
///   lenient mode writes `1.8446744073709552e+19` (Synapse: the exact integer).
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn canonical_json_matches_synapse() {
    let data = load("canonical_json.json");
    let mut report = Report::new("canonical_json");
    for case in array(&data, "cases") {
        let name = str_of(case, "name");
        report.case(name);
        let input = str_of(case, "input");
        let lenient_ok = case["lenient_ok"].as_bool().expect("lenient_ok");
        let strict_ok = case["strict_ok"].as_bool().expect("strict_ok");
        let parsed = serde_json::from_str::<Value>(input);
        if !lenient_ok {
            // Synapse refuses it in every room version; ours must not parse.
            if let Ok(v) = parsed {
                report.fail(name, format!("Synapse refuses the input; roomdag parses it as {v}"));
            }
            continue;
        }
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                report.fail(name, format!("Synapse accepts the input; roomdag cannot parse it: {e}"));
                continue;
            }
        };
        let canonical = to_canonical_string(&value);
        // Strict mode (v6+): validity, then the output.
        report.check_eq(name, "strict validity", validate_strict(&value).is_ok(), strict_ok);
        if strict_ok {
            report.check_eq(name, "strict output", canonical.as_str(), str_of(case, "canonical"));
        }
        // Lenient mode (v1–v5): the same encoder, floats in Python repr.
        report.check_eq(name, "lenient output", canonical.as_str(), str_of(case, "lenient_canonical"));
    }
    report.finish(KNOWN_DIFFERENCES);
}
