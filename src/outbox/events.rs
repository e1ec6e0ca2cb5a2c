//! Events: what changed, derived from a resource's state before and after a write.
//!
//! Owns: the event types, turning (before, after) into events, and each event's JSON
//! envelope (the exact body a webhook receives). Pure: no SQL, no clock beyond the `time`
//! passed in.

use serde_json::{json, Value};

use crate::scim::patch::changed_attributes;
use crate::scim::resource::Record;
use crate::scim::ResourceKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserCreated,
    UserUpdated,
    UserDeactivated,
    UserReactivated,
    UserDeleted,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    GroupMembersAdded,
    GroupMembersRemoved,
}

pub const ALL_EVENT_TYPES: [EventType; 10] = [
    EventType::UserCreated,
    EventType::UserUpdated,
    EventType::UserDeactivated,
    EventType::UserReactivated,
    EventType::UserDeleted,
    EventType::GroupCreated,
    EventType::GroupUpdated,
    EventType::GroupDeleted,
    EventType::GroupMembersAdded,
    EventType::GroupMembersRemoved,
];

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "user.created",
            EventType::UserUpdated => "user.updated",
            EventType::UserDeactivated => "user.deactivated",
            EventType::UserReactivated => "user.reactivated",
            EventType::UserDeleted => "user.deleted",
            EventType::GroupCreated => "group.created",
            EventType::GroupUpdated => "group.updated",
            EventType::GroupDeleted => "group.deleted",
            EventType::GroupMembersAdded => "group.members_added",
            EventType::GroupMembersRemoved => "group.members_removed",
        }
    }
}

/// Whether an event-type pattern (`user.*`, `*`, `group.members_added`) matches a type.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Whether a pattern matches at least one event type (a typo would otherwise silently
/// deliver nothing).
pub fn event_pattern_is_valid(pattern: &str) -> bool {
    ALL_EVENT_TYPES
        .iter()
        .any(|t| pattern_matches(pattern, t.as_str()))
}

/// One event to record, with the states a connector's scope is evaluated against.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub kind: ResourceKind,
    pub resource_id: String,
    /// Attribute paths that changed (`*.updated`); member ids (`group.members_*`).
    pub changed: Vec<String>,
    pub members: Vec<String>,
    /// The resource's SCIM representation after the change (before it, for deletions).
    pub snapshot: Value,
    /// The user as it was before and after (for scope checks); `None` where it did not exist.
    pub scope_before: Option<Value>,
    pub scope_after: Option<Value>,
}

impl NewEvent {
    /// The envelope a consumer receives; `id` is the event id, `time` RFC 3339.
    pub fn envelope(&self, id: &str, time: &str) -> Value {
        let mut data = json!({
            "resourceType": self.kind.name(),
            "id": self.resource_id,
            "resource": self.snapshot,
        });
        if let Some(obj) = data.as_object_mut() {
            if !self.changed.is_empty() {
                obj.insert("changed".into(), json!(self.changed));
            }
            if !self.members.is_empty() {
                obj.insert("members".into(), json!(self.members));
            }
        }
        json!({
            "id": id,
            "type": self.event_type.as_str(),
            "timestamp": time,
            "data": data,
        })
    }
}

fn active(record: &Record) -> bool {
    record
        .doc
        .get("active")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The events of a user write: created, deleted, or any of deactivated / reactivated /
/// updated (a change of `active` plus other attributes gives two events). `with_scope`
/// keeps the before and after states on each event, for connectors that have a scope.
pub fn user_events(
    before: Option<&Record>,
    after: Option<&Record>,
    base_url: &str,
    with_scope: bool,
) -> Vec<NewEvent> {
    // Each state is rendered once; every event and scope check shares it.
    let rendered_before = before.map(|r| r.to_scim(base_url));
    let rendered_after = after.map(|r| r.to_scim(base_url));
    let event = |event_type, id: &str, snapshot: &Option<Value>, changed: Vec<String>| NewEvent {
        event_type,
        kind: ResourceKind::User,
        resource_id: id.to_string(),
        changed,
        members: Vec::new(),
        snapshot: snapshot.clone().unwrap_or(Value::Null),
        scope_before: rendered_before.clone().filter(|_| with_scope),
        scope_after: rendered_after.clone().filter(|_| with_scope),
    };
    match (before, after) {
        (None, Some(a)) => vec![event(
            EventType::UserCreated,
            &a.id,
            &rendered_after,
            Vec::new(),
        )],
        (Some(b), None) => vec![event(
            EventType::UserDeleted,
            &b.id,
            &rendered_before,
            Vec::new(),
        )],
        (Some(b), Some(a)) => {
            let mut changed = changed_attributes(ResourceKind::User, &b.doc, &a.doc);
            let mut out = Vec::new();
            match (active(b), active(a)) {
                (true, false) => out.push(event(
                    EventType::UserDeactivated,
                    &a.id,
                    &rendered_after,
                    Vec::new(),
                )),
                (false, true) => out.push(event(
                    EventType::UserReactivated,
                    &a.id,
                    &rendered_after,
                    Vec::new(),
                )),
                _ => {}
            }
            changed.retain(|p| p != "active");
            if !changed.is_empty() {
                out.push(event(
                    EventType::UserUpdated,
                    &a.id,
                    &rendered_after,
                    changed,
                ));
            }
            out
        }
        (None, None) => Vec::new(),
    }
}

/// The events of a group write; `added` / `removed` are the member ids whose membership
/// really changed.
pub fn group_events(
    before: Option<&Record>,
    after: Option<&Record>,
    added: &[String],
    removed: &[String],
    base_url: &str,
) -> Vec<NewEvent> {
    let event = |event_type, record: &Record, changed: Vec<String>, members: &[String]| NewEvent {
        event_type,
        kind: ResourceKind::Group,
        resource_id: record.id.clone(),
        changed,
        members: members.to_vec(),
        // Members are carried by members_* events, not by every snapshot of a large group.
        snapshot: Record {
            members: None,
            ..record.clone()
        }
        .to_scim(base_url),
        scope_before: None,
        scope_after: None,
    };
    let mut out = Vec::new();
    match (before, after) {
        (None, Some(a)) => out.push(event(EventType::GroupCreated, a, Vec::new(), &[])),
        (Some(b), None) => {
            // The former members: their membership ended with the group.
            out.push(event(EventType::GroupDeleted, b, Vec::new(), removed));
            return out;
        }
        (Some(b), Some(a)) => {
            let changed = changed_attributes(ResourceKind::Group, &b.doc, &a.doc);
            if !changed.is_empty() {
                out.push(event(EventType::GroupUpdated, a, changed, &[]));
            }
        }
        (None, None) => return out,
    }
    if let Some(a) = after {
        if !added.is_empty() {
            out.push(event(EventType::GroupMembersAdded, a, Vec::new(), added));
        }
        if !removed.is_empty() {
            out.push(event(
                EventType::GroupMembersRemoved,
                a,
                Vec::new(),
                removed,
            ));
        }
    }
    out
}

/// A deleted user leaves every group it was in: one `group.members_removed` per group.
pub fn memberships_ended(user: &Record, groups: &[Record], base_url: &str) -> Vec<NewEvent> {
    groups
        .iter()
        .flat_map(|g| {
            group_events(
                Some(g),
                Some(g),
                &[],
                std::slice::from_ref(&user.id),
                base_url,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(version: i64, doc: Value) -> Record {
        Record {
            kind: ResourceKind::User,
            id: "u1".into(),
            doc,
            version,
            created: "t0".into(),
            last_modified: "t1".into(),
            groups: Vec::new(),
            members: None,
        }
    }

    fn types(events: &[NewEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    #[test]
    fn patterns_match_prefixes_and_reject_typos() {
        assert!(pattern_matches("user.*", "user.created"));
        assert!(pattern_matches("*", "group.deleted"));
        assert!(pattern_matches("group.members_*", "group.members_added"));
        assert!(!pattern_matches("user.*", "group.created"));
        assert!(event_pattern_is_valid("group.members_*"));
        assert!(!event_pattern_is_valid("users.*"));
        assert!(!event_pattern_is_valid("user.create"));
    }

    #[test]
    fn user_changes_become_typed_events() {
        let b = user(1, json!({"userName": "a", "active": true, "title": "x"}));
        let created = user_events(None, Some(&b), "http://h", true);
        assert_eq!(types(&created), ["user.created"]);
        assert_eq!(created[0].snapshot["meta"]["location"], "http://h/Users/u1");

        let a = user(2, json!({"userName": "a", "active": false, "title": "y"}));
        let ev = user_events(Some(&b), Some(&a), "", true);
        assert_eq!(types(&ev), ["user.deactivated", "user.updated"]);
        assert_eq!(ev[1].changed, ["title"]);
        assert!(ev[1].scope_before.is_some() && ev[1].scope_after.is_some());

        let ev = user_events(Some(&a), Some(&b), "", true);
        assert_eq!(types(&ev), ["user.reactivated", "user.updated"]);
        let same = user_events(Some(&a), Some(&a), "", true);
        assert!(same.is_empty());
        assert_eq!(
            types(&user_events(Some(&a), None, "", false)),
            ["user.deleted"]
        );
    }

    #[test]
    fn group_changes_and_memberships() {
        let g = Record {
            kind: ResourceKind::Group,
            id: "g1".into(),
            doc: json!({"displayName": "Sales"}),
            version: 1,
            created: "t0".into(),
            last_modified: "t0".into(),
            groups: Vec::new(),
            members: None,
        };
        let renamed = Record {
            doc: json!({"displayName": "Sales EU"}),
            ..g.clone()
        };
        let ev = group_events(Some(&g), Some(&renamed), &["u1".into()], &["u2".into()], "");
        assert_eq!(
            types(&ev),
            [
                "group.updated",
                "group.members_added",
                "group.members_removed"
            ]
        );
        assert_eq!(ev[1].members, ["u1"]);
        let env = ev[1].envelope("evt_1", "2026-01-01T00:00:00Z");
        assert_eq!(env["type"], "group.members_added");
        assert_eq!(env["data"]["members"], json!(["u1"]));
        assert_eq!(env["data"]["resourceType"], "Group");
        assert_eq!(
            types(&group_events(None, Some(&g), &[], &[], "")),
            ["group.created"]
        );
        assert_eq!(
            types(&group_events(Some(&g), None, &[], &[], "")),
            ["group.deleted"]
        );
    }
}
