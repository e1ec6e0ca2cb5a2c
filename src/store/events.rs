//! Reading the event log in order, for consumers that pull events instead of receiving
//! webhooks (`GET /events?after=SEQ`).

use rusqlite::params;

use super::{Store, StoreError};

/// One event with its position in the log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    /// The JSON envelope, exactly as webhooks carry it.
    pub payload: String,
}

impl Store {
    /// Up to `limit` events after `after`, oldest first. Internal bookkeeping events (a
    /// connector's resync) are not part of the public log.
    pub async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, payload FROM events
                 WHERE seq > ?1 AND type != 'connector.resync' ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(LoggedEvent {
                        seq: r.get(0)?,
                        payload: r.get(1)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
