//! SQLite storage: one writer thread with group commit, a pool of reader threads.
//!
//! Owns: the database file, its schema and migrations, and every SQL statement. A write is
//! answered only after the transaction holding it has been committed with
//! `synchronous=FULL`: the writer takes every queued write, runs each inside its own
//! savepoint (so one failing write does not undo its neighbours), commits once and only then
//! answers them all. Reads run on dedicated read-only connections beside the writer (WAL).
//! Nothing outside this module knows SQL, so another backend can follow behind the same API.

mod events;
mod groups;
mod history;
mod links;
mod migrations;
mod outbox;
mod provlog;
mod resources;
mod tokens;
mod users;

pub use events::LoggedEvent;
pub use links::{ConnectorSwitches, LeaverPolicy, Link, LinkStatus};
pub use outbox::{now_ms, Claimed, ConnectorStatus, DeliveryFilter, DeliveryInfo, STATUSES};
pub use provlog::{Direction, LogEntry, LogOutcome, LogQuery, MAX_LOG_LIMIT};
pub use resources::{ListQuery, Page};
pub use tokens::{active_hashes, hash_token, TokenCache, TokenInfo, TokenScope};

use resources::check_if_match;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::outbox::Fanout;
use crate::scim::ScimError;

/// Most writes one transaction takes; bounds a batch's latency under a flood.
const MAX_BATCH: usize = 512;
/// Writes that may wait for the writer before callers are made to wait.
const WRITE_QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request itself is wrong (not found, duplicate, precondition, bad PATCH…).
    #[error(transparent)]
    Scim(#[from] ScimError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored document is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the storage threads have stopped")]
    Stopped,
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create database folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path} for writing: {source}")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path} is read-only: SQLite could not open it for writing")]
    ReadOnly { path: PathBuf },
    /// Its text reaches `/readyz`, which needs no token: no path in it.
    #[error("no room for writes on the database's filesystem: {source}")]
    NoRoom { source: std::io::Error },
}

impl StoreError {
    /// The SCIM error a client sees. Storage trouble is 503 (retry later: the IdP does),
    /// never a detail that leaks internals beyond the SQLite error class.
    pub fn to_scim(&self) -> ScimError {
        match self {
            StoreError::Scim(e) => e.clone(),
            StoreError::Sqlite(e) if is_unavailable(e) => {
                ScimError::unavailable(format!("storage unavailable: {e}"))
            }
            StoreError::Stopped => ScimError::unavailable("storage is shutting down"),
            StoreError::NoRoom { .. } => ScimError::unavailable(self.to_string()),
            other => ScimError::internal(format!("storage error: {other}")),
        }
    }
}

fn is_unavailable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
        )
    )
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued write: given the connection inside the batch transaction (or `None` when the
/// transaction could not start), it runs and returns what to do once the commit is known.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<WriteJob>,
    reads: crossbeam_channel::Sender<ReadJob>,
    tokens: std::sync::Arc<TokenCache>,
    /// Who wants which event: consulted while recording events, woken after commits.
    fanout: std::sync::Arc<Fanout>,
    /// The checkpoint thread runs while any handle to the store exists.
    _alive: std::sync::Arc<()>,
    headroom: std::sync::Arc<Headroom>,
}

impl Store {
    /// Opens (creating if needed) the database, runs migrations and starts the threads.
    pub fn open(
        path: &Path,
        readers: usize,
        fanout: std::sync::Arc<Fanout>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // SQLite opens a file it cannot write read-only without a word, and the first write
        // then fails inside a migration with an error that names nothing; asking the
        // filesystem first gives the operator the path and the OS's reason (EROFS, EACCES).
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StoreError::NotWritable {
                path: path.to_path_buf(),
                source,
            })?;
        let mut writer = Connection::open(path).map_err(open_err)?;
        if writer.is_readonly("main").unwrap_or(true) {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        configure(&writer).map_err(open_err)?;
        migrations::run(&mut writer).map_err(|e| match e {
            StoreError::Sqlite(source) => open_err(source),
            other => other,
        })?;

        let (wtx, wrx) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, wrx))
            .map_err(|source| StoreError::Folder {
                path: path.to_path_buf(),
                source,
            })?;

        let alive = std::sync::Arc::new(());
        let checkpoints = Connection::open(path).map_err(open_err)?;
        checkpoints
            .busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let watch = std::sync::Arc::downgrade(&alive);
        thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, watch))
            .map_err(|source| StoreError::Folder {
                path: path.to_path_buf(),
                source,
            })?;

        let token_conn = open_reader(path).map_err(open_err)?;
        let tokens = std::sync::Arc::new(TokenCache::new(token_conn));

        let (rtx, rrx) = crossbeam_channel::unbounded::<ReadJob>();
        for i in 0..readers.max(1) {
            let conn = open_reader(path).map_err(open_err)?;
            let rrx = rrx.clone();
            thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rrx.recv() {
                        job(&conn);
                    }
                })
                .map_err(|source| StoreError::Folder {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        Ok(Store {
            writes: wtx,
            reads: rtx,
            tokens,
            fanout,
            _alive: alive,
            headroom: std::sync::Arc::new(Headroom::beside(path)),
        })
    }

    /// The active API tokens, for authenticating requests.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Runs `f` inside the next group-commit transaction and answers once it is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(StoreError::Stopped),
            };
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.writes
            .send(job)
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `f` on a read connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.reads
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Whether the database takes writes now (for readiness checks): a write commits, and
    /// its filesystem has room for more. The write alone is not enough: on a full disk a
    /// one-page write still fits in the WAL space SQLite reuses, while every create, which
    /// must grow the file, is refused.
    pub async fn ping_write(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute_batch("UPDATE store_meta SET value = value WHERE key = 'schema'")?;
            Ok(())
        })
        .await?;
        let headroom = self.headroom.clone();
        tokio::task::spawn_blocking(move || headroom.check())
            .await
            .map_err(|_| StoreError::Stopped)?
    }
}

/// Space the readiness check asks the database's filesystem for: several batches of WAL.
const HEADROOM_BYTES: usize = 1 << 20;

/// Finds out whether the database's filesystem has room, by writing a scratch file beside
/// it and removing it. Unlike free-space figures this counts what this process may really
/// use (quotas, blocks reserved for root), with no platform call: ext4, XFS and btrfs
/// reserve space at `write` and tmpfs allocates it, so a full disk refuses at once. (A
/// filesystem that allocates only when flushing, like NFS, may pass the check when full;
/// writes are then still refused with 503.) The file is gone before writeback would reach
/// it, so a check costs next to no disk I/O.
struct Headroom {
    file: PathBuf,
    /// When the last check found room. One check at a time: they share the file.
    last_ok: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A check that found room stands for this long: a probe polled in a tight loop, or
/// flooded (`/readyz` needs no token), then writes 1 MiB a second at most. A failed check
/// is not remembered, so room that returns is seen at once.
const HEADROOM_FRESH: Duration = Duration::from_secs(1);

impl Headroom {
    fn beside(db: &Path) -> Headroom {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push("-headroom");
        Headroom {
            file: db.with_file_name(name),
            last_ok: std::sync::Mutex::new(None),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        use std::io::Write;
        let mut last_ok = self
            .last_ok
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last_ok.is_some_and(|at| at.elapsed() < HEADROOM_FRESH) {
            return Ok(());
        }
        // Incompressible: a filesystem that compresses (btrfs, ZFS) would store zeros in
        // nothing and so promise room that is not there.
        let mut chunk = vec![0_u8; 64 * 1024];
        rand::Rng::fill(&mut rand::rng(), &mut chunk[..]);
        let written = std::fs::File::create(&self.file).and_then(|mut f| {
            for _ in 0..HEADROOM_BYTES / chunk.len() {
                f.write_all(&chunk)?;
            }
            Ok(())
        });
        let _ = std::fs::remove_file(&self.file);
        *last_ok = written.is_ok().then(std::time::Instant::now);
        written.map_err(|source| StoreError::NoRoom { source })
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL lets readers run beside the writer; FULL makes each commit durable on return.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    // The `checkpointer` thread copies the WAL into the database beside the writer; the
    // writer's own automatic checkpoint then finds little left to copy, so it stays short,
    // and it is what lets the WAL start over from the beginning (a checkpoint running while
    // commits keep appending never finds the WAL complete). The file is cut back to 256 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", 32768)?;
    conn.pragma_update(None, "journal_size_limit", 256 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Copies committed pages from the WAL into the database file every quarter second,
/// beside the writer and the readers (PASSIVE never blocks either), so the checkpoint the
/// writer runs inside a commit has little left to do.
fn checkpointer(conn: Connection, alive: std::sync::Weak<()>) {
    // While the disk is full every attempt fails; one line a minute says so without
    // flooding the log with four a second.
    let mut failing: Option<(std::time::Instant, u64)> = None;
    while alive.upgrade().is_some() {
        thread::sleep(Duration::from_millis(250));
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                if let Some((_, failures)) = failing.take() {
                    tracing::info!(failures, "WAL checkpoints work again");
                }
            }
            Err(e) => match &mut failing {
                Some((since, failures)) => {
                    *failures += 1;
                    if since.elapsed() >= Duration::from_secs(60) {
                        tracing::warn!(error = %e, failures = *failures, "WAL checkpoints still failing; retrying");
                        *since = std::time::Instant::now();
                    }
                }
                None => {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    failing = Some((std::time::Instant::now(), 1));
                }
            },
        }
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.pragma_update(None, "mmap_size", 268_435_456)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: every write runs these, and parsing them each time shows up.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut st| st.execute([]));
    run("SAVEPOINT job")?;
    let result = f(conn);
    let end = if result.is_ok() {
        run("RELEASE job")
    } else {
        run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
    }
    .map(|_| ());
    match (result, end) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch);
    }
    tracing::debug!("store writer stopped");
}

fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>) {
    // A transaction left open by a failed rollback would make every later BEGIN fail, and
    // with it every write until a restart.
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "cannot end a transaction left open");
        }
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin a write transaction");
        let err = e.to_string();
        for job in batch.drain(..) {
            job(None)(Err(StoreError::Scim(ScimError::unavailable(format!(
                "storage unavailable: {err}"
            )))));
        }
        return;
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut panicked = false;
    let mut vanished = false;
    for job in batch.drain(..) {
        // On an I/O error, or a full disk while the page cache spills, SQLite rolls the whole
        // transaction back by itself. A job run after that would autocommit on its own,
        // outside the batch: stored, yet told it failed when COMMIT finds no transaction.
        if vanished || conn.is_autocommit() {
            vanished = true;
            completions.push(job(None));
            continue;
        }
        // A bug in one job must not take the writer thread (and so every later write) down:
        // the batch is rolled back and its callers get an error instead.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
            Ok(done) => completions.push(done),
            Err(_) => panicked = true,
        }
    }
    // The job that caused it may have been the batch's last.
    vanished = vanished || (!panicked && conn.is_autocommit());
    let committed = if panicked {
        tracing::error!("a write panicked; its whole batch is rolled back");
        Err(ScimError::internal(
            "a write in the same batch failed unexpectedly; nothing of this request was stored",
        ))
    } else if vanished {
        tracing::error!(
            "the database rolled the batch back after an error; nothing in it was stored"
        );
        Err(ScimError::unavailable(
            "storage unavailable: the transaction was rolled back after a storage error",
        ))
    } else {
        conn.execute_batch("COMMIT").map_err(|e| {
            tracing::error!(error = %e, "commit failed; the batch is rolled back");
            if is_unavailable(&e) {
                ScimError::unavailable(format!("storage unavailable: {e}"))
            } else {
                ScimError::internal(format!("commit failed: {e}"))
            }
        })
    };
    match committed {
        Ok(()) => {
            crate::metrics::metrics().writes_committed(completions.len());
            for done in completions {
                done(Ok(()));
            }
        }
        Err(err) => {
            if !conn.is_autocommit() {
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %e, "cannot roll back the failed batch");
                }
            }
            for done in completions {
                done(Err(StoreError::Scim(err.clone())));
            }
        }
    }
}

/// The current time as RFC 3339 UTC with milliseconds, the format of `meta` timestamps.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: &Result<(), StoreError>) -> Option<u16> {
        match r {
            Err(StoreError::Scim(e)) => Some(e.status),
            _ => None,
        }
    }

    #[test]
    fn headroom_is_found_where_a_file_can_be_written_and_not_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("t.db");
        let room = Headroom::beside(&db);
        assert!(room.check().is_ok());
        assert!(
            !dir.path().join("t.db-headroom").exists(),
            "probe left behind"
        );
        let nowhere = Headroom::beside(&dir.path().join("missing/t.db"));
        match nowhere.check() {
            Err(StoreError::NoRoom { source }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }

    /// SQLite rolls a transaction back by itself on some errors (I/O, a full disk while the
    /// cache spills); here a write does it by hand, in the middle of a batch and at its end.
    /// None of the batch's writes may be stored, and all are told so with a 503.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_rolled_back_under_it_stores_nothing_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("t.db"),
            1,
            std::sync::Arc::new(crate::outbox::Fanout::none()),
        )
        .expect("store");
        for culprit_last in [false, true] {
            // Hold the writer so the next writes queue up, in order, and make one batch.
            let (release, gate) = std::sync::mpsc::channel::<()>();
            let held = tokio::spawn({
                let store = store.clone();
                async move {
                    store
                        .write(move |_| {
                            let _ = gate.recv_timeout(Duration::from_secs(10));
                            Ok(())
                        })
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let order: &[Option<&str>] = if culprit_last {
                &[Some("one"), Some("two"), None]
            } else {
                &[Some("one"), None, Some("two")]
            };
            let mut inserts = Vec::new();
            let mut culprit = None;
            for step in order {
                let store = store.clone();
                match step {
                    Some(key) => {
                        let key = format!("{key}-{culprit_last}");
                        inserts.push(tokio::spawn(async move {
                            store
                                .write(move |conn| {
                                    conn.execute(
                                        "INSERT INTO store_meta (key, value) VALUES (?1, 'x')",
                                        [key],
                                    )?;
                                    Ok(())
                                })
                                .await
                        }))
                    }
                    None => {
                        culprit = Some(tokio::spawn(async move {
                            store
                                .write(|conn| -> Result<(), StoreError> {
                                    conn.execute_batch("ROLLBACK")?;
                                    Err(StoreError::Scim(ScimError::unavailable("disk full")))
                                })
                                .await
                        }))
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            release.send(()).expect("release");
            assert!(held.await.expect("join").is_ok());
            let culprit = culprit.expect("a culprit");
            assert!(culprit.await.expect("join").is_err());
            for insert in inserts {
                let r = insert.await.expect("join");
                assert_eq!(status(&r), Some(503), "culprit last {culprit_last}: {r:?}");
            }
            let stored: i64 = store
                .read(move |conn| {
                    Ok(conn.query_row(
                        "SELECT count(*) FROM store_meta WHERE key LIKE ?1",
                        [format!("%-{culprit_last}")],
                        |r| r.get(0),
                    )?)
                })
                .await
                .expect("read");
            assert_eq!(stored, 0, "a write the caller was told failed is stored");
        }
        // The writer carries on.
        let later = store
            .write(|conn| {
                conn.execute_batch("INSERT INTO store_meta (key, value) VALUES ('later', 'x')")?;
                Ok(())
            })
            .await;
        assert!(later.is_ok(), "{later:?}");
    }
}
