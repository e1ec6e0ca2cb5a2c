//! The provisioning log table: one row per inbound SCIM operation and per outbound delivery
//! attempt, written in batches by the recorder in `crate::provlog`, pruned by age, and
//! queried newest first ("what happened to user X, and why is it missing downstream?").
//!
//! Owns: the `provisioning_log` SQL. Rows never hold headers, tokens, secrets or bodies; the
//! recorder decides what goes in, this module only stores and finds it.

use std::collections::HashMap;
use std::fmt::Write as _;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params_from_iter, Connection, ToSql};

use super::{Store, StoreError};

/// Which way an entry went: a request the IdP made to us, or an attempt we made downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// How an entry ended: `ok`/`error` for inbound requests; `delivered`, `retry`, `dead` or
/// `deferred` for outbound attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutcome {
    Ok,
    Error,
    Delivered,
    Retry,
    Dead,
    Deferred,
}

impl LogOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LogOutcome::Ok => "ok",
            LogOutcome::Error => "error",
            LogOutcome::Delivered => "delivered",
            LogOutcome::Retry => "retry",
            LogOutcome::Dead => "dead",
            LogOutcome::Deferred => "deferred",
        }
    }

    pub fn parse(s: &str) -> Option<LogOutcome> {
        [
            LogOutcome::Ok,
            LogOutcome::Error,
            LogOutcome::Delivered,
            LogOutcome::Retry,
            LogOutcome::Dead,
            LogOutcome::Deferred,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl FromSql for Direction {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl FromSql for LogOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        LogOutcome::parse(value.as_str()?).ok_or(FromSqlError::InvalidType)
    }
}

/// One provisioning-log entry. `id` is assigned when stored (`None` while being recorded).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Unix milliseconds: when the request arrived or the attempt started.
    pub at: i64,
    pub direction: Direction,
    /// The token's name (inbound) or the connector's name (outbound).
    pub actor: Option<String>,
    /// `POST /Users`, `PATCH /Users/{id}`, `deliver user.updated`, `sync User`.
    pub operation: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub user_name: Option<String>,
    /// The HTTP status answered (inbound) or received (outbound; none on a network error).
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub outcome: LogOutcome,
    /// The error message (truncated), or a summary of the request; never headers, tokens,
    /// secrets or request bodies.
    pub detail: Option<String>,
    /// The id that follows a change from the SCIM request to every delivery it caused.
    pub request_id: Option<String>,
    pub delivery_id: Option<String>,
}

/// Which entries [`Store::query_log`] returns.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// A user id, or a userName (compared case-insensitively).
    pub user: Option<String>,
    /// Outbound entries of this connector.
    pub connector: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
    /// `ok`, `error`, `delivered`, `retry`, `dead` or `deferred`.
    pub outcome: Option<String>,
    /// Most entries returned; 0 means the default (100); capped at [`MAX_LOG_LIMIT`].
    pub limit: usize,
}

/// The most entries one query returns.
pub const MAX_LOG_LIMIT: usize = 10_000;
const DEFAULT_LOG_LIMIT: usize = 100;

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery {
            user: None,
            connector: None,
            since: None,
            until: None,
            outcome: None,
            limit: DEFAULT_LOG_LIMIT,
        }
    }
}

const COLUMNS: &str = "id, at, direction, actor, operation, resource_type, resource_id, user_name,
     status, latency_ms, outcome, detail, request_id, delivery_id";

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        direction: r.get(2)?,
        actor: r.get(3)?,
        operation: r.get(4)?,
        resource_type: r.get(5)?,
        resource_id: r.get(6)?,
        user_name: r.get(7)?,
        status: r.get(8)?,
        latency_ms: r
            .get::<_, Option<i64>>(9)?
            .map(|ms| u64::try_from(ms).unwrap_or(0)),
        outcome: r.get(10)?,
        detail: r.get(11)?,
        request_id: r.get(12)?,
        delivery_id: r.get(13)?,
    })
}

fn insert(conn: &Connection, entries: &[LogEntry]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO provisioning_log (at, direction, actor, operation, resource_type,
             resource_id, user_name, status, latency_ms, outcome, detail, request_id, delivery_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in entries {
        stmt.execute(rusqlite::params![
            e.at,
            e.direction.as_str(),
            e.actor,
            e.operation,
            e.resource_type,
            e.resource_id,
            e.user_name,
            e.status,
            e.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            e.outcome.as_str(),
            e.detail,
            e.request_id,
            e.delivery_id,
        ])?;
    }
    Ok(())
}

/// Remembers that user `user_id` held the userName with this key until now (it was deleted
/// or renamed), so the log stays searchable by it. Runs in the write's transaction.
pub(super) fn remember_user_name(
    conn: &Connection,
    user_name_key: &str,
    user_id: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO user_name_history (user_name_key, user_id, at) VALUES (?1, ?2, ?3)",
    )?
    .execute(rusqlite::params![user_name_key, user_id, super::now_ms()])?;
    Ok(())
}

impl Store {
    /// Stores a batch of entries as one write job (so the log costs the writer one savepoint
    /// per batch, not one per SCIM request).
    pub async fn write_log(&self, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(move |conn| insert(conn, &entries)).await
    }

    /// Deletes up to `max` entries older than `before` (Unix ms), and as many former
    /// userNames; returns how many rows went. Bounded so a large backlog of old entries is
    /// removed in several short writes, never in one transaction that holds up SCIM writes.
    pub async fn prune_log(&self, before: i64, max: usize) -> Result<usize, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let entries = conn
                .prepare_cached(
                    "DELETE FROM provisioning_log WHERE id IN (
                       SELECT id FROM provisioning_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )?
                .execute(rusqlite::params![before, max])?;
            let names = conn
                .prepare_cached(
                    "DELETE FROM user_name_history WHERE rowid IN (
                       SELECT rowid FROM user_name_history WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )?
                .execute(rusqlite::params![before, max])?;
            Ok(entries + names)
        })
        .await
    }

    /// The current userName of each of these user ids that exists (on a read connection).
    pub async fn user_names(
        &self,
        ids: Vec<String>,
    ) -> Result<HashMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT json_extract(doc, '$.userName') FROM users WHERE id = ?1",
            )?;
            let mut out = HashMap::new();
            for id in ids {
                let mut rows = stmt.query([&id])?;
                if let Some(row) = rows.next()? {
                    if let Some(name) = row.get::<_, Option<String>>(0)? {
                        out.insert(id, name);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Provisioning-log entries matching `q`, newest first.
    pub async fn query_log(&self, q: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |conn| query(conn, &q)).await
    }

    /// Identifies this store (all its clones) for the process-wide recorder registry in
    /// `crate::provlog`: the address of the routing table every clone shares, which cannot
    /// be reused while a clone (the recorder holds one) is alive.
    pub(crate) fn instance_key(&self) -> usize {
        std::sync::Arc::as_ptr(&self.fanout) as usize
    }
}

/// Builds the query with only the conditions asked for, so SQLite picks the index that fits
/// (`resource_id` for a user, `(actor, at)` for a connector, `at` otherwise) instead of
/// scanning past `?n IS NULL OR …` terms.
fn build(q: &LogQuery) -> (String, Vec<Box<dyn ToSql>>) {
    let mut sql = format!("SELECT {COLUMNS} FROM provisioning_log WHERE 1");
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let user = q.user.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let user_filter = user.is_some();
    if let Some(user) = user {
        args.push(Box::new(user.to_string()));
        args.push(Box::new(super::users::user_name_key(user)));
        let (n, k) = (args.len() - 1, args.len());
        // The user as an id, or the ids that hold or held it as a userName (compared by
        // the Unicode-lowercased key); then their entries through the resource_id index.
        let _ = write!(
            sql,
            " AND resource_id IN (
                SELECT ?{n}
                UNION SELECT id FROM users WHERE user_name_key = ?{k}
                UNION SELECT user_id FROM user_name_history WHERE user_name_key = ?{k})"
        );
    }
    let mut cond = |sql: &mut String, template: &str, value: Box<dyn ToSql>| {
        args.push(value);
        let _ = write!(sql, " {template}{}", args.len());
    };
    if let Some(connector) = &q.connector {
        cond(
            &mut sql,
            "AND direction = 'out' AND actor = ?",
            Box::new(connector.clone()),
        );
    }
    if let Some(since) = q.since {
        cond(&mut sql, "AND at >= ?", Box::new(since));
    }
    if let Some(until) = q.until {
        cond(&mut sql, "AND at < ?", Box::new(until));
    }
    if let Some(outcome) = &q.outcome {
        cond(&mut sql, "AND outcome = ?", Box::new(outcome.clone()));
    }
    // For a user the few matching rows come from the lookups above and are then sorted;
    // `+at` keeps the planner from walking the whole `at` index newest-first instead.
    let order = if user_filter {
        "ORDER BY +at DESC, id DESC LIMIT ?"
    } else {
        "ORDER BY at DESC, id DESC LIMIT ?"
    };
    let limit = match q.limit {
        0 => DEFAULT_LOG_LIMIT,
        n => n.min(MAX_LOG_LIMIT),
    };
    cond(
        &mut sql,
        order,
        Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
    );
    (sql, args)
}

fn query(conn: &Connection, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
    let (sql, args) = build(q);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), entry_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, direction: Direction, outcome: LogOutcome) -> LogEntry {
        LogEntry {
            id: None,
            at,
            direction,
            actor: Some("entra".into()),
            operation: "POST /Users".into(),
            resource_type: Some("User".into()),
            resource_id: Some("u1".into()),
            user_name: Some("Ann.Lee@example.com".into()),
            status: Some(201),
            latency_ms: Some(3),
            outcome,
            detail: None,
            request_id: Some("r1".into()),
            delivery_id: None,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("t.db"),
            1,
            std::sync::Arc::new(crate::outbox::Fanout::none()),
        )
        .expect("store");
        (dir, store)
    }

    fn user_doc(user_name: &str) -> serde_json::Value {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
        })
    }

    async fn ats(store: &Store, user: &str) -> Vec<i64> {
        store
            .query_log(LogQuery {
                user: Some(user.into()),
                ..LogQuery::default()
            })
            .await
            .expect("query")
            .iter()
            .map(|e| e.at)
            .collect()
    }

    #[tokio::test]
    async fn query_filters_and_orders_newest_first() {
        use crate::scim::ResourceKind;
        let (_dir, store) = store();
        let ann = store
            .create(ResourceKind::User, user_doc("Ann.Lee@example.com"), false)
            .await
            .expect("ann")
            .id;
        let bob = store
            .create(ResourceKind::User, user_doc("Bøb@example.com"), false)
            .await
            .expect("bob")
            .id;
        let mut first = entry(1_000, Direction::In, LogOutcome::Ok);
        first.resource_id = Some(ann.clone());
        let mut out = entry(2_000, Direction::Out, LogOutcome::Dead);
        out.resource_id = Some(ann.clone());
        out.actor = Some("hooks".into());
        out.operation = "deliver user.created".into();
        out.status = Some(400);
        out.delivery_id = Some("msg_1".into());
        let mut other = entry(3_000, Direction::In, LogOutcome::Ok);
        other.resource_id = Some(bob.clone());
        other.user_name = Some("Bøb@example.com".into());
        store
            .write_log(vec![first, out.clone(), other])
            .await
            .expect("write");

        // By userName (Unicode case-insensitively) or by id, newest first.
        assert_eq!(ats(&store, "ann.lee@EXAMPLE.com").await, [2_000, 1_000]);
        assert_eq!(ats(&store, &ann).await, [2_000, 1_000]);
        assert_eq!(ats(&store, "BØB@example.com").await, [3_000]);
        assert_eq!(ats(&store, "nobody@example.com").await, Vec::<i64>::new());

        // Names a user no longer holds still find its entries: renamed, or deleted.
        let rename = crate::scim::patch::parse_patch_request(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "userName", "value": "ann.new@example.com"}]
        }))
        .expect("patch");
        store
            .patch(ResourceKind::User, &ann, rename, None, false)
            .await
            .expect("rename");
        store
            .delete(ResourceKind::User, &bob, None)
            .await
            .expect("delete");
        assert_eq!(ats(&store, "Ann.Lee@example.com").await, [2_000, 1_000]);
        assert_eq!(ats(&store, "ANN.NEW@example.com").await, [2_000, 1_000]);
        assert_eq!(ats(&store, "bøb@example.com").await, [3_000]);

        let dead = store
            .query_log(LogQuery {
                connector: Some("hooks".into()),
                outcome: Some("dead".into()),
                ..LogQuery::default()
            })
            .await
            .expect("query");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].status, Some(400));
        assert_eq!(dead[0].direction, Direction::Out);
        assert_eq!(dead[0].delivery_id.as_deref(), Some("msg_1"));

        let window = store
            .query_log(LogQuery {
                since: Some(1_500),
                until: Some(3_000),
                ..LogQuery::default()
            })
            .await
            .expect("query");
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].at, 2_000);

        let limited = store
            .query_log(LogQuery {
                limit: 1,
                ..LogQuery::default()
            })
            .await
            .expect("query");
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].at, 3_000);
    }

    #[tokio::test]
    async fn prune_removes_only_old_entries_in_bounded_steps() {
        let (_dir, store) = store();
        let entries = (0..10)
            .map(|i| entry(i * 100, Direction::In, LogOutcome::Ok))
            .collect();
        store.write_log(entries).await.expect("write");
        assert_eq!(store.prune_log(500, 3).await.expect("prune"), 3);
        assert_eq!(store.prune_log(500, 3).await.expect("prune"), 2);
        assert_eq!(store.prune_log(500, 3).await.expect("prune"), 0);
        let left = store.query_log(LogQuery::default()).await.expect("query");
        assert_eq!(left.len(), 5);
        assert!(left.iter().all(|e| e.at >= 500));
    }

    #[tokio::test]
    async fn queries_use_indexes() {
        let (_dir, store) = store();
        let queries = vec![
            LogQuery {
                user: Some("ann@example.com".into()),
                ..LogQuery::default()
            },
            LogQuery {
                connector: Some("hooks".into()),
                outcome: Some("dead".into()),
                ..LogQuery::default()
            },
            LogQuery {
                since: Some(1),
                ..LogQuery::default()
            },
        ];
        let plans = store
            .read(move |conn| {
                let mut plans = Vec::new();
                for q in &queries {
                    let (sql, args) = build(q);
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let detail = stmt
                        .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))?
                        .collect::<Result<Vec<_>, _>>()?
                        .join("; ");
                    plans.push(detail);
                }
                Ok(plans)
            })
            .await
            .expect("plans");
        for plan in plans {
            assert!(!plan.contains("SCAN provisioning_log"), "{plan}");
        }
    }
}
