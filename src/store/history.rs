//! How a connector's queue looked over time, for the status page's chart: recomputed from
//! the deliveries table (when each was queued and when it left the queue), so no sampler
//! has to run and a restart loses no history.

use rusqlite::params;

use super::{now_ms, Store, StoreError};

impl Store {
    /// Queue depth (pending or in flight) of a connector at `points` evenly spaced instants
    /// ending now and starting `span_ms` ago: (unix ms, depth).
    pub async fn depth_history(
        &self,
        connector: &str,
        span_ms: i64,
        points: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let connector = connector.to_string();
        self.read(move |conn| {
            let now = now_ms();
            let since = now.saturating_sub(span_ms);
            // Every delivery that was queued at some point in the span: still queued, or
            // left the queue (done, dead or discarded) after it started.
            let mut stmt = conn.prepare_cached(
                "SELECT created_at,
                        CASE WHEN status IN ('pending', 'in_flight') THEN NULL
                             ELSE COALESCE(done_at, last_attempt_at, created_at) END
                 FROM deliveries
                 WHERE connector = ?1 AND created_at <= ?2
                   AND (status IN ('pending', 'in_flight')
                        OR COALESCE(done_at, last_attempt_at, created_at) >= ?3)",
            )?;
            let spans = stmt
                .query_map(params![connector, now, since], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let points = points.max(2);
            let step = span_ms / i64::try_from(points - 1).unwrap_or(1).max(1);
            Ok((0..points)
                .map(|i| {
                    let at = since + step * i64::try_from(i).unwrap_or(0);
                    let depth = spans
                        .iter()
                        .filter(|(queued, left)| *queued <= at && left.is_none_or(|l| l > at))
                        .count();
                    (at, u64::try_from(depth).unwrap_or(u64::MAX))
                })
                .collect())
        })
        .await
    }
}
