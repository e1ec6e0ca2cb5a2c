//! The outbox tables: the append-only event log and one delivery row per (connector, event).
//!
//! Events and their deliveries are written inside the same transaction as the resource
//! change that caused them, so a change the IdP saw acknowledged always has its deliveries,
//! and a change that rolled back has none. Delivery state moves pending → in_flight (claimed
//! with a lease) → done, or back to pending with a later `next_attempt_at`, or to dead.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::outbox::events::NewEvent;
use crate::outbox::{Fan, Fanout};
use crate::scim::ScimError;

/// Milliseconds since the Unix epoch: delivery times are compared and computed in SQL.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Records the events and a delivery for each connector that wants each one; returns the
/// indexes (in `fanout`) of the connectors that got work, to wake them after the commit.
/// `request_id` is the SCIM request that caused them; every delivery's attempts carry it.
pub(super) fn record_events(
    conn: &Connection,
    fanout: &Fanout,
    events: Vec<NewEvent>,
    request_id: Option<&str>,
) -> Result<Vec<usize>, StoreError> {
    let mut touched = Vec::new();
    if events.is_empty() {
        return Ok(touched);
    }
    let now = now_ms();
    let time = super::now_rfc3339();
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (id, type, resource_type, resource_id, payload, time, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, connector, event_seq, resource_key, status, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
    )?;
    for event in events {
        let id = new_id("evt");
        let payload = serde_json::to_string(&event.envelope(&id, &time))?;
        insert_event.execute(params![
            id,
            event.event_type.as_str(),
            event.kind.name(),
            event.resource_id,
            payload,
            time,
            request_id
        ])?;
        let seq = conn.last_insert_rowid();
        for (index, fans) in fanout.targets(&event) {
            let mut keys = Vec::new();
            for fan in fans {
                match fan {
                    Fan::Key(key) => keys.push(key),
                    Fan::MembersOf(group) => keys.extend(member_keys(conn, &group)?),
                }
            }
            for resource_key in keys {
                insert_delivery.execute(params![
                    new_id("msg"),
                    fanout.name(index),
                    seq,
                    resource_key,
                    now
                ])?;
            }
            if !touched.contains(&index) {
                touched.push(index);
            }
        }
    }
    Ok(touched)
}

fn member_keys(conn: &Connection, group_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT 'User/' || user_id FROM group_members WHERE group_id = ?1 ORDER BY user_id",
    )?;
    let keys = stmt
        .query_map([group_id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

/// Queues a sync of each resource (`User/<id>`, `Group/<id>`) for one connector, under one
/// `connector.resync` event; returns how many deliveries were queued.
pub(super) fn record_sync(
    conn: &Connection,
    connector: &str,
    keys: &[String],
) -> Result<usize, StoreError> {
    let now = now_ms();
    let id = new_id("evt");
    let time = super::now_rfc3339();
    let payload = serde_json::json!({
        "id": id, "type": "connector.resync", "timestamp": time,
        "data": {"connector": connector, "resources": keys.len()},
    });
    conn.prepare_cached(
        "INSERT INTO events (id, type, resource_type, resource_id, payload, time)
         VALUES (?1, 'connector.resync', 'Connector', ?2, ?3, ?4)",
    )?
    .execute(params![
        id,
        connector,
        serde_json::to_string(&payload)?,
        time
    ])?;
    let seq = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (id, connector, event_seq, resource_key, status, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
    )?;
    for key in keys {
        insert.execute(params![new_id("msg"), connector, seq, key, now])?;
    }
    Ok(keys.len())
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery id: the webhook's `webhook-id`, stable across retries.
    pub id: String,
    pub event_seq: i64,
    /// `User/<id>` or `Group/<id>`: what the delivery is about.
    pub resource_key: String,
    /// Attempts including this one.
    pub attempts: u32,
    pub created_at: i64,
    pub payload: String,
    /// The `X-Request-Id` of the SCIM request whose change caused this delivery, if any.
    pub request_id: Option<String>,
}

/// Everything an operator sees of one delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryInfo {
    pub id: String,
    pub connector: String,
    pub event_id: String,
    pub event_type: String,
    pub resource: String,
    pub status: String,
    pub attempts: u32,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub done_at: Option<i64>,
}

/// Per-connector figures for `scim-relay status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectorStatus {
    pub connector: String,
    pub pending: u64,
    pub in_flight: u64,
    pub done: u64,
    pub dead: u64,
    pub oldest_pending_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Which deliveries `deliveries list` shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub connector: Option<String>,
    pub status: Option<String>,
    /// A resource id (user or group).
    pub resource: Option<String>,
    pub limit: usize,
}

pub const STATUSES: [&str; 5] = ["pending", "in_flight", "done", "dead", "discarded"];

const INFO_COLUMNS: &str = "d.id, d.connector, e.id, e.type, d.resource_key, d.status, d.attempts,
     d.created_at, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.done_at";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    Ok(DeliveryInfo {
        id: r.get(0)?,
        connector: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        resource: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_attempt_at: r.get(9)?,
        last_status: r.get(10)?,
        last_error: r.get(11)?,
        done_at: r.get(12)?,
    })
}

impl Store {
    /// Returns deliveries left in flight by a previous run (a crash or kill) to the queue.
    ///
    /// When the database cannot take the write (a full disk), this returns 0 instead of an
    /// error: refusing to start would also stop the reads, and turn the IdP's 503s, which it
    /// retries, into refused connections. `claim` takes those deliveries back anyway once
    /// their leases have run out.
    pub async fn release_in_flight(&self) -> Result<usize, StoreError> {
        let released = self
            .write(|conn| {
                Ok(conn.execute(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'in_flight'",
                    [],
                )?)
            })
            .await;
        match released {
            Err(e) if e.to_scim().status == 503 => {
                tracing::warn!(
                    error = %e,
                    "cannot queue deliveries left in flight again now; they are taken back when their leases run out"
                );
                Ok(0)
            }
            other => other,
        }
    }

    /// Claims up to `limit` due deliveries of a connector, oldest event first, at most one per
    /// resource at a time (a later event waits while an earlier one is pending or in flight).
    ///
    /// Deliveries whose lease has run out are taken back first: their outcome was never
    /// recorded (the disk was full when the attempt ended, or the start-up release could not
    /// be written), and left in flight they would hold back every later event of their
    /// resource until a restart. The lease outlasts the request's timeout, so the attempt
    /// is over; sending it again is the at-least-once a crash gives too.
    pub async fn claim(
        &self,
        connector: &str,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let connector = connector.to_string();
        self.write(move |conn| {
            let now = now_ms();
            let expired = conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL
                     WHERE connector = ?1 AND status = 'in_flight' AND lease_until < ?2",
                )?
                .execute(params![connector, now])?;
            if expired > 0 {
                tracing::warn!(
                    connector,
                    expired,
                    "deliveries whose outcome was never recorded are queued again"
                );
            }
            let mut stmt = conn.prepare_cached(
                "UPDATE deliveries SET status = 'in_flight', lease_until = ?3, attempts = attempts + 1
                 WHERE id IN (
                   SELECT d.id FROM deliveries d INDEXED BY deliveries_pending
                   WHERE d.connector = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
                     AND NOT EXISTS (
                       SELECT 1 FROM deliveries e
                       WHERE e.connector = d.connector AND e.resource_key = d.resource_key
                         AND e.status IN ('pending', 'in_flight') AND e.event_seq < d.event_seq)
                   ORDER BY d.event_seq LIMIT ?4)
                 RETURNING id, event_seq, attempts, created_at, resource_key",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        connector,
                        now,
                        now.saturating_add(lease_ms),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| {
                        Ok(Claimed {
                            id: r.get(0)?,
                            event_seq: r.get(1)?,
                            attempts: r.get(2)?,
                            created_at: r.get(3)?,
                            resource_key: r.get(4)?,
                            payload: String::new(),
                            request_id: None,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut event =
                conn.prepare_cached("SELECT payload, request_id FROM events WHERE seq = ?1")?;
            let mut claimed = Vec::with_capacity(rows.len());
            for mut c in rows {
                (c.payload, c.request_id) =
                    event.query_row([c.event_seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
                claimed.push(c);
            }
            claimed.sort_by_key(|c| c.event_seq);
            Ok(claimed)
        })
        .await
    }

    /// When the connector's next pending delivery is due, if it has one.
    pub async fn next_due(&self, connector: &str) -> Result<Option<i64>, StoreError> {
        let connector = connector.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE connector = ?1 AND status = 'pending'",
                )?
                .query_row([connector], |r| r.get::<_, Option<i64>>(0))?)
        })
        .await
    }

    pub async fn mark_delivered(&self, id: &str, status: u16) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let now = now_ms();
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'done', lease_until = NULL, last_attempt_at = ?2,
                 done_at = ?2, last_status = ?3, last_error = NULL WHERE id = ?1",
            )?
            .execute(params![id, now, status])?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: pending again at `next_attempt_at`, or dead when `None`.
    pub async fn mark_failed(
        &self,
        id: &str,
        status: Option<u16>,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let error = truncate(error, 2048);
        self.write(move |conn| {
            let now = now_ms();
            let (state, next) = match next_attempt_at {
                Some(at) => ("pending", at),
                None => ("dead", now),
            };
            conn.prepare_cached(
                "UPDATE deliveries SET status = ?2, next_attempt_at = ?3, lease_until = NULL,
                 last_attempt_at = ?4, last_status = ?5, last_error = ?6 WHERE id = ?1",
            )?
            .execute(params![id, state, next, now, status, error])?;
            Ok(())
        })
        .await
    }

    pub async fn connector_status(
        &self,
        connectors: Vec<String>,
    ) -> Result<Vec<ConnectorStatus>, StoreError> {
        self.read(move |conn| {
            let mut out = Vec::new();
            for name in connectors {
                let mut s = ConnectorStatus {
                    connector: name.clone(),
                    ..Default::default()
                };
                let mut counts = conn.prepare_cached(
                    "SELECT status, COUNT(*) FROM deliveries WHERE connector = ?1 GROUP BY status",
                )?;
                let rows = counts.query_map([&name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (status, n) = row?;
                    let n = u64::try_from(n).unwrap_or(0);
                    match status.as_str() {
                        "pending" => s.pending = n,
                        "in_flight" => s.in_flight = n,
                        "done" => s.done = n,
                        "dead" => s.dead = n,
                        _ => {}
                    }
                }
                s.oldest_pending_at = conn
                    .prepare_cached(
                        "SELECT MIN(created_at) FROM deliveries WHERE connector = ?1 AND status IN ('pending', 'in_flight')",
                    )?
                    .query_row([&name], |r| r.get(0))?;
                s.last_success_at = conn
                    .prepare_cached(
                        "SELECT MAX(done_at) FROM deliveries WHERE connector = ?1 AND status = 'done'",
                    )?
                    .query_row([&name], |r| r.get(0))?;
                if let Some((at, err)) = conn
                    .prepare_cached(
                        "SELECT last_attempt_at, last_error FROM deliveries
                         WHERE connector = ?1 AND last_error IS NOT NULL
                         ORDER BY last_attempt_at DESC LIMIT 1",
                    )?
                    .query_row([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                {
                    s.last_error_at = at;
                    s.last_error = err;
                }
                out.push(s);
            }
            Ok(out)
        })
        .await
    }

    pub async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {INFO_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 WHERE (?1 IS NULL OR d.connector = ?1) AND (?2 IS NULL OR d.status = ?2)
                   AND (?3 IS NULL OR e.resource_id = ?3)
                 ORDER BY d.event_seq DESC, d.connector LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    filter.connector,
                    filter.status,
                    filter.resource,
                    i64::try_from(filter.limit).unwrap_or(i64::MAX)
                ],
                info_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One delivery with the exact payload it sends.
    pub async fn show_delivery(&self, id: &str) -> Result<(DeliveryInfo, String), StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {INFO_COLUMNS}, e.payload FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 WHERE d.id = ?1"
            );
            conn.prepare_cached(&sql)?
                .query_row([&id], |r| Ok((info_row(r)?, r.get::<_, String>(13)?)))
                .optional()?
                .ok_or_else(|| ScimError::not_found(format!("no delivery {id:?}")).into())
        })
        .await
    }

    /// Queues dead (or discarded) deliveries again, now. `ids` empty with `all_dead` set
    /// retries every dead delivery of `connector`. Returns how many were queued.
    pub async fn retry_deliveries(
        &self,
        ids: Vec<String>,
        all_dead_of: Option<String>,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let mut n = 0;
            if let Some(connector) = all_dead_of {
                n += conn.execute(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, created_at = ?2
                     WHERE connector = ?1 AND status = 'dead'",
                    params![connector, now],
                )?;
            }
            for id in ids {
                let changed = conn.execute(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, created_at = ?2
                     WHERE id = ?1 AND status IN ('dead', 'discarded', 'pending')",
                    params![id, now],
                )?;
                if changed == 0 {
                    return Err(ScimError::not_found(format!(
                        "no dead, discarded or pending delivery {id:?}"
                    ))
                    .into());
                }
                n += changed;
            }
            Ok(n)
        })
        .await
    }

    /// Gives up on deliveries (pending or dead): they are kept, marked discarded.
    pub async fn discard_deliveries(&self, ids: Vec<String>) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let mut n = 0;
            for id in ids {
                let changed = conn.execute(
                    "UPDATE deliveries SET status = 'discarded', lease_until = NULL
                     WHERE id = ?1 AND status IN ('pending', 'dead')",
                    [&id],
                )?;
                if changed == 0 {
                    return Err(ScimError::not_found(format!(
                        "no pending or dead delivery {id:?}"
                    ))
                    .into());
                }
                n += changed;
            }
            Ok(n)
        })
        .await
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or("")),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery whose attempt's outcome was never written (the disk was full) comes back
    /// once its lease runs out, without a restart, and not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_whose_lease_ran_out_is_claimed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("t.db"),
            1,
            std::sync::Arc::new(crate::outbox::Fanout::none()),
        )
        .expect("store");
        store
            .write(|conn| {
                conn.execute_batch(
                    "INSERT INTO events (seq, id, type, resource_type, resource_id, payload, time)
                     VALUES (1, 'evt_1', 'user.created', 'User', 'u1', '{}', 't');
                     INSERT INTO deliveries (id, connector, event_seq, resource_key, status,
                                             created_at, next_attempt_at)
                     VALUES ('msg_1', 'hook', 1, 'User/u1', 'pending', 0, 0);",
                )?;
                Ok(())
            })
            .await
            .expect("seed");
        let first = store.claim("hook", 10, 30).await.expect("claim");
        assert_eq!(first.len(), 1);
        assert!(store.claim("hook", 10, 30).await.expect("claim").is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        let again = store.claim("hook", 10, 60_000).await.expect("claim");
        assert_eq!(again.len(), 1, "the expired lease was not taken back");
        assert_eq!(again[0].id, "msg_1");
        assert_eq!(again[0].attempts, 2);
        assert!(store
            .claim("hook", 10, 60_000)
            .await
            .expect("claim")
            .is_empty());
    }
}
