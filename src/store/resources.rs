//! The resource API the HTTP layer calls: create, read, replace, patch, delete and list
//! users and groups. Writes go through the group-commit writer; reads through the pool.

use std::cmp::Ordering;

use rusqlite::Connection;
use serde_json::Value;

use super::{groups, users, Store, StoreError};
use crate::scim::filter::{lookup, AttrPath, Filter};
use crate::scim::patch::PatchOp;
use crate::scim::resource::{if_match_allows, Record};
use crate::scim::{schema, ResourceKind, ScimError};

/// A list request after parsing and validation.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based, as in SCIM.
    pub start_index: usize,
    pub count: usize,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// Groups: whether to load members (Entra lists groups with `excludedAttributes=members`).
    pub with_members: bool,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub total: usize,
    pub records: Vec<Record>,
}

pub(super) fn check_if_match(current: &Record, if_match: Option<&str>) -> Result<(), StoreError> {
    match if_match {
        Some(tag) if !if_match_allows(tag, current.version) => {
            Err(ScimError::precondition_failed(format!(
                "If-Match {tag} does not match the current version {}",
                current.etag()
            ))
            .into())
        }
        _ => Ok(()),
    }
}

impl Store {
    pub async fn create(
        &self,
        kind: ResourceKind,
        doc: Value,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        self.write(move |conn| match kind {
            ResourceKind::User => users::insert(conn, doc),
            ResourceKind::Group => groups::insert(conn, doc, with_members),
        })
        .await
    }

    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            load(conn, kind, &id, with_members)?.ok_or_else(|| not_found(kind, &id))
        })
        .await
    }

    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        doc: Value,
        if_match: Option<String>,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.write(move |conn| match kind {
            ResourceKind::User => users::replace(conn, &id, doc, if_match.as_deref()),
            ResourceKind::Group => {
                groups::replace(conn, &id, doc, if_match.as_deref(), with_members)
            }
        })
        .await
    }

    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        ops: Vec<PatchOp>,
        if_match: Option<String>,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.write(move |conn| match kind {
            ResourceKind::User => users::patch(conn, &id, &ops, if_match.as_deref()),
            ResourceKind::Group => {
                groups::patch(conn, &id, &ops, if_match.as_deref(), with_members)
            }
        })
        .await
    }

    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| match kind {
            ResourceKind::User => users::delete(conn, &id, if_match.as_deref()),
            ResourceKind::Group => groups::delete(conn, &id, if_match.as_deref()),
        })
        .await
    }

    pub async fn list(&self, kind: ResourceKind, query: ListQuery) -> Result<Page, StoreError> {
        self.read(move |conn| list(conn, kind, &query)).await
    }
}

fn not_found(kind: ResourceKind, id: &str) -> StoreError {
    ScimError::not_found(format!("{} {id} not found", kind.name())).into()
}

fn load(
    conn: &Connection,
    kind: ResourceKind,
    id: &str,
    with_members: bool,
) -> Result<Option<Record>, StoreError> {
    match kind {
        ResourceKind::User => users::load(conn, id),
        ResourceKind::Group => groups::load(conn, id, with_members),
    }
}

/// Attributes answered from an index, as (filter attribute, SQL that selects ids by it).
/// The whole filter is still evaluated on every candidate the index yields.
fn indexes(kind: ResourceKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ResourceKind::User => &[
            ("id", "SELECT id FROM users WHERE id = ?1"),
            (
                "username",
                "SELECT id FROM users WHERE user_name_key = ?1 ORDER BY rowid",
            ),
            (
                "externalid",
                "SELECT id FROM users WHERE external_id = ?1 ORDER BY rowid",
            ),
        ],
        ResourceKind::Group => &[
            ("id", "SELECT id FROM groups WHERE id = ?1"),
            (
                "displayname",
                "SELECT id FROM groups WHERE display_name_key = ?1 ORDER BY rowid",
            ),
            (
                "externalid",
                "SELECT id FROM groups WHERE external_id = ?1 ORDER BY rowid",
            ),
        ],
    }
}

fn table(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "users",
        ResourceKind::Group => "groups",
    }
}

fn list(conn: &Connection, kind: ResourceKind, q: &ListQuery) -> Result<Page, StoreError> {
    let offset = q.start_index.saturating_sub(1);
    if q.filter.is_none() && q.sort_by.is_none() {
        return unfiltered_page(conn, kind, q, offset);
    }
    let candidates = match q
        .filter
        .as_ref()
        .and_then(|f| index_candidates(conn, kind, f))
    {
        Some(ids) => ids?,
        None => all_ids(conn, kind)?,
    };
    let needs_members = q.with_members
        || q.filter
            .as_ref()
            .is_some_and(|f| filter_mentions(f, "members"));
    let mut matched = Vec::new();
    for id in candidates {
        let Some(record) = load(conn, kind, &id, needs_members)? else {
            continue;
        };
        if let Some(filter) = &q.filter {
            let rendered = record.to_scim("");
            if !filter.matches(&rendered, &|p| schema::case_exact(kind, p)) {
                continue;
            }
        }
        matched.push(record);
    }
    if let Some(sort_by) = &q.sort_by {
        matched = sort_records(kind, matched, sort_by, q.descending);
    }
    let total = matched.len();
    let mut records: Vec<Record> = matched.into_iter().skip(offset).take(q.count).collect();
    if needs_members && !q.with_members {
        for r in &mut records {
            r.members = None;
        }
    }
    Ok(Page { total, records })
}

fn unfiltered_page(
    conn: &Connection,
    kind: ResourceKind,
    q: &ListQuery,
    offset: usize,
) -> Result<Page, StoreError> {
    let t = table(kind);
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM {t}"))?
        .query_row([], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM {t} ORDER BY rowid LIMIT ?1 OFFSET ?2"
    ))?;
    let ids = stmt
        .query_map(
            rusqlite::params![
                i64::try_from(q.count).unwrap_or(i64::MAX),
                i64::try_from(offset).unwrap_or(i64::MAX)
            ],
            |r| r.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = load(conn, kind, &id, q.with_members)? {
            records.push(r);
        }
    }
    Ok(Page {
        total: usize::try_from(total).unwrap_or(0),
        records,
    })
}

fn all_ids(conn: &Connection, kind: ResourceKind) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT id FROM {} ORDER BY rowid", table(kind)))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// The ids an index yields for the filter, or `None` when no index applies.
fn index_candidates(
    conn: &Connection,
    kind: ResourceKind,
    filter: &Filter,
) -> Option<Result<Vec<String>, StoreError>> {
    let table = indexes(kind);
    let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
    let (attr, literal) = filter.indexable_conjunct(&names)?;
    let literal = literal.as_str()?;
    let sql = table.iter().find(|(name, _)| *name == attr)?.1;
    let key = match attr.as_str() {
        "username" => users::user_name_key(literal),
        "displayname" => groups::display_name_key(literal),
        _ => literal.to_string(),
    };
    Some((|| {
        let mut stmt = conn.prepare_cached(sql)?;
        let ids = stmt
            .query_map([key], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    })())
}

/// Whether the filter refers to the attribute `name` anywhere (case-insensitively).
fn filter_mentions(filter: &Filter, name: &str) -> bool {
    match filter {
        Filter::Present(p) | Filter::Compare(p, _, _) => p.name.eq_ignore_ascii_case(name),
        Filter::ValuePath(p, _) => p.name.eq_ignore_ascii_case(name),
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_mentions(a, name) || filter_mentions(b, name)
        }
        Filter::Not(f) => filter_mentions(f, name),
    }
}

/// Sorts by the first value of `path`; resources without one sort last (RFC 7644 §3.4.2.3).
fn sort_records(
    kind: ResourceKind,
    records: Vec<Record>,
    path: &AttrPath,
    descending: bool,
) -> Vec<Record> {
    let case_exact = schema::case_exact(kind, path);
    let mut keyed: Vec<(Option<Value>, Record)> = records
        .into_iter()
        .map(|r| {
            let rendered = r.to_scim("");
            (lookup(&rendered, path).into_iter().next().cloned(), r)
        })
        .collect();
    keyed.sort_by(|(ka, _), (kb, _)| match (ka, kb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let o = compare_values(x, y, case_exact);
            if descending {
                o.reverse()
            } else {
                o
            }
        }
    });
    keyed.into_iter().map(|(_, r)| r).collect()
}

fn compare_values(a: &Value, b: &Value, case_exact: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) if case_exact => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}
