//! Stored resources and their SCIM representation.
//!
//! Owns: the records the store hands out (the client's document plus server-kept facts:
//! id, version, timestamps, derived `groups` / `members`) and turning them into the JSON a
//! client sees, with `meta`. Must not know how records are stored.

use serde_json::{json, Map, Value};

use super::ResourceKind;

/// A group a user belongs to, for the user's read-only `groups` attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRef {
    pub id: String,
    pub display: String,
}

/// A member of a group, with the user's display name when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRef {
    pub id: String,
    pub display: Option<String>,
}

/// One stored resource. `doc` is what the client sent (normalised), without `id`, `meta`,
/// `groups` (users) or `members` (groups): those are kept by the server and added here.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: ResourceKind,
    pub id: String,
    pub doc: Value,
    pub version: i64,
    pub created: String,
    pub last_modified: String,
    /// Users: the groups the user is a member of.
    pub groups: Vec<GroupRef>,
    /// Groups: the members, or `None` when the caller asked not to load them.
    pub members: Option<Vec<MemberRef>>,
}

impl Record {
    /// The weak ETag for `meta.version` and the `ETag` header.
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// The full SCIM representation. `base_url` is the public URL of the SCIM base path.
    pub fn to_scim(&self, base_url: &str) -> Value {
        let mut obj = match &self.doc {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        obj.insert("id".into(), Value::String(self.id.clone()));
        match self.kind {
            ResourceKind::User => {
                if !self.groups.is_empty() {
                    let groups = self
                        .groups
                        .iter()
                        .map(|g| {
                            json!({
                                "value": g.id,
                                "$ref": format!("{base_url}/Groups/{}", g.id),
                                "display": g.display,
                                "type": "direct",
                            })
                        })
                        .collect();
                    obj.insert("groups".into(), Value::Array(groups));
                }
            }
            ResourceKind::Group => {
                if let Some(members) = &self.members {
                    let members = members
                        .iter()
                        .map(|m| {
                            let mut e = json!({
                                "value": m.id,
                                "$ref": format!("{base_url}/Users/{}", m.id),
                                "type": "User",
                            });
                            if let (Some(d), Some(o)) = (&m.display, e.as_object_mut()) {
                                o.insert("display".into(), Value::String(d.clone()));
                            }
                            e
                        })
                        .collect();
                    obj.insert("members".into(), Value::Array(members));
                }
            }
        }
        obj.insert(
            "meta".into(),
            json!({
                "resourceType": self.kind.name(),
                "created": self.created,
                "lastModified": self.last_modified,
                "location": format!("{base_url}{}/{}", self.kind.endpoint(), self.id),
                "version": self.etag(),
            }),
        );
        Value::Object(obj)
    }
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` header value admits the given version (`*` admits any).
pub fn if_match_allows(header: &str, version: i64) -> bool {
    let strong = format!("\"{version}\"");
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == strong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Record {
        Record {
            kind: ResourceKind::User,
            id: "u1".into(),
            doc: json!({"schemas": [crate::scim::USER_SCHEMA], "userName": "ann"}),
            version: 3,
            created: "2026-01-01T00:00:00Z".into(),
            last_modified: "2026-01-02T00:00:00Z".into(),
            groups: vec![GroupRef {
                id: "g1".into(),
                display: "Sales".into(),
            }],
            members: None,
        }
    }

    #[test]
    fn user_representation_has_meta_and_derived_groups() {
        let v = user().to_scim("https://x.example/scim/v2");
        assert_eq!(v["id"], "u1");
        assert_eq!(v["userName"], "ann");
        assert_eq!(v["groups"][0]["value"], "g1");
        assert_eq!(v["groups"][0]["display"], "Sales");
        assert_eq!(v["meta"]["resourceType"], "User");
        assert_eq!(v["meta"]["version"], "W/\"3\"");
        assert_eq!(v["meta"]["location"], "https://x.example/scim/v2/Users/u1");
    }

    #[test]
    fn if_match_accepts_weak_strong_and_star() {
        assert!(if_match_allows("W/\"3\"", 3));
        assert!(if_match_allows("\"3\"", 3));
        assert!(if_match_allows("*", 3));
        assert!(if_match_allows("W/\"1\", W/\"3\"", 3));
        assert!(!if_match_allows("W/\"2\"", 3));
        assert!(!if_match_allows("", 3));
    }
}
