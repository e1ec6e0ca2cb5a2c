//! Groups: the client's document without `members`, which live in `group_members` so that a
//! group of 100,000 users can gain one member without rewriting the rest.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};
use serde_json::Value;

use super::resources::{attach_derived, read_rows};
use super::{now_rfc3339, StoreError};
use crate::scim::patch::{apply_patch, PatchOp};
use crate::scim::resource::{MemberRef, Record};
use crate::scim::{ResourceKind, ScimError};

struct Columns {
    display_name: String,
    external_id: Option<String>,
}

fn columns(doc: &Value) -> Result<Columns, StoreError> {
    let display_name = doc
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    Ok(Columns {
        display_name: display_name.to_string(),
        external_id: doc
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub fn display_name_key(display_name: &str) -> String {
    display_name.to_lowercase()
}

/// A member to store: user id and the `display` the client sent, if any.
type NewMember = (String, Option<String>);

/// Takes `members` out of a normalised group document.
fn split_members(doc: &mut Value) -> Result<Vec<NewMember>, StoreError> {
    let members = doc
        .as_object_mut()
        .and_then(|o| o.remove("members"))
        .unwrap_or(Value::Null);
    let list = match members {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => return Err(ScimError::invalid_value("members must be an array").into()),
    };
    let members: Vec<NewMember> = list
        .iter()
        .map(|m| {
            let id = m.get("value").and_then(Value::as_str).ok_or_else(|| {
                ScimError::invalid_value("each member needs a string \"value\" (a user id)")
            })?;
            let display = m.get("display").and_then(Value::as_str).map(str::to_string);
            Ok((id.to_string(), display))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(dedup(members))
}

/// Fails unless every id names a stored user (a dangling member would be returned as a
/// reference nobody can follow).
fn ensure_users_exist(conn: &Connection, members: &[NewMember]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
    for (id, _) in members {
        if !stmt.exists([id])? {
            return Err(
                ScimError::invalid_value(format!("member {id:?} is not a known user id")).into(),
            );
        }
    }
    Ok(())
}

fn add_members(conn: &Connection, group_id: &str, members: &[NewMember]) -> Result<(), StoreError> {
    ensure_users_exist(conn, members)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO group_members (group_id, user_id, display) VALUES (?1, ?2, ?3)
         ON CONFLICT (group_id, user_id) DO UPDATE SET display = COALESCE(excluded.display, display)",
    )?;
    for (id, display) in members {
        stmt.execute(params![group_id, id, display])?;
    }
    Ok(())
}

fn remove_members(conn: &Connection, group_id: &str, ids: &[String]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?;
    for id in ids {
        stmt.execute(params![group_id, id])?;
    }
    Ok(())
}

fn dedup(members: Vec<NewMember>) -> Vec<NewMember> {
    let mut seen = BTreeSet::new();
    members
        .into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .collect()
}

fn with_display(ids: Vec<String>, display: &BTreeMap<String, String>) -> Vec<NewMember> {
    dedup(
        ids.into_iter()
            .map(|id| {
                let d = display.get(&id).cloned();
                (id, d)
            })
            .collect(),
    )
}

pub(super) fn insert(
    conn: &Connection,
    mut doc: Value,
    with_members: bool,
) -> Result<Record, StoreError> {
    let members = split_members(&mut doc)?;
    let cols = columns(&doc)?;
    // Time-ordered ids append to the primary-key index instead of rewriting random pages.
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_rfc3339();
    conn.prepare_cached(
        "INSERT INTO groups (id, display_name_key, display_name, external_id, doc, version, created, last_modified)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
    )?
    .execute(params![
        id,
        display_name_key(&cols.display_name),
        cols.display_name,
        cols.external_id,
        serde_json::to_string(&doc)?,
        now
    ])?;
    add_members(conn, &id, &members)?;
    Ok(Record {
        kind: ResourceKind::Group,
        members: if with_members {
            Some(members_of(conn, &id)?)
        } else {
            None
        },
        id,
        doc,
        version: 1,
        created: now.clone(),
        last_modified: now,
        groups: Vec::new(),
    })
}

pub(super) fn load(
    conn: &Connection,
    id: &str,
    with_members: bool,
) -> Result<Option<Record>, StoreError> {
    let Some(mut record) = read_rows(conn, ResourceKind::Group, "WHERE id = ?1", [id])?.pop()
    else {
        return Ok(None);
    };
    attach_derived(conn, &mut record, with_members)?;
    Ok(Some(record))
}

pub(super) fn members_of(conn: &Connection, group_id: &str) -> Result<Vec<MemberRef>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, COALESCE(m.display, u.display_name) FROM group_members m JOIN users u ON u.id = m.user_id
         WHERE m.group_id = ?1 ORDER BY u.rowid",
    )?;
    let rows = stmt.query_map([group_id], |r| {
        Ok(MemberRef {
            id: r.get(0)?,
            display: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn load_existing(
    conn: &Connection,
    id: &str,
    if_match: Option<&str>,
) -> Result<Record, StoreError> {
    let current = load(conn, id, false)?
        .ok_or_else(|| ScimError::not_found(format!("Group {id} not found")))?;
    super::check_if_match(&current, if_match)?;
    Ok(current)
}

fn save(
    conn: &Connection,
    mut current: Record,
    doc: Value,
    with_members: bool,
) -> Result<Record, StoreError> {
    let cols = columns(&doc)?;
    let now = now_rfc3339();
    current.version += 1;
    conn.prepare_cached(
        "UPDATE groups SET display_name_key = ?2, display_name = ?3, external_id = ?4, doc = ?5,
         version = ?6, last_modified = ?7 WHERE id = ?1",
    )?
    .execute(params![
        current.id,
        display_name_key(&cols.display_name),
        cols.display_name,
        cols.external_id,
        serde_json::to_string(&doc)?,
        current.version,
        now
    ])?;
    current.doc = doc;
    current.last_modified = now;
    if with_members {
        current.members = Some(members_of(conn, &current.id)?);
    }
    Ok(current)
}

pub(super) fn replace(
    conn: &Connection,
    id: &str,
    mut doc: Value,
    if_match: Option<&str>,
    with_members: bool,
) -> Result<Record, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    let members = split_members(&mut doc)?;
    ensure_users_exist(conn, &members)?;
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
        .execute([id])?;
    add_members(conn, id, &members)?;
    save(conn, current, doc, with_members)
}

pub(super) fn patch(
    conn: &Connection,
    id: &str,
    ops: &[PatchOp],
    if_match: Option<&str>,
    with_members: bool,
) -> Result<Record, StoreError> {
    let mut current = load_existing(conn, id, if_match)?;
    let mut doc = current.doc.clone();
    // With the id in view, a PATCH value that names another id is refused (mutability);
    // apply_patch returns the document without it.
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), Value::String(current.id.clone()));
    }
    let outcome = apply_patch(ResourceKind::Group, &mut doc, ops)?;
    let members = outcome.members;
    if let Some(all) = members.replace_all {
        let all = with_display(all, &members.display);
        ensure_users_exist(conn, &all)?;
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
            .execute([id])?;
        add_members(conn, id, &all)?;
    }
    remove_members(conn, id, &members.remove)?;
    add_members(conn, id, &with_display(members.add, &members.display))?;
    if outcome.changed_paths.is_empty() {
        if with_members {
            current.members = Some(members_of(conn, id)?);
        }
        return Ok(current);
    }
    save(conn, current, doc, with_members)
}

pub(super) fn delete(
    conn: &Connection,
    id: &str,
    if_match: Option<&str>,
) -> Result<(), StoreError> {
    load_existing(conn, id, if_match)?;
    conn.prepare_cached("DELETE FROM groups WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
