//! Filter and PATCH-path grammar: arbitrary text into `parse_filter`, `parse_path` and
//! `parse_attr_path`. Whatever parses must print back (`Display`) to text that parses to the
//! same tree, and evaluating it, or asking the store's index helpers about it, must not
//! panic. Whatever does not parse must say where, within the input.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_relay::scim::filter::{parse_attr_path, parse_filter, parse_path, AttrPath, Filter};
use scim_relay::scim::{schema, ResourceKind};
use serde_json::{json, Value};

/// A user and a group shaped like the store's SCIM representation, with the attributes
/// filters reach into: sub-attributes, multi-valued elements, the enterprise extension,
/// date-times, numbers and booleans.
fn samples() -> &'static [(ResourceKind, Value)] {
    static SAMPLES: OnceLock<Vec<(ResourceKind, Value)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        vec![
            (
                ResourceKind::User,
                json!({
                    "schemas": [
                        "urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
                    ],
                    "id": "0193a1b2-0000-7000-8000-000000000001",
                    "externalId": "00u1",
                    "userName": "ann.lee@example.com",
                    "name": {"givenName": "Ann", "familyName": "Lee", "formatted": "Ann Lee"},
                    "displayName": "Ann Lee",
                    "title": "",
                    "active": true,
                    "emails": [
                        {"value": "ann.lee@example.com", "type": "work", "primary": true},
                        {"value": "ann@home.example", "type": "home"}
                    ],
                    "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
                    "roles": [],
                    "groups": [{"value": "0193a1b2-0000-7000-8000-0000000000g1", "display": "Sales"}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                        "employeeNumber": "701984",
                        "department": "Sales",
                        "manager": {"value": "0193a1b2-0000-7000-8000-000000000002"}
                    },
                    "x-count": 42,
                    "x-ratio": -0.5,
                    "x-null": null,
                    "meta": {
                        "resourceType": "User",
                        "created": "2026-11-23T12:00:00.000Z",
                        "lastModified": "2026-11-23T12:00:00.5+01:00",
                        "version": "W/\"3\""
                    }
                }),
            ),
            (
                ResourceKind::Group,
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "id": "0193a1b2-0000-7000-8000-0000000000g1",
                    "displayName": "Sales",
                    "members": [
                        {"value": "0193a1b2-0000-7000-8000-000000000001", "display": "Ann Lee"},
                        {"value": "0193a1b2-0000-7000-8000-000000000002", "type": "User"}
                    ],
                    "meta": {"resourceType": "Group", "created": "2026-11-23T12:00:00Z"}
                }),
            ),
        ]
    })
}

/// The attribute lists the store hands the index helpers.
const INDEXED: &[&str] = &[
    "userName",
    "externalId",
    "displayName",
    "members.value",
    "emails.value",
];

fn check_filter(input: &str, filter: Filter) {
    let printed = filter.to_string();
    match parse_filter(&printed) {
        Ok(again) => {
            assert_eq!(
                again, filter,
                "{input:?} printed as {printed:?} re-parses differently"
            );
            assert_eq!(
                again.to_string(),
                printed,
                "printing is not stable for {input:?}"
            );
        }
        Err(e) => panic!("{input:?} printed as {printed:?}, which does not parse: {e}"),
    }
    for (kind, resource) in samples() {
        let kind = *kind;
        let a = filter.matches(resource, &|p: &AttrPath| schema::case_exact(kind, p));
        // Case-exact everywhere takes the other string comparison branch.
        let _ = filter.matches(resource, &|_: &AttrPath| true);
        // `ne` is defined as `not (eq)`, so negation must flip the answer exactly.
        let negated = Filter::Not(Box::new(filter.clone()));
        assert_eq!(
            negated.matches(resource, &|p: &AttrPath| schema::case_exact(kind, p)),
            !a
        );
    }
    let _ = filter.equality_literals("userName");
    let _ = filter.equality_literals("members.value");
    let _ = filter.indexable_conjunct(INDEXED);
    let _ = filter.indexable_prefix(INDEXED);
    let _ = filter.eq_conjuncts();
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let chars = input.chars().count();

    match parse_filter(input) {
        Ok(filter) => check_filter(input, filter),
        Err(e) => assert!(e.position <= chars, "{input:?}: error past the end: {e:?}"),
    }

    match parse_path(input) {
        Ok(path) => {
            let printed = path.to_string();
            match parse_path(&printed) {
                Ok(again) => assert_eq!(again, path, "{input:?} printed as {printed:?}"),
                Err(e) => panic!("{input:?} printed as {printed:?}, which does not parse: {e}"),
            }
            if let Some(filter) = path.filter {
                check_filter(input, filter);
            }
        }
        Err(e) => assert!(e.position <= chars, "{input:?}: error past the end: {e:?}"),
    }

    match parse_attr_path(input) {
        Ok(path) => {
            let printed = path.to_string();
            assert_eq!(
                parse_attr_path(&printed),
                Ok(path),
                "{input:?} printed as {printed:?}"
            );
        }
        Err(e) => assert!(e.position <= chars, "{input:?}: error past the end: {e:?}"),
    }
});
