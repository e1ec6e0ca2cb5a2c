//! The PATCH engine: an arbitrary JSON body through `parse_patch_request`, then
//! `apply_patch` on a stored user and a stored group. A failed patch must leave the document
//! untouched and be the client's fault (4xx); a successful one must leave a document in
//! stored (`normalize_resource`) form and report changes only when there were some.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_relay::scim::patch::{apply_patch, parse_patch_request};
use scim_relay::scim::schema::normalize_resource;
use scim_relay::scim::ResourceKind;
use serde_json::{json, Value};

/// Stored documents as the store keeps them: what `normalize_resource` made of a POST body
/// (a group's members live in their own table, so the stored group has none).
fn stored() -> &'static [(ResourceKind, Value)] {
    static STORED: OnceLock<Vec<(ResourceKind, Value)>> = OnceLock::new();
    STORED.get_or_init(|| {
        let user = json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "externalId": "00u1",
            "userName": "ann.lee@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "displayName": "Ann Lee",
            "active": true,
            "emails": [
                {"value": "ann.lee@example.com", "type": "work", "primary": true},
                {"value": "ann@home.example", "type": "home"}
            ],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
            "addresses": [{"type": "work", "locality": "Oslo", "country": "NO"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "department": "Sales",
                "manager": {"value": "0193a1b2-0000-7000-8000-000000000002"}
            }
        });
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Sales",
            "externalId": "g-1"
        });
        [(ResourceKind::User, user), (ResourceKind::Group, group)]
            .into_iter()
            .map(|(kind, doc)| {
                let doc = normalize_resource(kind, &doc).expect("sample documents are valid");
                (kind, doc)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let ops = match parse_patch_request(&body) {
        Ok(ops) => ops,
        Err(e) => {
            assert!((400..500).contains(&e.status), "{body}: parse gave {e:?}");
            return;
        }
    };
    assert!(!ops.is_empty());
    for (kind, original) in stored() {
        let mut doc = original.clone();
        match apply_patch(*kind, &mut doc, &ops) {
            Err(e) => {
                assert!(
                    (400..500).contains(&e.status),
                    "{body} on {kind:?}: a patch of a valid document failed with {e:?}"
                );
                assert_eq!(&doc, original, "a failed patch changed the document");
            }
            Ok(outcome) => {
                match normalize_resource(*kind, &doc) {
                    Ok(again) => assert_eq!(
                        again, doc,
                        "{body} on {kind:?}: the patched document is not in stored form"
                    ),
                    Err(e) => {
                        panic!("{body} on {kind:?}: patched document does not normalize: {e:?}")
                    }
                }
                if outcome.changed_paths.is_empty() {
                    assert_eq!(
                        &doc, original,
                        "{body} on {kind:?}: the document changed but no change was reported"
                    );
                }
                if doc == *original {
                    assert!(
                        outcome.changed_paths.iter().all(|p| p == "members"),
                        "{body} on {kind:?}: {:?} reported changed, but nothing did",
                        outcome.changed_paths
                    );
                }
                if *kind == ResourceKind::User {
                    assert!(outcome.members.is_empty(), "a user has no members");
                }
                let m = &outcome.members;
                if m.replace_all.is_some() {
                    assert!(m.add.is_empty() && m.remove.is_empty());
                }
                assert!(
                    m.add.iter().all(|id| !m.remove.contains(id)),
                    "{body}: an id both added and removed: {m:?}"
                );
            }
        }
    }
});
