//! Users: rows with the client's document plus indexed columns (`userName` lowercased for
//! case-insensitive uniqueness, `externalId`, `displayName`, `active`).

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::resources::{attach_derived, patched, read_rows, Written};
use super::{now_rfc3339, StoreError};
use crate::scim::patch::PatchOp;
use crate::scim::resource::{GroupRef, Record};
use crate::scim::{ResourceKind, ScimError};

/// The indexed facts of a user document.
struct Columns {
    user_name_key: String,
    external_id: Option<String>,
    display_name: Option<String>,
    active: bool,
}

fn columns(doc: &Value) -> Result<Columns, StoreError> {
    let user_name = doc
        .get("userName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    Ok(Columns {
        user_name_key: user_name_key(user_name),
        external_id: doc
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_string),
        display_name: doc
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        // RFC 7643 leaves the default open; an account the IdP sent without `active` is in use.
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// The comparison key for `userName`, which SCIM treats as case-insensitive.
pub fn user_name_key(user_name: &str) -> String {
    user_name.to_lowercase()
}

fn ensure_user_name_free(
    conn: &Connection,
    key: &str,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let holder: Option<String> = conn
        .prepare_cached("SELECT id FROM users WHERE user_name_key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    match holder {
        Some(id) if Some(id.as_str()) != except_id => Err(ScimError::uniqueness(
            "userName is already taken by another user (compared case-insensitively)",
        )
        .into()),
        _ => Ok(()),
    }
}

pub(super) fn insert(conn: &Connection, doc: Value) -> Result<Written, StoreError> {
    let cols = columns(&doc)?;
    ensure_user_name_free(conn, &cols.user_name_key, None)?;
    // Time-ordered ids append to the primary-key index instead of rewriting random pages.
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_rfc3339();
    conn.prepare_cached(
        "INSERT INTO users (id, user_name_key, external_id, display_name, active, doc, version, created, last_modified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
    )?
    .execute(params![
        id,
        cols.user_name_key,
        cols.external_id,
        cols.display_name,
        cols.active,
        serde_json::to_string(&doc)?,
        now
    ])?;
    Ok(Written::created(Record {
        kind: ResourceKind::User,
        id,
        doc,
        version: 1,
        created: now.clone(),
        last_modified: now,
        groups: Vec::new(),
        members: None,
    }))
}

/// Loads a user with its derived `groups`.
pub(super) fn load(conn: &Connection, id: &str) -> Result<Option<Record>, StoreError> {
    let Some(mut record) = read_rows(conn, ResourceKind::User, "WHERE id = ?1", [id])?.pop() else {
        return Ok(None);
    };
    attach_derived(conn, &mut record, false)?;
    Ok(Some(record))
}

pub(super) fn groups_of(conn: &Connection, user_id: &str) -> Result<Vec<GroupRef>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.id, g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.user_id = ?1 ORDER BY g.display_name_key, g.id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(GroupRef {
            id: r.get(0)?,
            display: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn load_existing(
    conn: &Connection,
    id: &str,
    if_match: Option<&str>,
) -> Result<Record, StoreError> {
    let current =
        load(conn, id)?.ok_or_else(|| ScimError::not_found(format!("User {id} not found")))?;
    super::check_if_match(&current, if_match)?;
    Ok(current)
}

fn update(conn: &Connection, mut current: Record, doc: Value) -> Result<Record, StoreError> {
    let cols = columns(&doc)?;
    ensure_user_name_free(conn, &cols.user_name_key, Some(&current.id))?;
    let now = now_rfc3339();
    current.version += 1;
    conn.prepare_cached(
        "UPDATE users SET user_name_key = ?2, external_id = ?3, display_name = ?4, active = ?5,
         doc = ?6, version = ?7, last_modified = ?8 WHERE id = ?1",
    )?
    .execute(params![
        current.id,
        cols.user_name_key,
        cols.external_id,
        cols.display_name,
        cols.active,
        serde_json::to_string(&doc)?,
        current.version,
        now
    ])?;
    current.doc = doc;
    current.last_modified = now;
    Ok(current)
}

pub(super) fn replace(
    conn: &Connection,
    id: &str,
    doc: Value,
    if_match: Option<&str>,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    let after = if current.doc == doc {
        current.clone()
    } else {
        update(conn, current.clone(), doc)?
    };
    Ok(Written::updated(current, after))
}

pub(super) fn patch(
    conn: &Connection,
    id: &str,
    ops: &[PatchOp],
    if_match: Option<&str>,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    let (doc, outcome) = patched(&current, ops)?;
    let after = if outcome.changed_paths.is_empty() {
        current.clone()
    } else {
        update(conn, current.clone(), doc)?
    };
    Ok(Written::updated(current, after))
}

pub(super) fn delete(
    conn: &Connection,
    id: &str,
    if_match: Option<&str>,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([id])?;
    Ok(Written::deleted(current))
}
