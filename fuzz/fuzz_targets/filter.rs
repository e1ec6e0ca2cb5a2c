//! Filter and PATCH-path grammar: arbitrary text into `parse_filter`, `parse_path` and
//! `parse_attr_path`. Whatever parses must print back (`Display`) to text that parses to the
//! same tree; evaluating it on sample resources (and on a resource the input may carry after
//! a NUL byte) must not panic, `not` must flip the answer, and every resource it matches
//! must be one the store's index narrowing would keep. Whatever does not parse must say
//! where, within the input.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_relay::scim::filter::{
    lookup, parse_attr_path, parse_filter, parse_path, AttrPath, Filter,
};
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

/// The store's indexes per kind: the attribute as the index helpers name it, and whether
/// the indexed column holds the value lowercased (`USER_INDEXES` / `GROUP_INDEXES` in
/// src/store/resources.rs).
fn indexes(kind: ResourceKind) -> &'static [(&'static str, bool)] {
    match kind {
        ResourceKind::User => &[("id", false), ("userName", true), ("externalId", false)],
        ResourceKind::Group => &[("id", false), ("displayName", true), ("externalId", false)],
    }
}

/// The store narrows a filtered list to the rows an `eq` (else `sw`) conjunct finds in an
/// index, then evaluates the whole filter on those. That is only right if every resource
/// the filter matches is among them.
fn check_index_narrowing(filter: &Filter, kind: ResourceKind, resource: &Value, matched: bool) {
    if !matched {
        return;
    }
    let table = indexes(kind);
    let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
    let (attr, literal, prefix) = match filter.indexable_conjunct(&names) {
        Some((attr, lit)) => (attr, lit, false),
        None => match filter.indexable_prefix(&names) {
            Some((attr, lit)) => (attr, lit, true),
            None => return,
        },
    };
    let Some((name, lowercased)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(&attr)) else {
        panic!("index helper named {attr:?}, which is not one of {names:?}");
    };
    let Some(literal) = literal.as_str() else {
        return;
    };
    // The store holds one string per row; a resource with anything else cannot be stored.
    let values = lookup(resource, &AttrPath::new(*name));
    let [Value::String(stored)] = values.as_slice() else {
        return;
    };
    let fold = |s: &str| {
        if *lowercased {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let (stored, key) = (fold(stored), fold(literal));
    let found = if prefix {
        stored.starts_with(&key)
    } else {
        stored == key
    };
    assert!(
        found,
        "{filter} matches {resource} but the {name} index (key {key:?}, prefix: {prefix}) \
         would not return it"
    );
}

fn check_filter(input: &str, filter: Filter, extra: Option<&Value>) {
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
    let extra = extra
        .into_iter()
        .flat_map(|r| [(ResourceKind::User, r), (ResourceKind::Group, r)]);
    for (kind, resource) in samples().iter().map(|(k, r)| (*k, r)).chain(extra) {
        let matched = filter.matches(resource, &|p: &AttrPath| schema::case_exact(kind, p));
        // Case-exact everywhere takes the other string comparison branch.
        let _ = filter.matches(resource, &|_: &AttrPath| true);
        // `ne` is defined as `not (eq)`, so negation must flip the answer exactly.
        let negated = Filter::Not(Box::new(filter.clone()));
        assert_eq!(
            negated.matches(resource, &|p: &AttrPath| schema::case_exact(kind, p)),
            !matched
        );
        check_index_narrowing(&filter, kind, resource, matched);
    }
    let _ = filter.equality_literals("userName");
    let _ = filter.equality_literals("members.value");
    let _ = filter.eq_conjuncts();
}

// An input is filter text, optionally followed by a NUL byte and a JSON resource to
// evaluate it on besides the samples.
fuzz_target!(|data: &[u8]| {
    let (text, resource) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            &data[..i],
            serde_json::from_slice::<Value>(&data[i + 1..]).ok(),
        ),
        None => (data, None),
    };
    let Ok(input) = std::str::from_utf8(text) else {
        return;
    };
    let chars = input.chars().count();

    match parse_filter(input) {
        Ok(filter) => check_filter(input, filter, resource.as_ref()),
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
                check_filter(input, filter, resource.as_ref());
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
