//! Links between local resources and what SCIM connectors created for them, the operator
//! switches of each connector (pause, leaver safety), and resync.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::outbox::{now_ms, record_sync};
use super::{Store, StoreError};
use crate::scim::{ResourceKind, ScimError};

/// What a connector holds for one local resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub remote_id: String,
    /// The mapped document last pushed.
    pub state: Value,
    pub status: LinkStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Active,
    Inactive,
    Deleted,
}

impl LinkStatus {
    fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Inactive => "inactive",
            LinkStatus::Deleted => "deleted",
        }
    }
    fn parse(s: &str) -> LinkStatus {
        match s {
            "active" => LinkStatus::Active,
            "inactive" => LinkStatus::Inactive,
            _ => LinkStatus::Deleted,
        }
    }
}

/// A connector's operator switches.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConnectorSwitches {
    pub paused: bool,
    pub deprovisions_paused: bool,
    pub reason: Option<String>,
}

/// Leaver safety: how many deprovisions a connector may make in a window.
#[derive(Debug, Clone, Copy)]
pub struct LeaverPolicy {
    pub threshold: f64,
    pub window_ms: i64,
    /// Below this many deprovisions in the window the share is not checked, so a small
    /// directory can lose a user or two without tripping it.
    pub min_count: u64,
}

impl Store {
    pub async fn link(
        &self,
        connector: &str,
        kind: ResourceKind,
        local_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        let (connector, local_id) = (connector.to_string(), local_id.to_string());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT remote_id, state, status FROM links
                     WHERE connector = ?1 AND kind = ?2 AND local_id = ?3",
                )?
                .query_row(params![connector, kind.name(), local_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            let Some((remote_id, state, status)) = row else {
                return Ok(None);
            };
            Ok(Some(Link {
                remote_id,
                state: serde_json::from_str(&state)?,
                status: LinkStatus::parse(&status),
            }))
        })
        .await
    }

    /// Every link a connector holds for resources of `kind`, deleted ones included, as
    /// (local id, link) in local-id order (reconciliation walks them all).
    pub async fn links_of(
        &self,
        connector: &str,
        kind: ResourceKind,
    ) -> Result<Vec<(String, Link)>, StoreError> {
        let connector = connector.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT local_id, remote_id, state, status FROM links
                 WHERE connector = ?1 AND kind = ?2 ORDER BY local_id",
            )?;
            let rows = stmt.query_map(params![connector, kind.name()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (local_id, remote_id, state, status) = row?;
                out.push((
                    local_id,
                    Link {
                        remote_id,
                        state: serde_json::from_str(&state)?,
                        status: LinkStatus::parse(&status),
                    },
                ));
            }
            Ok(out)
        })
        .await
    }

    /// Records what a connector now holds for a resource.
    pub async fn save_link(
        &self,
        connector: &str,
        kind: ResourceKind,
        local_id: &str,
        link: Link,
    ) -> Result<(), StoreError> {
        let (connector, local_id) = (connector.to_string(), local_id.to_string());
        self.write(move |conn| {
            let now = now_ms();
            let deprovisioned = (link.status != LinkStatus::Active).then_some(now);
            conn.prepare_cached(
                "INSERT INTO links (connector, kind, local_id, remote_id, state, status, updated_at, deprovisioned_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (connector, kind, local_id) DO UPDATE SET
                   remote_id = excluded.remote_id, state = excluded.state, status = excluded.status,
                   updated_at = excluded.updated_at,
                   deprovisioned_at = CASE WHEN excluded.status = 'active' THEN NULL
                                           WHEN links.status = 'active' THEN excluded.deprovisioned_at
                                           ELSE links.deprovisioned_at END",
            )?
            .execute(params![
                connector,
                kind.name(),
                local_id,
                link.remote_id,
                serde_json::to_string(&link.state)?,
                link.status.as_str(),
                now,
                deprovisioned
            ])?;
            Ok(())
        })
        .await
    }

    /// The remote ids of active links for these local ids (group members), in order, with
    /// local ids that have none left out.
    pub async fn remote_ids(
        &self,
        connector: &str,
        kind: ResourceKind,
        local_ids: Vec<String>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let connector = connector.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT remote_id FROM links
                 WHERE connector = ?1 AND kind = ?2 AND local_id = ?3 AND status = 'active'",
            )?;
            let mut out = Vec::new();
            for id in local_ids {
                if let Some(remote) = stmt
                    .query_row(params![connector, kind.name(), id], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?
                {
                    out.push((id, remote));
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn connector_switches(
        &self,
        connector: &str,
    ) -> Result<ConnectorSwitches, StoreError> {
        let connector = connector.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT paused, deprovisions_paused, reason FROM connector_state WHERE connector = ?1",
                )?
                .query_row([connector], |r| {
                    Ok(ConnectorSwitches {
                        paused: r.get(0)?,
                        deprovisions_paused: r.get(1)?,
                        reason: r.get(2)?,
                    })
                })
                .optional()?
                .unwrap_or_default())
        })
        .await
    }

    /// The kill switch: while paused a connector sends nothing; its work waits.
    pub async fn set_paused(&self, connector: &str, paused: bool) -> Result<(), StoreError> {
        let connector = connector.to_string();
        self.write(move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO connector_state (connector, paused, reason, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connector) DO UPDATE SET paused = excluded.paused,
                   reason = COALESCE(excluded.reason, connector_state.reason), updated_at = excluded.updated_at",
                params![
                    connector,
                    paused,
                    paused.then_some("paused by an operator"),
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// An operator confirms: clears the pause and the leaver-safety stop, restarts the leaver
    /// count, and makes the connector's waiting deliveries due now.
    pub async fn resume_connector(&self, connector: &str) -> Result<usize, StoreError> {
        let connector = connector.to_string();
        self.write(move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO connector_state (connector, paused, deprovisions_paused, reason, resumed_at, updated_at)
                 VALUES (?1, 0, 0, NULL, ?2, ?2)
                 ON CONFLICT (connector) DO UPDATE SET paused = 0, deprovisions_paused = 0,
                   reason = NULL, resumed_at = ?2, updated_at = ?2",
                params![connector, now],
            )?;
            Ok(conn.execute(
                "UPDATE deliveries SET next_attempt_at = ?2 WHERE connector = ?1 AND status = 'pending'",
                params![connector, now],
            )?)
        })
        .await
    }

    /// Leaver safety, checked before each deprovision: allowed when an operator's resume
    /// came after it was queued (they confirmed it); otherwise refused while the connector's
    /// deprovisions are paused, or when this one would push the leavers in the window above
    /// the policy's share of provisioned users (which then pauses them, until resumed).
    pub async fn allow_deprovision(
        &self,
        connector: &str,
        local_id: &str,
        policy: LeaverPolicy,
        queued_at: i64,
    ) -> Result<bool, StoreError> {
        let (connector, local_id) = (connector.to_string(), local_id.to_string());
        self.write(move |conn| {
            let now = now_ms();
            let (paused, resumed_at): (bool, Option<i64>) = conn
                .prepare_cached(
                    "SELECT deprovisions_paused, resumed_at FROM connector_state WHERE connector = ?1",
                )?
                .query_row([&connector], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((false, None));
            if resumed_at.is_some_and(|r| r >= queued_at) {
                return Ok(true);
            }
            if paused {
                return Ok(false);
            }
            let since = now.saturating_sub(policy.window_ms).max(resumed_at.unwrap_or(0));
            let recent: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM leavers WHERE connector = ?1 AND at >= ?2")?
                .query_row(params![connector, since], |r| r.get(0))?;
            // Provisioned users at the start of the window: those still active plus those
            // that left within it.
            let base: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM links WHERE connector = ?1 AND kind = 'User'
                       AND (status = 'active' OR deprovisioned_at >= ?2)",
                )?
                .query_row(params![connector, since], |r| r.get(0))?;
            let recent = u64::try_from(recent).unwrap_or(0) + 1;
            let base = u64::try_from(base).unwrap_or(0).max(1);
            let over = recent >= policy.min_count && (recent as f64) > policy.threshold * base as f64;
            if over {
                let reason = format!(
                    "leaver safety: {recent} deprovisions within the window would exceed {:.0}% of \
                     {base} provisioned users; confirm with `scim-relay connectors resume {connector}`",
                    policy.threshold * 100.0
                );
                tracing::warn!(connector = %connector, "{reason}");
                conn.execute(
                    "INSERT INTO connector_state (connector, deprovisions_paused, reason, updated_at)
                     VALUES (?1, 1, ?2, ?3)
                     ON CONFLICT (connector) DO UPDATE SET deprovisions_paused = 1,
                       reason = excluded.reason, updated_at = excluded.updated_at",
                    params![connector, reason, now],
                )?;
                return Ok(false);
            }
            conn.prepare_cached("INSERT INTO leavers (connector, local_id, at) VALUES (?1, ?2, ?3)")?
                .execute(params![connector, local_id, now])?;
            Ok(true)
        })
        .await
    }

    /// Queues syncs of these resources (`User/<id>`, `Group/<id>`) for one connector.
    pub async fn enqueue_sync(
        &self,
        connector: &str,
        keys: Vec<String>,
    ) -> Result<usize, StoreError> {
        let connector = connector.to_string();
        self.write(move |conn| record_sync(conn, &connector, &keys))
            .await
    }

    /// Queues the current state of every user (and group, when `groups`) for a connector:
    /// a connector added later gets everyone in scope; repeating it sends only what differs.
    pub async fn resync(&self, connector: &str, groups: bool) -> Result<usize, StoreError> {
        let connector = connector.to_string();
        if connector.is_empty() {
            return Err(ScimError::invalid_value("name a connector").into());
        }
        self.write(move |conn| {
            let mut keys: Vec<String> = conn
                .prepare("SELECT 'User/' || id FROM users ORDER BY rowid")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if groups {
                let group_keys: Vec<String> = conn
                    .prepare("SELECT 'Group/' || id FROM groups ORDER BY rowid")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                keys.extend(group_keys);
            }
            record_sync(conn, &connector, &keys)
        })
        .await
    }
}
