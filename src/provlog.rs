//! The provisioning log recorder and the per-request context.
//!
//! Owns: the task-local [`RequestContext`] a SCIM request runs in (its request id, the
//! token's name, the resource the request touched), and the non-blocking recorder that
//! turns [`LogEntry`] values into rows. [`record`] never waits and never fails: it hands the
//! entry to a bounded channel, or drops it (counted in `provlog_dropped_total`) when the
//! channel is full, so the log can neither slow nor fail a SCIM write. A background task
//! ([`start`]) drains the channel and stores each batch as one write job, and prunes old
//! entries once a minute. Must not touch SQL (the store does) or HTTP (the middleware does).
//!
//! Recorders are registered per store, not per process, so several servers in one process
//! (as in the tests) each log into their own database. Until [`start`] is called for a
//! store (CLI processes never call it), [`record`] is a no-op for it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::{now_ms, Store};
pub use crate::store::{Direction, LogEntry, LogOutcome, LogQuery};

/// Entries that may wait for the recorder; about a second of the SCIM API at full speed.
const CHANNEL: usize = 16_384;
/// Most entries one write job stores: large enough that the log costs the writer one
/// savepoint per batch, small enough that a batch adds little to a group commit's latency.
const BATCH: usize = 512;
/// How long the recorder gathers entries before writing a partial batch: at low rates this
/// keeps the log from adding a commit (an fsync) of its own per request.
const LINGER: Duration = Duration::from_millis(100);
/// How often entries past the retention are deleted, and how many per write job.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_CHUNK: usize = 5_000;
/// How much of an error message is kept.
pub const DETAIL_LIMIT: usize = 512;

/// What a SCIM request carries through its task: its id, and what the layers below note
/// for its log entry (the token's name from auth, the resource from the store).
#[derive(Debug)]
pub struct RequestContext {
    request_id: Arc<str>,
    noted: RefCell<Noted>,
}

/// What the request's handlers learnt along the way.
#[derive(Debug, Default, Clone)]
pub struct Noted {
    pub actor: Option<Arc<str>>,
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<String>,
    pub user_name: Option<String>,
}

impl RequestContext {
    pub fn new(request_id: impl Into<Arc<str>>) -> RequestContext {
        RequestContext {
            request_id: request_id.into(),
            noted: RefCell::new(Noted::default()),
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What was noted during the request.
    pub fn into_noted(self) -> Noted {
        self.noted.into_inner()
    }
}

tokio::task_local! {
    /// The SCIM request the current task is serving (set by `http::observe`). A task-local
    /// rather than a parameter: the store's write methods read it without every handler
    /// and store signature growing a request-id argument.
    pub static REQUEST: RequestContext;
}

/// The id of the SCIM request the current task serves, if it serves one.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|c| c.request_id.to_string()).ok()
}

/// Whether the current task serves a SCIM request (to skip preparing notes otherwise).
pub fn in_request() -> bool {
    REQUEST.try_with(|_| ()).is_ok()
}

fn note(f: impl FnOnce(&mut Noted)) {
    let _ = REQUEST.try_with(|c| {
        // The context is only borrowed inside these short synchronous calls, never across
        // an await, so the borrow cannot fail; if it ever did, the note is skipped.
        if let Ok(mut noted) = c.noted.try_borrow_mut() {
            f(&mut noted);
        }
    });
}

/// Notes the authenticated token's name for the request's log entry.
pub fn note_actor(name: Arc<str>) {
    note(|n| n.actor = Some(name));
}

/// Notes the resource the request read or wrote (for a create, the id only now known).
pub fn note_resource(resource_type: &'static str, id: String, user_name: Option<String>) {
    note(|n| {
        n.resource_type = Some(resource_type);
        n.resource_id = Some(id);
        n.user_name = user_name;
    });
}

/// Cuts a message to [`DETAIL_LIMIT`] characters.
pub fn truncate_detail(s: &str) -> String {
    match s.char_indices().nth(DETAIL_LIMIT) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or("")),
        None => s.to_string(),
    }
}

/// A running recorder: the store it serves (by [`Store::instance_key`]), which start made it
/// (so an ending task never removes its successor), and its channel.
struct Recorder {
    key: usize,
    generation: u64,
    tx: mpsc::Sender<LogEntry>,
}

/// The running recorders, one per store (in a server process exactly one). Read on every
/// entry, written only when recording starts or stops.
static RECORDERS: RwLock<Vec<Recorder>> = RwLock::new(Vec::new());
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Runs `f` with the channel of `store`'s recorder; `None` when it has none.
fn with_recorder<R>(store: &Store, f: impl FnOnce(&mpsc::Sender<LogEntry>) -> R) -> Option<R> {
    let key = store.instance_key();
    let recorders = RECORDERS.read().ok()?;
    let recorder = recorders.iter().find(|r| r.key == key)?;
    Some(f(&recorder.tx))
}

/// Whether `store`'s entries are recorded (so callers can skip building them).
pub fn enabled(store: &Store) -> bool {
    with_recorder(store, |tx| !tx.is_closed()).unwrap_or(false)
}

/// Hands an entry to `store`'s recorder without waiting. A no-op when it has none;
/// dropped and counted in `provlog_dropped_total` when the recorder is behind.
pub fn record(store: &Store, entry: LogEntry) {
    let full = with_recorder(store, |tx| {
        matches!(tx.try_send(entry), Err(mpsc::error::TrySendError::Full(_)))
    });
    if full == Some(true) {
        crate::metrics::metrics().provlog_dropped(1);
    }
}

/// Starts recording for `store`: entries are written in batches and those older than
/// `retention` are deleted right away and then once a minute. Replaces a recorder already
/// running for this store. The task ends after [`stop`], once it has written what was
/// queued; await the handle to be sure the last entries are stored. Aborting it loses the
/// queued entries but unregisters it all the same.
pub fn start(store: Store, retention: Duration) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let key = store.instance_key();
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut recorders) = RECORDERS.write() {
        recorders.retain(|r| r.key != key);
        recorders.push(Recorder {
            key,
            generation,
            tx,
        });
    }
    let registration = Registration {
        key,
        generation,
        store,
    };
    tokio::spawn(run(registration, rx, retention))
}

/// Stops recording for `store`: later entries are ignored, queued ones are still written.
pub fn stop(store: &Store) {
    let key = store.instance_key();
    if let Ok(mut recorders) = RECORDERS.write() {
        recorders.retain(|r| r.key != key);
    }
}

/// Owned by the recorder task: unregisters it however the task ends. It holds the store,
/// so the store (whose address is the key) outlives its registration.
struct Registration {
    key: usize,
    generation: u64,
    store: Store,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut recorders) = RECORDERS.write() {
            recorders.retain(|r| !(r.key == self.key && r.generation == self.generation));
        }
    }
}

async fn run(registration: Registration, mut rx: mpsc::Receiver<LogEntry>, retention: Duration) {
    let store = &registration.store;
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    // Entries left from before a long stop go at once, before anything new is written.
    prune_old(store, now_ms().saturating_sub(retention_ms)).await;
    let mut prune =
        tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = prune.tick() => {
                prune_old(store, now_ms().saturating_sub(retention_ms)).await;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                flush(store, std::mem::take(&mut batch)).await;
            }
        }
    }
    tracing::debug!("provisioning log recorder stopped");
}

/// Fills in userNames the recorder can still find (an outbound sync of a user knows only
/// its id), then stores the batch as one write job.
async fn flush(store: &Store, mut entries: Vec<LogEntry>) {
    let missing: HashSet<String> = entries
        .iter()
        .filter(|e| e.user_name.is_none() && e.resource_type.as_deref() == Some("User"))
        .filter_map(|e| e.resource_id.clone())
        .collect();
    if !missing.is_empty() {
        match store.user_names(missing.into_iter().collect()).await {
            Ok(names) => {
                for e in entries.iter_mut().filter(|e| e.user_name.is_none()) {
                    if let Some(name) = e.resource_id.as_ref().and_then(|id| names.get(id)) {
                        e.user_name = Some(name.clone());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up userNames for the provisioning log")
            }
        }
    }
    let n = entries.len();
    if let Err(e) = store.write_log(entries).await {
        tracing::warn!(error = %e, entries = n, "cannot store provisioning log entries; dropped");
        crate::metrics::metrics().provlog_dropped(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

async fn prune_old(store: &Store, before: i64) {
    loop {
        match store.prune_log(before, PRUNE_CHUNK).await {
            Ok(n) if n == PRUNE_CHUNK => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune the provisioning log");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn context_is_visible_only_inside_the_request() {
        assert_eq!(current_request_id(), None);
        note_actor("ignored".into());
        let ctx = RequestContext::new("req-1");
        let fut = REQUEST.scope(ctx, async {
            assert_eq!(current_request_id().as_deref(), Some("req-1"));
            note_actor("entra".into());
            tokio::task::yield_now().await;
            note_resource("User", "u1".into(), Some("ann@example.com".into()));
        });
        let mut fut = std::pin::pin!(fut);
        (&mut fut).await;
        let noted = fut
            .as_mut()
            .take_value()
            .map(RequestContext::into_noted)
            .unwrap_or_default();
        assert_eq!(noted.actor.as_deref(), Some("entra"));
        assert_eq!(noted.resource_id.as_deref(), Some("u1"));
        assert_eq!(noted.user_name.as_deref(), Some("ann@example.com"));
    }

    #[test]
    fn details_are_truncated() {
        assert_eq!(truncate_detail("short"), "short");
        let long = "é".repeat(DETAIL_LIMIT + 10);
        assert_eq!(truncate_detail(&long).chars().count(), DETAIL_LIMIT + 1);
    }

    #[tokio::test]
    async fn entries_are_written_in_batches_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("t.db"),
            1,
            Arc::new(crate::outbox::Fanout::none()),
        )
        .expect("store");
        let entry = |at: i64| LogEntry {
            id: None,
            at,
            direction: Direction::In,
            actor: None,
            operation: "GET /Users".into(),
            resource_type: Some("User".into()),
            resource_id: None,
            user_name: None,
            status: Some(200),
            latency_ms: Some(1),
            outcome: LogOutcome::Ok,
            detail: None,
            request_id: None,
            delivery_id: None,
        };
        record(&store, entry(now_ms()));
        assert!(!enabled(&store));
        // An entry past the retention is pruned when the recorder starts; new ones stay.
        store
            .write_log(vec![entry(now_ms() - 7_200_000)])
            .await
            .expect("write");
        let handle = start(store.clone(), Duration::from_secs(3600));
        assert!(enabled(&store));
        for _ in 0..3 {
            record(&store, entry(now_ms()));
        }
        stop(&store);
        record(&store, entry(now_ms()));
        handle.await.expect("recorder ends after stop");
        let rows = store.query_log(LogQuery::default()).await.expect("query");
        assert_eq!(rows.len(), 3, "{rows:?}");
    }
}
