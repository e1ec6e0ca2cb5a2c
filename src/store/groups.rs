//! Groups: the client's document without `members`, which live in `group_members` so that a
//! group of 100,000 users can gain one member without rewriting the rest.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};
use serde_json::Value;

use super::resources::{attach_derived, patched, read_rows, Written};
use super::{now_rfc3339, StoreError};
use crate::scim::patch::PatchOp;
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

/// Adds members; returns the ids that were not members before.
fn add_members(
    conn: &Connection,
    group_id: &str,
    members: &[NewMember],
) -> Result<Vec<String>, StoreError> {
    ensure_users_exist(conn, members)?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO group_members (group_id, user_id, display) VALUES (?1, ?2, ?3)",
    )?;
    let mut relabel = conn.prepare_cached(
        "UPDATE group_members SET display = ?3 WHERE group_id = ?1 AND user_id = ?2",
    )?;
    let mut added = Vec::new();
    for (id, display) in members {
        if insert.execute(params![group_id, id, display])? == 1 {
            added.push(id.clone());
        } else if display.is_some() {
            relabel.execute(params![group_id, id, display])?;
        }
    }
    Ok(added)
}

/// Removes members; returns the ids that were members.
fn remove_members(
    conn: &Connection,
    group_id: &str,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?;
    let mut removed = Vec::new();
    for id in ids {
        if stmt.execute(params![group_id, id])? == 1 {
            removed.push(id.clone());
        }
    }
    Ok(removed)
}

/// Makes the membership exactly `members`; returns (added, removed) ids.
fn set_members(
    conn: &Connection,
    group_id: &str,
    members: &[NewMember],
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    ensure_users_exist(conn, members)?;
    let wanted: BTreeSet<&String> = members.iter().map(|(id, _)| id).collect();
    let current: Vec<String> = conn
        .prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1")?
        .query_map([group_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let leaving: Vec<String> = current
        .into_iter()
        .filter(|id| !wanted.contains(id))
        .collect();
    let removed = remove_members(conn, group_id, &leaving)?;
    let added = add_members(conn, group_id, members)?;
    Ok((added, removed))
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
) -> Result<Written, StoreError> {
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
    let added = add_members(conn, &id, &members)?;
    let record = Record {
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
    };
    Ok(Written {
        before: None,
        after: Some(record),
        added,
        removed: Vec::new(),
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
    with_loaded_members(conn, current, with_members)
}

pub(super) fn replace(
    conn: &Connection,
    id: &str,
    mut doc: Value,
    if_match: Option<&str>,
    with_members: bool,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    let members = split_members(&mut doc)?;
    let (added, removed) = set_members(conn, id, &members)?;
    let before = current.clone();
    let after = if before.doc == doc && added.is_empty() && removed.is_empty() {
        with_loaded_members(conn, current, with_members)?
    } else {
        save(conn, current, doc, with_members)?
    };
    Ok(Written {
        before: Some(before),
        after: Some(after),
        added,
        removed,
    })
}

pub(super) fn patch(
    conn: &Connection,
    id: &str,
    ops: &[PatchOp],
    if_match: Option<&str>,
    with_members: bool,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    let (doc, outcome) = patched(&current, ops)?;
    let changes = outcome.members;
    let (mut added, mut removed) = match changes.replace_all {
        Some(all) => set_members(conn, id, &with_display(all, &changes.display))?,
        None => (Vec::new(), Vec::new()),
    };
    removed.extend(remove_members(conn, id, &changes.remove)?);
    added.extend(add_members(
        conn,
        id,
        &with_display(changes.add, &changes.display),
    )?);
    let before = current.clone();
    let after = if outcome.changed_paths.is_empty() {
        with_loaded_members(conn, current, with_members)?
    } else {
        save(conn, current, doc, with_members)?
    };
    Ok(Written {
        before: Some(before),
        after: Some(after),
        added,
        removed,
    })
}

fn with_loaded_members(
    conn: &Connection,
    mut record: Record,
    with_members: bool,
) -> Result<Record, StoreError> {
    if with_members {
        record.members = Some(members_of(conn, &record.id)?);
    }
    Ok(record)
}

pub(super) fn delete(
    conn: &Connection,
    id: &str,
    if_match: Option<&str>,
) -> Result<Written, StoreError> {
    let current = load_existing(conn, id, if_match)?;
    // The former members, for the group.deleted event (the rows go with the group).
    let removed: Vec<String> = conn
        .prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.prepare_cached("DELETE FROM groups WHERE id = ?1")?
        .execute([id])?;
    Ok(Written {
        removed,
        ..Written::deleted(current)
    })
}
