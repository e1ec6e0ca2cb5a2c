//! The resource API the HTTP layer calls: create, read, replace, patch, delete and list
//! users and groups. Writes go through the group-commit writer; reads through the pool.

use std::cmp::Ordering;

use rusqlite::Connection;
use serde_json::Value;

use super::outbox::record_events;
use super::provlog::remember_user_name;
use super::{groups, users, Store, StoreError};
use crate::outbox::events::{group_events, memberships_ended, user_events};
use crate::outbox::Fanout;
use crate::scim::filter::{lookup, AttrPath, Filter};
use crate::scim::patch::{apply_patch, PatchOp, PatchOutcome};
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

/// What a write did: the resource before and after (`None` where it did not exist), and
/// for groups the member ids whose membership really changed. Events are derived from it.
#[derive(Debug, Clone, Default)]
pub(super) struct Written {
    pub before: Option<Record>,
    pub after: Option<Record>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Written {
    pub fn created(record: Record) -> Written {
        Written {
            after: Some(record),
            ..Written::default()
        }
    }
    pub fn updated(before: Record, after: Record) -> Written {
        Written {
            before: Some(before),
            after: Some(after),
            ..Written::default()
        }
    }
    pub fn deleted(record: Record) -> Written {
        Written {
            before: Some(record),
            ..Written::default()
        }
    }
}

/// The record's document with a PATCH applied (on a copy; the record is untouched).
pub(super) fn patched(
    current: &Record,
    ops: &[PatchOp],
) -> Result<(Value, PatchOutcome), StoreError> {
    let mut doc = current.doc.clone();
    // With the id in view, a PATCH value that names another id is refused (mutability);
    // apply_patch returns the document without it.
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), Value::String(current.id.clone()));
    }
    let outcome = apply_patch(current.kind, &mut doc, ops)?;
    Ok((doc, outcome))
}

/// What a write touched, for the provisioning log: the resource id and, for users, the
/// userName (from the state after the write, or before it for a deletion).
type Subject = Option<(String, Option<String>)>;

fn subject(written: &Written) -> Subject {
    let record = written.after.as_ref().or(written.before.as_ref())?;
    let user_name = match record.kind {
        ResourceKind::User => record
            .doc
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_string),
        ResourceKind::Group => None,
    };
    Some((record.id.clone(), user_name))
}

/// Records the events of a write (in its transaction) and returns the record to answer with,
/// what the write touched, and the connectors to wake once the transaction commits.
fn record(
    conn: &Connection,
    fanout: &Fanout,
    kind: ResourceKind,
    written: Written,
    request_id: Option<&str>,
) -> Result<(Option<Record>, Subject, Vec<usize>), StoreError> {
    let subject = subject(&written);
    let base = fanout.base_url.as_str();
    let (before, after) = (written.before.as_ref(), written.after.as_ref());
    let mut events = match kind {
        ResourceKind::User => user_events(before, after, base, fanout.has_scopes()),
        ResourceKind::Group => group_events(before, after, &written.added, &written.removed, base),
    };
    if let (ResourceKind::User, Some(user), None) = (kind, before, after) {
        // The deleted user's memberships ended with it (the rows cascaded).
        let mut groups = Vec::new();
        for g in &user.groups {
            if let Some(group) = groups::load(conn, &g.id, false)? {
                groups.push(group);
            }
        }
        events.extend(memberships_ended(user, &groups, base));
    }
    if let (ResourceKind::User, Some(user)) = (kind, before) {
        // A userName the user no longer holds (deleted, or renamed) stays findable in the
        // provisioning log; the users table answers only for current names.
        let key = |r: &Record| {
            r.doc
                .get("userName")
                .and_then(Value::as_str)
                .map(users::user_name_key)
        };
        if let Some(old) = key(user) {
            if after.and_then(key).as_ref() != Some(&old) {
                remember_user_name(conn, &old, &user.id)?;
            }
        }
    }
    let touched = record_events(conn, fanout, events, request_id)?;
    Ok((written.after, subject, touched))
}

impl Store {
    /// Runs a write and its event recording in one transaction; wakes the connectors that got
    /// deliveries once it is durable. Runs in the SCIM request's task, so the request id
    /// (a task-local) is read here and stored with the events; the resource written is noted
    /// for the request's provisioning-log entry.
    async fn write_resource<F>(
        &self,
        kind: ResourceKind,
        f: F,
    ) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<Written, StoreError> + Send + 'static,
    {
        let fanout = self.fanout.clone();
        let request_id = crate::provlog::current_request_id();
        let (record, subject, touched) = self
            .write(move |conn| record(conn, &fanout, kind, f(conn)?, request_id.as_deref()))
            .await?;
        self.fanout.notify(&touched);
        if let Some((id, user_name)) = subject {
            crate::provlog::note_resource(kind.name(), id, user_name);
        }
        Ok(record)
    }

    pub async fn create(
        &self,
        kind: ResourceKind,
        doc: Value,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        self.write_resource(kind, move |conn| match kind {
            ResourceKind::User => users::insert(conn, doc),
            ResourceKind::Group => groups::insert(conn, doc, with_members),
        })
        .await?
        .ok_or(StoreError::Stopped)
    }

    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        let record = self
            .read(move |conn| {
                load(conn, kind, &id, with_members)?.ok_or_else(|| not_found(kind, &id))
            })
            .await?;
        if crate::provlog::in_request() {
            let user_name = match kind {
                ResourceKind::User => record.doc.get("userName").and_then(Value::as_str),
                ResourceKind::Group => None,
            };
            crate::provlog::note_resource(
                kind.name(),
                record.id.clone(),
                user_name.map(str::to_string),
            );
        }
        Ok(record)
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
        self.write_resource(kind, move |conn| match kind {
            ResourceKind::User => users::replace(conn, &id, doc, if_match.as_deref()),
            ResourceKind::Group => {
                groups::replace(conn, &id, doc, if_match.as_deref(), with_members)
            }
        })
        .await?
        .ok_or(StoreError::Stopped)
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
        self.write_resource(kind, move |conn| match kind {
            ResourceKind::User => users::patch(conn, &id, &ops, if_match.as_deref()),
            ResourceKind::Group => {
                groups::patch(conn, &id, &ops, if_match.as_deref(), with_members)
            }
        })
        .await?
        .ok_or(StoreError::Stopped)
    }

    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write_resource(kind, move |conn| match kind {
            ResourceKind::User => users::delete(conn, &id, if_match.as_deref()),
            ResourceKind::Group => groups::delete(conn, &id, if_match.as_deref()),
        })
        .await?;
        Ok(())
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

fn table(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "users",
        ResourceKind::Group => "groups",
    }
}

/// Reads stored rows (`SELECT … FROM <table> <tail>`) as records without their derived
/// attributes (a user's `groups`, a group's `members`); see [`attach_derived`].
pub(super) fn read_rows<P: rusqlite::Params>(
    conn: &Connection,
    kind: ResourceKind,
    tail: &str,
    params: P,
) -> Result<Vec<Record>, StoreError> {
    let sql = format!(
        "SELECT id, doc, version, created, last_modified FROM {} {tail}",
        table(kind)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let doc: String = row.get(1)?;
        out.push(Record {
            kind,
            id: row.get(0)?,
            doc: serde_json::from_str(&doc)?,
            version: row.get(2)?,
            created: row.get(3)?,
            last_modified: row.get(4)?,
            groups: Vec::new(),
            members: None,
        });
    }
    Ok(out)
}

/// Adds the derived attributes: a user's `groups`, and a group's `members` when asked.
pub(super) fn attach_derived(
    conn: &Connection,
    record: &mut Record,
    with_members: bool,
) -> Result<(), StoreError> {
    match record.kind {
        ResourceKind::User => record.groups = users::groups_of(conn, &record.id)?,
        ResourceKind::Group if with_members => {
            record.members = Some(groups::members_of(conn, &record.id)?)
        }
        ResourceKind::Group => {}
    }
    Ok(())
}

/// An indexed column: the filter attribute it answers, the column, and whether the column
/// holds a lowercased key (attributes SCIM compares case-insensitively).
struct Index {
    attr: &'static str,
    column: &'static str,
    lowercased: bool,
}

const fn ix(attr: &'static str, column: &'static str, lowercased: bool) -> Index {
    Index {
        attr,
        column,
        lowercased,
    }
}

const USER_INDEXES: [Index; 3] = [
    ix("id", "id", false),
    ix("username", "user_name_key", true),
    ix("externalid", "external_id", false),
];
const GROUP_INDEXES: [Index; 3] = [
    ix("id", "id", false),
    ix("displayname", "display_name_key", true),
    ix("externalid", "external_id", false),
];

fn indexes(kind: ResourceKind) -> &'static [Index] {
    match kind {
        ResourceKind::User => &USER_INDEXES,
        ResourceKind::Group => &GROUP_INDEXES,
    }
}

/// The rows an index yields for the filter (an `eq` conjunct, else an `sw` conjunct as a
/// range), or `None` when no index applies. The caller still evaluates the whole filter.
fn index_candidates(
    conn: &Connection,
    kind: ResourceKind,
    filter: &Filter,
) -> Option<Result<Vec<Record>, StoreError>> {
    let table = indexes(kind);
    let names: Vec<&str> = table.iter().map(|ix| ix.attr).collect();
    let (attr, literal, prefix) = match filter.indexable_conjunct(&names) {
        Some((attr, lit)) => (attr, lit, false),
        None => {
            let (attr, lit) = filter.indexable_prefix(&names)?;
            (attr, lit, true)
        }
    };
    let index = table.iter().find(|ix| ix.attr == attr)?;
    let literal = literal.as_str()?;
    let key = if index.lowercased {
        literal.to_lowercase()
    } else {
        literal.to_string()
    };
    let column = index.column;
    Some(if prefix {
        // Every string that starts with `key` sorts in [key, successor), and nothing else
        // does. (`key || char(1114111)` is no bound: "k" + U+10FFFF + "x" sorts above it.)
        match prefix_successor(&key) {
            Some(upper) => read_rows(
                conn,
                kind,
                &format!("WHERE {column} >= ?1 AND {column} < ?2 ORDER BY rowid"),
                [key, upper],
            ),
            None => read_rows(
                conn,
                kind,
                &format!("WHERE {column} >= ?1 ORDER BY rowid"),
                [key],
            ),
        }
    } else {
        read_rows(
            conn,
            kind,
            &format!("WHERE {column} = ?1 ORDER BY rowid"),
            [key],
        )
    })
}

/// The least string above every string that starts with `prefix`: the prefix with its last
/// character incremented, dropping trailing U+10FFFF (which has no successor). `None` when
/// nothing is left, i.e. every string from `prefix` up starts with it. SQLite's binary
/// collation orders UTF-8 text by code point, so the range matches exactly the prefix.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) {
            // Surrogates are no chars: the successor of U+D7FF is U+E000.
            0xD7FF => Some('\u{E000}'),
            code => char::from_u32(code + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
        Some(rows) => rows?,
        None => read_rows(conn, kind, "ORDER BY rowid", [])?,
    };
    // Derived attributes cost a query per row: load them before matching only when the
    // filter or the sort looks at them, otherwise only for the page returned.
    let derived = match kind {
        ResourceKind::User => "groups",
        ResourceKind::Group => "members",
    };
    let derived_first = q
        .filter
        .as_ref()
        .is_some_and(|f| filter_mentions(f, derived))
        || q.sort_by
            .as_ref()
            .is_some_and(|p| p.name.eq_ignore_ascii_case(derived));
    let mut matched = Vec::new();
    for mut record in candidates {
        if derived_first {
            attach_derived(conn, &mut record, true)?;
        }
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
    for r in &mut records {
        if !derived_first {
            attach_derived(conn, r, q.with_members)?;
        } else if !q.with_members {
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
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM {}", table(kind)))?
        .query_row([], |r| r.get(0))?;
    let mut records = read_rows(
        conn,
        kind,
        "ORDER BY rowid LIMIT ?1 OFFSET ?2",
        rusqlite::params![
            i64::try_from(q.count).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX)
        ],
    )?;
    for r in &mut records {
        attach_derived(conn, r, q.with_members)?;
    }
    Ok(Page {
        total: usize::try_from(total).unwrap_or(0),
        records,
    })
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
