//! Storage faults with the real binary (issue 6):
//!
//! - the database's filesystem fills up: a small tmpfs mounted over the database folder in a
//!   user+mount namespace, filled with a ballast file through `/proc/<pid>/root`;
//! - the database folder is read-only when the server starts;
//! - SIGKILL lands while group-commit batches are in flight, several rounds, and the file
//!   is checked directly with SQLite after each restart.
//!
//! `tests/crash.rs` covers what a kill does to deliveries reaching a receiver; this file
//! covers what it does to the database itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_scim-relay");
const TOKEN: &str = "faults-storage-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "faults-storage-admin-token-fedcba9876543210";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

// ---------------------------------------------------------------------------------------
// Processes

/// A child process whose stderr (the server's JSON log) is collected line by line. Dropping
/// it kills the child, so a failing assertion leaves nothing running; when the test is
/// failing, the end of the log is printed to help whoever reads the failure.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        // As verbose as the other tests' binaries, for the secret grep; JSON (the config's
        // format) so that this file can read what the server says.
        let mut child = cmd
            .env("RUST_LOG", common::logs::LEVEL)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Proc { child, log, name }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The JSON log records so far (lines that are not JSON, such as the shell's, are left out).
    fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The address of the `n`th (from 1) "scim-relay listening" line, waiting for it.
    fn wait_listening(&mut self, n: usize, message: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<String> = self
                .records()
                .iter()
                .filter(|r| r["fields"]["message"] == message)
                .filter_map(|r| r["fields"]["addr"].as_str().map(str::to_string))
                .collect();
            if let Some(addr) = found.get(n - 1) {
                return addr.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before {message:?} #{n}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {message:?} #{n} within {timeout:?}:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept for `.ci/secret_grep.sh` with the other spawned binaries' logs.
        let lines = self.lines();
        let file = common::logs::dir().join(format!(
            "faults_storage-{}.bin-{}.stderr.log",
            std::process::id(),
            self.pid()
        ));
        let mut text = lines.join("\n");
        text.push('\n');
        let saved = std::fs::write(&file, text).is_ok();
        if std::thread::panicking() {
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last log lines of {} (all {} in {}) ---\n{}",
                self.name,
                lines.len(),
                if saved {
                    file.display().to_string()
                } else {
                    "nowhere".into()
                },
                tail.join("\n")
            );
        }
    }
}

/// `pid`'s children (from `/proc/*/stat`, which every kernel has).
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push((child, comm));
        }
    }
    out
}

/// The scim-relay process below `root` (unshare → sh → scim-relay), other than `not`.
fn find_server(root: u32, not: Option<u32>, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let mut queue = vec![root];
        while let Some(pid) = queue.pop() {
            for (child, comm) in children(pid) {
                if comm == "scim-relay" && Some(child) != not {
                    return child;
                }
                queue.push(child);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no scim-relay process below pid {root}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// A loopback port nothing listens on: webhook deliveries to it fail at once and stay
/// pending, so every acknowledged change keeps its delivery rows.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes the token files and a config with JSON logs, ephemeral listeners, the database at
/// `db` (relative to `dir`) and one webhook connector aimed at a dead port.
fn write_config(dir: &Path, db: &str) -> PathBuf {
    static RECORDED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    RECORDED.get_or_init(|| {
        common::logs::record_secret("faults-storage-token", TOKEN);
        common::logs::record_secret("faults-storage-admin-token", ADMIN_TOKEN);
    });
    std::fs::write(dir.join("token"), TOKEN).expect("token file");
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("admin token file");
    let hook = common::webhook_connector(
        dir,
        "hook",
        &format!("http://127.0.0.1:{}/events", dead_port()),
        &common::new_secret(),
        "[connectors.retry]\ninitial_ms = 200\nmax_ms = 2000\nmax_age_secs = 86400\ncircuit_after = 1000",
    );
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"{db}\"\n[auth]\ntoken_file = \"token\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n\
             [logging]\nlevel = \"info\"\nformat = \"json\"\n{hook}"
        ),
    )
    .expect("config");
    config
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(128)
        .build()
        .expect("client")
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn answer(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Answer, String> {
    let resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn create(
    c: &reqwest::Client,
    base: &str,
    user_name: &str,
    extra: Value,
) -> Result<Answer, String> {
    let mut body = json!({"schemas": [USER_SCHEMA], "userName": user_name, "title": "v0"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    answer(
        c.post(format!("{base}/scim/v2/Users"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await,
    )
    .await
}

async fn patch_title(
    c: &reqwest::Client,
    base: &str,
    id: &str,
    title: &str,
) -> Result<Answer, String> {
    patch(c, base, id, title, None).await
}

/// A PATCH of the title and, given one, the displayName.
async fn patch(
    c: &reqwest::Client,
    base: &str,
    id: &str,
    title: &str,
    display_name: Option<&str>,
) -> Result<Answer, String> {
    let mut ops = vec![json!({"op": "replace", "path": "title", "value": title})];
    if let Some(d) = display_name {
        ops.push(json!({"op": "replace", "path": "displayName", "value": d}));
    }
    let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
    answer(
        c.patch(format!("{base}/scim/v2/Users/{id}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await,
    )
    .await
}

async fn get(c: &reqwest::Client, url: &str) -> Answer {
    answer(c.get(url).bearer_auth(TOKEN).send().await)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Every user the server lists, by userName: (id, title, meta.version).
async fn list_users(c: &reqwest::Client, base: &str) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    let mut start = 1;
    loop {
        let page = get(
            c,
            &format!("{base}/scim/v2/Users?startIndex={start}&count=1000&sortBy=userName"),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let resources = page.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for r in &resources {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            out.insert(
                s(&r["userName"]),
                (s(&r["id"]), s(&r["title"]), s(&r["meta"]["version"])),
            );
        }
        let total = page.body["totalResults"].as_u64().unwrap_or(0) as usize;
        start += resources.len();
        if resources.is_empty() || start > total {
            assert_eq!(out.len(), total, "paging lost users");
            return out;
        }
    }
}

fn version_of(body: &Value) -> String {
    body["meta"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn status_of(c: &reqwest::Client, url: &str) -> Option<(StatusCode, String)> {
    let r = c.get(url).send().await.ok()?;
    let s = r.status();
    Some((s, r.text().await.unwrap_or_default()))
}

/// Asserts a storage 503: the SCIM error body and a Retry-After in whole seconds.
#[track_caller]
fn assert_storage_503(a: &Answer) {
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    common::assert_scim_error(&a.body, "503", None);
    let retry = a
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s >= 1),
        "a 503 without a usable Retry-After: {:?}",
        a.headers
    );
    assert_eq!(
        a.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/scim+json")
    );
}

// ---------------------------------------------------------------------------------------
// Reading the database file directly

struct StoredUser {
    id: String,
    title: String,
    version: i64,
}

struct Snapshot {
    users: BTreeMap<String, StoredUser>,
    /// Per user id: the event types recorded for it, in order.
    events: BTreeMap<String, Vec<String>>,
}

/// Opens the database read-only (the server may be running) and checks what must hold
/// whatever was acknowledged: the file is intact, and every stored change has its event and
/// its delivery, nothing refers to what is not there.
fn check_database(path: &Path) -> Snapshot {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("integrity_check");
    assert_eq!(integrity, vec!["ok".to_string()], "integrity_check");
    let fk: usize = conn
        .prepare("PRAGMA foreign_key_check")
        .and_then(|mut s| Ok(s.query_map([], |_| Ok(()))?.count()))
        .expect("foreign_key_check");
    assert_eq!(fk, 0, "foreign_key_check found violations");

    // One snapshot for all the counts: the delivery engine writes beside us.
    conn.execute_batch("BEGIN").expect("begin");
    let mut users = BTreeMap::new();
    let rows: Vec<(String, String, String, i64)> = conn
        .prepare("SELECT id, user_name_key, doc, version FROM users")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .expect("users");
    let ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    for (id, name, doc, version) in rows {
        let doc: Value = serde_json::from_str(&doc).expect("stored doc is JSON");
        let title = doc["title"].as_str().unwrap_or_default().to_string();
        users.insert(name, StoredUser { id, title, version });
    }
    let events: Vec<(i64, String, String, String, String)> = conn
        .prepare("SELECT seq, type, resource_type, resource_id, payload FROM events ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .expect("events");
    let deliveries: Vec<(i64, String)> = conn
        .prepare("SELECT event_seq, connector FROM deliveries")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("deliveries");
    conn.execute_batch("COMMIT").expect("commit");

    let mut per_event: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (seq, connector) in &deliveries {
        per_event.entry(*seq).or_default().push(connector.clone());
    }
    let seqs: BTreeSet<i64> = events.iter().map(|e| e.0).collect();
    for seq in per_event.keys() {
        assert!(seqs.contains(seq), "a delivery for missing event {seq}");
    }
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (seq, kind, resource_type, resource_id, payload) in &events {
        assert_eq!(resource_type, "User", "event {seq}");
        assert!(
            ids.contains(resource_id),
            "event {seq} ({kind}) refers to a user that is not stored"
        );
        assert_eq!(
            per_event.get(seq).map(Vec::as_slice),
            Some(&["hook".to_string()][..]),
            "event {seq} ({kind}) must have exactly one delivery"
        );
        let payload: Value = serde_json::from_str(payload).expect("payload is JSON");
        assert_eq!(payload["data"]["id"], resource_id.as_str(), "event {seq}");
        by_user
            .entry(resource_id.clone())
            .or_default()
            .push(kind.clone());
    }
    assert_eq!(deliveries.len(), events.len(), "one delivery per event");
    for u in users.values() {
        let kinds = by_user.get(&u.id).cloned().unwrap_or_default();
        // Titles go v0, v1, … one PATCH at a time: vN has been changed N times.
        let n: usize = u
            .title
            .strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("user {} has title {:?}", u.id, u.title));
        let mut expected = vec!["user.created".to_string()];
        expected.extend(std::iter::repeat_n("user.updated".to_string(), n));
        assert_eq!(
            kinds, expected,
            "user {} (title {}): its events do not match its state",
            u.id, u.title
        );
        assert_eq!(u.version, n as i64 + 1, "user {} version", u.id);
    }
    Snapshot {
        users,
        events: by_user,
    }
}

// ---------------------------------------------------------------------------------------
// 1. The disk fills up

/// The namespaced server: a tmpfs of `size` over `db_dir`, then `serve` again each time the
/// server exits (a restart keeps the tmpfs) until `stop` exists, then a `sleep` that keeps
/// the namespace, and so the tmpfs, alive for a last look at the files. `--kill-child` with
/// a PID namespace: dropping the `Proc` (killing unshare) kills everything inside.
fn serve_on_tmpfs(db_dir: &Path, size: &str, config: &Path, stop: &Path) -> Proc {
    let script = r#"set -u
mount -t tmpfs -o "size=$1" tmpfs "$2" || exit 97
while [ ! -e "$5" ]; do
    "$3" --config "$4" serve
    echo "server exited with $?" >&2
    sleep 0.1
done
exec sleep 600
"#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
        .arg("--kill-child")
        .args(["sh", "-c", script, "sh", size])
        .arg(db_dir)
        .arg(BIN)
        .arg(config)
        .arg(stop);
    Proc::spawn("scim-relay in a namespace", cmd)
}

/// SIGTERM to the running server; waits until the shell has seen it exit (`n`th time) and
/// asserts it stopped cleanly.
async fn stop_server(ns: &Proc, server: u32, n: usize) {
    signal(server, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exits: Vec<String> = ns
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("server exited with"))
            .collect();
        if let Some(line) = exits.get(n - 1) {
            assert_eq!(
                line, "server exited with 0",
                "server {n} did not stop cleanly"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {n} did not stop within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The files in `dir` and their sizes, for the test's output.
fn sizes(dir: &Path) -> String {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    format!("{} {} KiB", e.file_name().to_string_lossy(), len / 1024)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.join(", ")
}

/// Fills the filesystem holding `dir` with a file until it refuses more, and returns the file.
fn fill(dir: &Path, limit: u64) -> PathBuf {
    let ballast = dir.join("ballast");
    let mut f = std::fs::File::create(&ballast).expect("create ballast");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // A bound: if the tmpfs were not there, this would be filling the real disk.
        assert!(
            written <= limit,
            "wrote {written} bytes without filling the tmpfs"
        );
    }
    ballast
}

/// userName → (id, title, meta.version) of every user whose last write got a 2xx.
type Seen = BTreeMap<String, (String, String, String)>;

fn ack(acked: &mut Seen, name: &str, a: &Answer) {
    let id = a.body["id"].as_str().expect("id").to_string();
    let title = a.body["title"].as_str().expect("title").to_string();
    acked.insert(name.to_string(), (id, title, version_of(&a.body)));
}

/// Every acknowledged user is served exactly as acknowledged, and no other.
async fn assert_served(c: &reqwest::Client, base: &str, acked: &Seen, when: &str) {
    let listed = list_users(c, base).await;
    for (name, want) in acked {
        assert_eq!(listed.get(name), Some(want), "{name} {when}");
    }
    assert_eq!(
        listed.len(),
        acked.len(),
        "users nobody was told exist, {when}"
    );
}

/// While the disk is full: reads work, readiness says no, liveness says yes, writes are
/// refused with a proper 503 or (when they happen to fit) acknowledged.
async fn check_while_full(c: &reqwest::Client, base: &str, acked: &mut Seen, tag: &str) {
    for (name, (id, title, version)) in acked.iter() {
        let a = get(c, &format!("{base}/scim/v2/Users/{id}")).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "GET {name} while full: {}",
            a.body
        );
        assert_eq!(a.body["title"], title.as_str());
        assert_eq!(version_of(&a.body), *version);
    }
    let (name, (id, ..)) = acked
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("a user");
    let filtered = get(
        c,
        &format!(
            "{base}/scim/v2/Users?filter={}",
            common::q(&format!("userName eq \"{name}\""))
        ),
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", filtered.body);
    assert_eq!(filtered.body["totalResults"], 1);
    // A readiness check that found room stands for a second.
    let asked = Instant::now();
    let ready = loop {
        let ready = status_of(c, &format!("{base}/readyz")).await;
        if ready.as_ref().map(|r| r.0) == Some(StatusCode::SERVICE_UNAVAILABLE) {
            break ready;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{tag}: readyz while the disk is full: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("{tag}: readyz {ready:?} after {:?}", asked.elapsed());
    let live = status_of(c, &format!("{base}/healthz")).await;
    assert_eq!(live.map(|r| r.0), Some(StatusCode::OK));
    // A change to an existing user, and then large creates: refused, or (when they happen to
    // fit in WAL space SQLite reuses) acknowledged, but never anything else, and at last
    // refused.
    let big = "y".repeat(200_000);
    let title = next_title(&acked[&name].1);
    let p = patch(c, base, &id, &title, Some(&big))
        .await
        .expect("patch");
    if p.status == StatusCode::OK {
        ack(acked, &name, &p);
    } else {
        assert_storage_503(&p);
    }
    for i in 0..50 {
        let name = format!("{tag}-big-{i}");
        let a = create(c, base, &name, json!({"displayName": big}))
            .await
            .expect("create");
        if a.status == StatusCode::CREATED {
            ack(acked, &name, &a);
        } else {
            assert_storage_503(&a);
            return;
        }
    }
    panic!("{tag}: 50 creates of 200 kB each fitted on a full disk");
}

/// The title after `title` ("v3" → "v4"): every acknowledged PATCH moves it on by one, so
/// the file can be checked against it (`check_database`).
fn next_title(title: &str) -> String {
    let n: u32 = title[1..].parse().expect("a title vN");
    format!("v{}", n + 1)
}

/// Removes the ballast and waits for the same process to take writes and say it is ready;
/// then a PATCH and 50 creates must all succeed.
async fn recover(
    c: &reqwest::Client,
    base: &str,
    acked: &mut Seen,
    ballast: &Path,
    inside: &Path,
    tag: &str,
) {
    let pad = "x".repeat(1500);
    std::fs::remove_file(ballast).expect("remove ballast");
    let freed = Instant::now();
    let deadline = freed + Duration::from_secs(30);
    let mut attempt = 0;
    let recovered = loop {
        attempt += 1;
        let name = format!("{tag}-recovering-{attempt}");
        let a = create(c, base, &name, json!({"displayName": pad}))
            .await
            .expect("create");
        if a.status == StatusCode::CREATED {
            ack(acked, &name, &a);
            break freed.elapsed();
        }
        assert_storage_503(&a);
        assert!(
            Instant::now() < deadline,
            "{tag}: writes did not recover in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ready_after = loop {
        if status_of(c, &format!("{base}/readyz")).await.map(|r| r.0) == Some(StatusCode::OK) {
            break freed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{tag}: readyz did not recover in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "{tag}: space freed; first create 201 after {recovered:?} ({attempt} attempts), readyz 200 after {ready_after:?}"
    );
    let (name, (id, title, version)) = acked
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("a user");
    let p = patch(c, base, &id, &next_title(&title), None)
        .await
        .expect("patch");
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_ne!(version_of(&p.body), version);
    ack(acked, &name, &p);
    for i in 0..50 {
        let name = format!("{tag}-after-{i}");
        let a = create(c, base, &name, json!({"displayName": pad}))
            .await
            .expect("create");
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{name}: {} ({})",
            a.body,
            sizes(inside)
        );
        ack(acked, &name, &a);
    }
    eprintln!("{tag}: after recovery: {}", sizes(inside));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_loses_nothing_and_recovers_without_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db_dir = tmp.path().join("db");
    std::fs::create_dir(&db_dir).expect("db dir");
    let config = write_config(tmp.path(), "db/relay.db");
    let stop = tmp.path().join("stop");
    let mut ns = serve_on_tmpfs(&db_dir, "48m", &config, &stop);
    let addr = ns.wait_listening(1, "scim-relay listening", Duration::from_secs(30));
    let base = format!("http://{addr}");
    let server = find_server(ns.pid(), None, Duration::from_secs(5));
    // The namespace's view of the database folder, through its shell (which outlives every
    // server): the tmpfs, not the folder we created.
    let holder = children(ns.pid())
        .first()
        .map(|c| c.0)
        .expect("the namespace's shell");
    let inside = PathBuf::from(format!("/proc/{holder}/root")).join(
        db_dir
            .strip_prefix("/")
            .expect("the temporary folder is absolute"),
    );
    let dev_inside = std::fs::metadata(&inside).expect("namespace view").dev();
    let dev_outside = std::fs::metadata(&db_dir).expect("db dir").dev();
    assert_ne!(dev_inside, dev_outside, "the tmpfs is not mounted");

    let c = client();
    let mut acked = Seen::new();
    let pad = "x".repeat(1500);
    for i in 0..20 {
        let name = format!("before-{i}");
        let a = create(&c, &base, &name, json!({"displayName": pad}))
            .await
            .expect("create");
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        ack(&mut acked, &name, &a);
    }
    let ready = status_of(&c, &format!("{base}/readyz")).await;
    assert_eq!(ready.map(|r| r.0), Some(StatusCode::OK));

    // Writers from 16 connections, so batches of several writes meet the full disk; then
    // fill the tmpfs under them and let each run until the server has refused it 5 times.
    let log_mark = ns.lines().len();
    let filling: Vec<_> = (0..16)
        .map(|t| {
            let (c, base, pad) = (c.clone(), base.clone(), pad.clone());
            tokio::spawn(async move {
                let mut created = Seen::new();
                let mut refused = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0.. {
                    if refused.len() >= 5 || Instant::now() > deadline {
                        break;
                    }
                    let name = format!("filling-{t}-{i}");
                    match create(&c, &base, &name, json!({"displayName": pad})).await {
                        Ok(a) if a.status == StatusCode::CREATED => ack(&mut created, &name, &a),
                        Ok(a) => {
                            assert_storage_503(&a);
                            refused.push(name);
                        }
                        Err(e) => panic!("create while the disk fills: {e}"),
                    }
                }
                (created, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ballast = fill(&inside, 128 << 20);
    let full_at = Instant::now();
    eprintln!("filled: {}", sizes(&inside));
    let mut refused = Vec::new();
    let mut created_while_filling = 0;
    for task in filling {
        let (created, no) = task.await.expect("a writer panicked");
        created_while_filling += created.len();
        acked.extend(created);
        refused.extend(no);
    }
    assert_eq!(refused.len(), 16 * 5, "every writer was refused 5 times");
    eprintln!(
        "disk full: {created_while_filling} creates acknowledged from 16 connections around the fill, \
         then {} refused, all within {:?} of the fill",
        refused.len(),
        full_at.elapsed()
    );
    let sample = create(&c, &base, "refused-sample", json!({}))
        .await
        .expect("create");
    eprintln!(
        "503 answer: {} Retry-After {:?}, body {}",
        sample.status,
        sample.headers.get(reqwest::header::RETRY_AFTER),
        sample.body
    );
    if sample.status == StatusCode::CREATED {
        ack(&mut acked, "refused-sample", &sample);
    } else {
        assert_storage_503(&sample);
        refused.push("refused-sample".into());
    }
    for name in &refused {
        let a = get(
            &c,
            &format!(
                "{base}/scim/v2/Users?filter={}",
                common::q(&format!("userName eq \"{name}\""))
            ),
        )
        .await;
        assert_eq!(a.body["totalResults"], 0, "refused {name} was stored");
    }
    check_while_full(&c, &base, &mut acked, "full").await;

    // Space returns: the process that lived through it takes writes again.
    recover(&c, &base, &mut acked, &ballast, &inside, "first server").await;

    // Full again, then a clean stop and a start while the disk is still full: the new
    // process comes up, serves reads, refuses writes, says it is not ready, and recovers
    // in its turn when space returns.
    let ballast = fill(&inside, 128 << 20);
    check_while_full(&c, &base, &mut acked, "full again").await;
    stop_server(&ns, server, 1).await;
    let addr = ns.wait_listening(2, "scim-relay listening", Duration::from_secs(30));
    let base = format!("http://{addr}");
    let server = find_server(ns.pid(), Some(server), Duration::from_secs(5));
    assert_served(&c, &base, &acked, "after a restart on a full disk").await;
    check_while_full(&c, &base, &mut acked, "restarted while full").await;
    eprintln!("full: {}", sizes(&inside));
    recover(&c, &base, &mut acked, &ballast, &inside, "restarted server").await;

    let full_log: Vec<String> = ns.lines()[log_mark..].to_vec();
    eprintln!(
        "{} log lines from filling to recovery; distinct messages:",
        full_log.len()
    );
    let mut distinct: BTreeMap<String, usize> = BTreeMap::new();
    for l in &full_log {
        let v: Value = serde_json::from_str(l).unwrap_or(Value::String(l.clone()));
        let key = format!(
            "{} {}: {} {}",
            v["level"].as_str().unwrap_or(""),
            v["target"].as_str().unwrap_or(""),
            v["fields"]["message"].as_str().unwrap_or(l),
            v["fields"]["error"].as_str().unwrap_or("")
        );
        *distinct.entry(key).or_default() += 1;
    }
    for (k, n) in &distinct {
        eprintln!("  {n:>5} × {k}");
    }
    assert!(
        !full_log.iter().any(|l| l.contains("panicked")),
        "a panic while the disk was full"
    );
    // A WAL that stays stuck would grow until the disk is full again.
    let said = |m: &str| full_log.iter().any(|l| l.contains(m));
    if said("WAL checkpoint failed") {
        assert!(
            said("WAL checkpoints work again"),
            "checkpoints did not recover"
        );
    }

    // Everything acknowledged is served by the running process, and after a clean restart.
    assert_served(&c, &base, &acked, "after recovery").await;
    stop_server(&ns, server, 2).await;
    let addr = ns.wait_listening(3, "scim-relay listening", Duration::from_secs(30));
    let base = format!("http://{addr}");
    let server = find_server(ns.pid(), Some(server), Duration::from_secs(5));
    assert_served(&c, &base, &acked, "after a restart").await;
    let a = create(&c, &base, "after-restart", json!({}))
        .await
        .expect("create");
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    ack(&mut acked, "after-restart", &a);

    // The files, once the last server has stopped (the namespace lives on in `sleep`).
    std::fs::write(&stop, "").expect("stop file");
    stop_server(&ns, server, 3).await;
    // SQLite resolves symlinks, and `/proc/<pid>/root` is one to *our* root; so the files
    // are copied out (the kernel follows the link into the namespace) and opened there.
    eprintln!("after the last clean stop: {}", sizes(&inside));
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).expect("copy dir");
    for suffix in ["", "-wal", "-shm"] {
        let from = inside.join(format!("relay.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, copy.join(format!("relay.db{suffix}"))).expect("copy");
        }
    }
    assert!(
        !inside.join("relay.db-headroom").exists(),
        "the readiness probe left its file"
    );
    let snapshot = check_database(&copy.join("relay.db"));
    for (name, (id, title, version)) in &acked {
        let stored = snapshot
            .users
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the file"));
        assert_eq!(&stored.id, id);
        assert_eq!(&stored.title, title);
        assert_eq!(&format!("W/\"{}\"", stored.version), version);
        assert!(snapshot.events.contains_key(id), "{name} has no events");
    }
    assert_eq!(snapshot.users.len(), acked.len());
}

// ---------------------------------------------------------------------------------------
// 2. A read-only database folder at start

/// Runs `serve` in a namespace after `setup` (shell, `$1` = the database folder) and
/// returns its exit status and output.
fn serve_after(setup: &str, db_dir: &Path, config: &Path) -> (ExitStatus, String) {
    let script = format!("set -eu\n{setup}\nexec \"$2\" --config \"$3\" serve\n");
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
        .arg("--kill-child")
        .args(["sh", "-c", &script, "sh"])
        .arg(db_dir)
        .arg(BIN)
        .arg(config);
    let mut p = Proc::spawn("scim-relay on a read-only folder", cmd);
    let status = p.wait_exit(Duration::from_secs(30));
    // The reader thread may still be draining the pipe.
    std::thread::sleep(Duration::from_millis(100));
    (status, p.lines().join("\n"))
}

#[track_caller]
fn assert_refused_read_only(status: ExitStatus, out: &str, db: &Path) {
    eprintln!("exit {status}; output:\n{out}");
    assert!(!status.success(), "served on a read-only folder:\n{out}");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(
        out.contains(&db.display().to_string()),
        "the message does not name {}:\n{out}",
        db.display()
    );
    assert!(
        out.to_lowercase().contains("read-only"),
        "the message does not say read-only:\n{out}"
    );
}

#[test]
fn read_only_database_folder_at_start_exits_with_a_clear_message() {
    // An empty folder that cannot be written: the database cannot be created.
    let tmp = tempfile::tempdir().expect("tempdir");
    let db_dir = tmp.path().join("db");
    std::fs::create_dir(&db_dir).expect("db dir");
    let config = write_config(tmp.path(), "db/relay.db");
    let (status, out) = serve_after(
        "mount -t tmpfs -o ro,size=1m tmpfs \"$1\"",
        &db_dir,
        &config,
    );
    assert_refused_read_only(status, &out, &db_dir.join("relay.db"));

    // A database that exists but whose folder has become read-only (a read-only bind mount
    // of itself: root would ignore a chmod).
    let made = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--name", "t"])
        .output()
        .expect("token create");
    assert!(made.status.success(), "{made:?}");
    let created = String::from_utf8_lossy(&made.stdout).trim().to_string();
    common::logs::record_secret("cli-token-create", &created);
    let (status, out) = serve_after(
        "mount --bind \"$1\" \"$1\"\nmount -o remount,bind,ro \"$1\"",
        &db_dir,
        &config,
    );
    assert_refused_read_only(status, &out, &db_dir.join("relay.db"));
}

// ---------------------------------------------------------------------------------------
// 3. SIGKILL while batches are in flight

const CONNECTIONS: usize = 48;
const ROUNDS: usize = 6;

#[derive(Clone, Debug)]
struct Acked {
    id: String,
    n: u32,
    /// meta.version of the last 2xx; None once adopted from the file (not answered to anyone).
    version: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Known {
    /// None: the create was sent but never answered.
    acked: Option<Acked>,
    /// A PATCH to title v{n} that was sent but never answered.
    pending: Option<u32>,
}

type Model = Arc<Mutex<BTreeMap<String, Known>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the load tasks of one round share.
#[derive(Clone)]
struct Load {
    c: reqwest::Client,
    base: String,
    model: Model,
    /// 2xx answers this round.
    acks: Arc<AtomicUsize>,
    /// Anything but a 2xx while the server was up.
    unexpected: Arc<Mutex<Vec<String>>>,
}

/// One connection's work: create a user, PATCH one of its own users, repeat, until the
/// server goes away. Every answer is recorded in the model before the next request.
async fn load(l: Load, task: usize, round: usize, seed: u64) {
    let Load {
        c,
        base,
        model,
        acks,
        unexpected,
    } = l;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let prefix = format!("t{task}-");
    let mut mine: Vec<String> = lock(&model)
        .iter()
        .filter(|(k, v)| k.starts_with(&prefix) && v.acked.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for i in 0.. {
        let name = format!("t{task}-r{round}-{i}");
        lock(&model).insert(name.clone(), Known::default());
        match create(&c, &base, &name, json!({})).await {
            Ok(a) if a.status == StatusCode::CREATED => {
                let acked = Acked {
                    id: a.body["id"].as_str().unwrap_or_default().to_string(),
                    n: 0,
                    version: a.body["meta"]["version"].as_str().map(str::to_string),
                };
                lock(&model).insert(
                    name.clone(),
                    Known {
                        acked: Some(acked),
                        pending: None,
                    },
                );
                mine.push(name);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(a) => {
                lock(&unexpected).push(format!("create {name}: {} {}", a.status, a.body));
                lock(&model).remove(&name);
            }
            Err(_) => return,
        }
        if mine.is_empty() {
            continue;
        }
        let name = mine[rng.random_range(0..mine.len())].clone();
        let Some(before) = lock(&model).get(&name).and_then(|k| k.acked.clone()) else {
            continue;
        };
        let next = before.n + 1;
        if let Some(k) = lock(&model).get_mut(&name) {
            k.pending = Some(next);
        }
        match patch_title(&c, &base, &before.id, &format!("v{next}")).await {
            Ok(a) if a.status == StatusCode::OK => {
                if a.body["title"] != format!("v{next}").as_str() {
                    lock(&unexpected).push(format!("patch {name}: answered {}", a.body));
                }
                if let Some(k) = lock(&model).get_mut(&name) {
                    k.acked = Some(Acked {
                        id: before.id.clone(),
                        n: next,
                        version: a.body["meta"]["version"].as_str().map(str::to_string),
                    });
                    k.pending = None;
                }
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(a) => {
                // Refused: it must not have been applied either.
                lock(&unexpected).push(format!("patch {name}: {} {}", a.status, a.body));
                if let Some(k) = lock(&model).get_mut(&name) {
                    k.pending = None;
                }
            }
            Err(_) => return,
        }
    }
}

fn serve_direct(config: &Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("serve");
    Proc::spawn("scim-relay", cmd)
}

/// Average writes per group commit so far, from the admin listener's metrics.
async fn batch_size(c: &reqwest::Client, admin: &str) -> f64 {
    let text = c
        .get(format!("http://{admin}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = value("store_commit_batch_size_count");
    if count == 0.0 {
        0.0
    } else {
        value("store_commit_batch_size_sum") / count
    }
}

/// After a restart: the file against the model. Every acknowledged state is there exactly,
/// or (for the one request per user whose answer never came) the state it asked for; a
/// create that was never answered is there completely or not at all. The model is then
/// brought up to date with what the file holds.
async fn reconcile(shared: &Model, db: &Path, c: &reqwest::Client, base: &str) {
    let snapshot = check_database(db);
    let mut model = lock(shared).clone();
    let mut resolved_pending = 0;
    let mut unanswered_stored = 0;
    for (name, known) in model.iter_mut() {
        let stored = snapshot.users.get(name);
        match (&mut known.acked, stored) {
            (Some(a), Some(s)) => {
                assert_eq!(s.id, a.id, "{name}: id");
                let n: u32 = s.title[1..].parse().expect("title");
                if n != a.n {
                    assert_eq!(
                        Some(n),
                        known.pending,
                        "{name}: stored title v{n}, acknowledged v{} (pending {:?})",
                        a.n,
                        known.pending
                    );
                    a.n = n;
                    a.version = None;
                    resolved_pending += 1;
                } else if let Some(v) = &a.version {
                    assert_eq!(v, &format!("W/\"{}\"", s.version), "{name}: version");
                }
            }
            (Some(a), None) => panic!("{name} (id {}) was acknowledged but is gone", a.id),
            (None, Some(s)) => {
                // Committed, but the answer was lost with the process: whole, and untouched.
                assert_eq!(s.title, "v0", "{name}: nobody knew its id to change it");
                known.acked = Some(Acked {
                    id: s.id.clone(),
                    n: 0,
                    version: None,
                });
                unanswered_stored += 1;
            }
            (None, None) => {}
        }
        known.pending = None;
    }
    model.retain(|_, k| k.acked.is_some());
    for name in snapshot.users.keys() {
        assert!(
            model.contains_key(name),
            "{name} is stored but was never sent"
        );
    }
    // What the restarted server answers agrees with the file.
    let listed = list_users(c, base).await;
    assert_eq!(listed.len(), model.len(), "users served after the restart");
    for (name, known) in model.iter_mut() {
        let Some(a) = known.acked.as_mut() else {
            continue;
        };
        let (id, title, version) = listed
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not served"));
        assert_eq!(id, &a.id);
        assert_eq!(title, &format!("v{}", a.n), "{name}");
        match &a.version {
            Some(v) => assert_eq!(version, v, "{name}: meta.version"),
            None => a.version = Some(version.clone()),
        }
    }
    eprintln!(
        "  file ok: {} users, {} events; {resolved_pending} unanswered PATCHes had been applied, \
         {unanswered_stored} unanswered creates had been committed",
        snapshot.users.len(),
        snapshot.events.values().map(Vec::len).sum::<usize>()
    );
    *lock(shared) = model;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_group_commit_keeps_exactly_what_was_acknowledged() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), "db/relay.db");
    let db = tmp.path().join("db/relay.db");
    let c = client();
    let model: Model = Arc::new(Mutex::new(BTreeMap::new()));

    let mut server = serve_direct(&config);
    for round in 0..ROUNDS {
        let addr = server.wait_listening(1, "scim-relay listening", Duration::from_secs(30));
        let admin = server.wait_listening(1, "admin API listening", Duration::from_secs(30));
        let base = format!("http://{addr}");
        if round > 0 {
            reconcile(&model, &db, &c, &base).await;
        }
        let acks = Arc::new(AtomicUsize::new(0));
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let shared = Load {
            c: c.clone(),
            base: base.clone(),
            model: model.clone(),
            acks: acks.clone(),
            unexpected: unexpected.clone(),
        };
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|t| tokio::spawn(load(shared.clone(), t, round, rng.random())))
            .collect();
        // A random moment once the load is running.
        let threshold = rng.random_range(100..800);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks.load(Ordering::SeqCst) < threshold {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} acknowledged in 60 s",
                acks.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let batch = batch_size(&c, &admin).await;
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
        server.sigkill();
        let at = acks.load(Ordering::SeqCst);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a load task hung")
                .expect("a load task panicked");
        }
        let unexpected = lock(&unexpected).clone();
        assert!(
            unexpected.is_empty(),
            "round {round}: answers other than 2xx while the server ran: {unexpected:?}"
        );
        let in_doubt = lock(&model)
            .values()
            .filter(|k| k.acked.is_none() || k.pending.is_some())
            .count();
        eprintln!(
            "round {round}: SIGKILL after {at} acknowledged writes (mean batch {batch:.1} writes), \
             {in_doubt} requests unanswered"
        );
        assert!(batch > 1.0, "no group commit happened (mean batch {batch})");
        server = serve_direct(&config);
    }
    let addr = server.wait_listening(1, "scim-relay listening", Duration::from_secs(30));
    let base = format!("http://{addr}");
    reconcile(&model, &db, &c, &base).await;
    let ready = status_of(&c, &format!("{base}/readyz")).await;
    assert_eq!(ready.map(|r| r.0), Some(StatusCode::OK));
    let a = create(&c, &base, "after-the-last-kill", json!({}))
        .await
        .expect("create");
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(
        !server.lines().iter().any(|l| l.contains("panicked")),
        "a panic after restart"
    );
}
