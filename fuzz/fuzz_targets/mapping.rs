//! Connector attribute mappings. An arbitrary JSON document is either a user, mapped through
//! every built-in preset (`connectors/*.toml`), or, when it is an object with a `mapping`
//! table, a mapping written in the preset grammar (plus `allowed_values` and a `user`),
//! validated with `Mapping::new` and applied. Evaluation must not panic; `diff_ops` between
//! two mapped documents must be empty for equal ones and otherwise a valid PatchOp request
//! whose paths parse.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_relay::config::PRESETS;
use scim_relay::connector::mapping::{diff_ops, Expr, Mapping};
use scim_relay::scim::filter::parse_path;
use scim_relay::scim::patch::parse_patch_request;
use scim_relay::scim::PATCH_OP_SCHEMA;
use serde_json::{json, Value};

/// A user as the store renders it (`Record::to_scim`), groups included.
fn sample_user() -> &'static Value {
    static USER: OnceLock<Value> = OnceLock::new();
    USER.get_or_init(|| {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "id": "0193a1b2-0000-7000-8000-000000000001",
            "externalId": "00u1",
            "userName": "ann.lee@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "displayName": "Ann Lee",
            "title": "Advisor",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "ann.lee@example.com", "type": "work", "primary": true},
                {"value": "ann@home.example", "type": "home"}
            ],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
            "groups": [{"value": "0193a1b2-0000-7000-8000-0000000000g1", "display": "Sales"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "department": "Sales",
                "costCenter": "4130",
                "manager": {"value": "0193a1b2-0000-7000-8000-000000000002"}
            },
            "meta": {"resourceType": "User", "created": "2026-11-23T12:00:00.000Z"}
        })
    })
}

/// The mapping of every built-in preset, built the way a SCIM connector builds its own.
fn presets() -> &'static [(&'static str, Mapping)] {
    static MAPPINGS: OnceLock<Vec<(&'static str, Mapping)>> = OnceLock::new();
    MAPPINGS.get_or_init(|| {
        PRESETS
            .iter()
            .map(|(name, text)| {
                let table: toml::Table = toml::from_str(text).expect("preset parses");
                let targets: BTreeMap<String, Expr> = match table.get("mapping") {
                    Some(m) => m.clone().try_into().expect("preset mapping deserialises"),
                    None => BTreeMap::new(),
                };
                let allowed: BTreeMap<String, Vec<String>> = match table.get("allowed_values") {
                    Some(a) => a
                        .clone()
                        .try_into()
                        .expect("preset allowed_values deserialise"),
                    None => BTreeMap::new(),
                };
                let mapping = Mapping::new(&targets, &allowed).expect("preset mapping is valid");
                (*name, mapping)
            })
            .collect()
    })
}

/// `diff_ops` output is sent to the target as-is: it must be a request the gateway itself
/// would accept, with paths that parse.
fn check_diff(before: &Value, after: &Value) {
    assert!(
        diff_ops(before, before).is_empty(),
        "a document differs from itself: {before}"
    );
    let ops = diff_ops(before, after);
    if ops.is_empty() {
        return;
    }
    for op in &ops {
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .expect("every op has a path");
        if let Err(e) = parse_path(path) {
            panic!("diff_ops({before}, {after}) gave path {path:?}, which does not parse: {e}");
        }
    }
    let request = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
    if let Err(e) = parse_patch_request(&request) {
        panic!("diff_ops({before}, {after}) gave an invalid PATCH request {request}: {e:?}");
    }
}

fn run(mapping: &Mapping, users: &[&Value]) {
    let mapped: Vec<Value> = users
        .iter()
        .filter_map(|user| {
            let first = mapping.apply(user);
            assert_eq!(first, mapping.apply(user), "apply is not deterministic");
            first.ok()
        })
        .collect();
    for (i, a) in mapped.iter().enumerate() {
        for b in mapped.iter().skip(i) {
            check_diff(a, b);
            check_diff(b, a);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let custom = input
        .get("mapping")
        .filter(|m| m.is_object())
        .map(|m| serde_json::from_value::<BTreeMap<String, Expr>>(m.clone()));
    match custom {
        Some(Ok(targets)) => {
            for expr in targets.values() {
                let _ = expr.eval(sample_user());
            }
            let allowed = input
                .get("allowed_values")
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default();
            let Ok(mapping) = Mapping::new(&targets, &allowed) else {
                return;
            };
            let user = input.get("user").unwrap_or(&Value::Null);
            for expr in targets.values() {
                let _ = expr.eval(user);
            }
            run(&mapping, &[sample_user(), user]);
        }
        Some(Err(_)) => {}
        None => {
            for (_, mapping) in presets() {
                run(mapping, &[sample_user(), &input]);
            }
        }
    }
});
