//! Fault injection at the downstream end (issue 6): targets that accept the connection and
//! never answer, reset it, answer slowly, answer malformed JSON or a truncated body, send a
//! status line that is not HTTP, or stream an endless body. Each test plays the target as a
//! raw TCP server on 127.0.0.1 that writes exactly the bytes of the fault, turns it healthy
//! later, and checks what the IdP and an operator see: the SCIM request still gets its 2xx
//! at once, each attempt is bounded by the connector's timeout and retried with backoff, the
//! error is on the admin API without secrets, another connector keeps receiving meanwhile,
//! and after recovery the change is applied exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{new_secret, webhook_connector, TestServer, ADMIN_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every faulty connector's per-attempt timeout. The bounds below that claim "promptly" are
/// shorter, so a connector or request that waited for a faulty attempt would fail them.
const TIMEOUT_MS: u64 = 1500;
/// What "at once" means for the IdP's answer and for a healthy connector's delivery: less
/// than one faulty attempt, with room for a busy machine.
const PROMPT: Duration = Duration::from_millis(1000);
const RETRY_INITIAL_MS: i64 = 100;
const RETRY_MAX_MS: i64 = 400;
/// Fast retries and a circuit that stays closed, so every retry is a backoff step.
const RETRY: &str = "[connectors.retry]\ninitial_ms = 100\nmax_ms = 400\nmax_age_secs = 3600\ncircuit_after = 1000\n";
/// Secrets placed where an error message could pick them up: the webhook URL's userinfo
/// and query (reqwest prints the URL in its errors) and the SCIM target's bearer token.
const URL_PASSWORD: &str = "userinfo-pass-5e1f";
const URL_QUERY_SECRET: &str = "query-secret-77c2";
const SCIM_TOKEN: &str = "target-token-c0ffee-9d3";
/// The most an endless body may be written before the connector stops reading: the SCIM
/// connector's 16 MiB cap for a 2xx answer plus kernel socket buffers on loopback.
const HUGE_BOUND: u64 = 48 << 20;
/// What the endless body writes at most, so an unbounded reader fails the test instead of
/// exhausting the machine.
const HUGE_BUDGET: u64 = 160 << 20;
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

// ---------------------------------------------------------------------------------------
// The fake downstream

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answers as a correct target would.
    Healthy,
    /// Reads the request, then neither answers nor closes.
    Hang,
    /// Reads the request, then resets the connection (SO_LINGER 0, so close sends RST).
    Reset,
    /// Does the work, then writes the status line and headers one byte every 100 ms.
    SlowHeaders,
    /// Does the work, writes the headers at once and the body one byte every 100 ms.
    SlowBody,
    /// Does the work, then answers its status with a body that is not JSON.
    MalformedJson,
    /// Does the work, then writes half the body its Content-Length announces and closes.
    Truncated,
    /// Answers a status line that is not HTTP.
    GarbageStatus,
    /// Answers this status with a chunked body that never ends (up to `HUGE_BUDGET`),
    /// written as fast as the client reads it.
    Huge(u16),
}

impl Fault {
    /// Faults that answer: the target did what was asked and only its answer is broken.
    fn does_the_work(self) -> bool {
        matches!(
            self,
            Fault::Healthy
                | Fault::SlowHeaders
                | Fault::SlowBody
                | Fault::MalformedJson
                | Fault::Truncated
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A webhook receiver: 200 with a small JSON body.
    Webhook,
    /// A SCIM service provider for `/Users` (lookup by userName, create, PATCH, DELETE).
    Scim,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    webhook_id: String,
    fault: Fault,
    at: Instant,
    /// When the exchange ended (the client gave up or the answer was written).
    ended: Option<Instant>,
}

struct Shared {
    kind: Kind,
    /// The fault, and the one method it applies to (`None`: every request).
    rule: Mutex<(Fault, Option<&'static str>)>,
    seen: Mutex<Vec<Seen>>,
    users: Mutex<Vec<Value>>,
    next_id: Mutex<u64>,
    /// The most body bytes one endless answer managed to write.
    huge_written: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Downstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Downstream {
    async fn start(kind: Kind, fault: Fault, only: Option<&'static str>) -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            kind,
            rule: Mutex::new((fault, only)),
            seen: Mutex::new(Vec::new()),
            users: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            huge_written: Mutex::new(0),
        });
        let accept = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(exchange(accept.clone(), stream));
            }
        });
        Downstream { addr, shared }
    }

    fn set(&self, fault: Fault, only: Option<&'static str>) {
        *lock(&self.shared.rule) = (fault, only);
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    fn faulty(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.fault != Fault::Healthy)
            .collect()
    }

    fn users(&self) -> Vec<Value> {
        lock(&self.shared.users).clone()
    }

    fn users_named(&self, user_name: &str) -> Vec<Value> {
        self.users()
            .into_iter()
            .filter(|u| {
                u["userName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
            })
            .collect()
    }

    fn seed_user(&self, user_name: &str) -> String {
        let id = self.shared.new_id();
        lock(&self.shared.users).push(json!({"schemas": [USER], "id": id, "userName": user_name}));
        id
    }

    fn huge_written(&self) -> u64 {
        *lock(&self.shared.huge_written)
    }
}

impl Shared {
    fn new_id(&self) -> String {
        let mut n = lock(&self.next_id);
        *n += 1;
        format!("remote-{n}")
    }

    fn record(&self, req: &Request, fault: Fault) -> usize {
        let mut seen = lock(&self.seen);
        seen.push(Seen {
            method: req.method.clone(),
            path: req.path.clone(),
            webhook_id: req.header("webhook-id"),
            fault,
            at: Instant::now(),
            ended: None,
        });
        seen.len() - 1
    }

    fn end(&self, index: usize) {
        if let Some(s) = lock(&self.seen).get_mut(index) {
            s.ended = Some(Instant::now());
        }
    }

    /// The healthy answer, after doing what the request asks.
    fn answer(&self, req: &Request) -> (u16, Vec<u8>) {
        match self.kind {
            Kind::Webhook => (200, br#"{"received":true}"#.to_vec()),
            Kind::Scim => {
                let (status, body) = self.scim(req);
                let bytes = if body.is_null() {
                    Vec::new()
                } else {
                    body.to_string().into_bytes()
                };
                (status, bytes)
            }
        }
    }

    fn scim(&self, req: &Request) -> (u16, Value) {
        let error = |status: u16, detail: &str| {
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                   "status": status.to_string(), "detail": detail})
        };
        if req.header("authorization") != format!("Bearer {SCIM_TOKEN}") {
            return (401, error(401, "bad token"));
        }
        let Some(rest) = req.path.strip_prefix("/scim/v2/Users") else {
            return (404, error(404, "no such endpoint"));
        };
        let mut users = lock(&self.users);
        let position = |users: &[Value], id: &str| users.iter().position(|u| u["id"] == id);
        match (req.method.as_str(), rest) {
            ("GET", query) => {
                let wanted = query
                    .strip_prefix("?filter=")
                    .map(percent_decode)
                    .and_then(|f| {
                        let quoted = f.strip_prefix("userName eq ")?;
                        serde_json::from_str::<String>(quoted).ok()
                    });
                let found: Vec<Value> = users
                    .iter()
                    .filter(|u| match &wanted {
                        Some(name) => u["userName"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name)),
                        None => true,
                    })
                    .cloned()
                    .collect();
                (
                    200,
                    json!({"schemas": [LIST], "totalResults": found.len(), "Resources": found}),
                )
            }
            ("POST", "") => {
                let Ok(mut user) = serde_json::from_slice::<Value>(&req.body) else {
                    return (400, error(400, "invalid JSON"));
                };
                let name = user["userName"].as_str().unwrap_or("").to_string();
                let taken = users.iter().any(|u| {
                    u["userName"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                });
                if taken {
                    return (409, error(409, "userName is taken"));
                }
                drop(users);
                user["id"] = Value::String(self.new_id());
                lock(&self.users).push(user.clone());
                (201, user)
            }
            ("PATCH", id) => {
                let id = id.trim_start_matches('/');
                let Some(i) = position(&users, id) else {
                    return (404, error(404, "no such user"));
                };
                let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                    return (400, error(400, "invalid JSON"));
                };
                let user = &mut users[i];
                for op in body["Operations"].as_array().into_iter().flatten() {
                    let verb = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
                    match (verb.as_str(), op["path"].as_str()) {
                        ("remove", Some(path)) => {
                            if let Some(o) = user.as_object_mut() {
                                o.remove(path);
                            }
                        }
                        (_, Some(path)) => user[path] = op["value"].clone(),
                        (_, None) => {
                            for (k, v) in op["value"].as_object().into_iter().flatten() {
                                user[k] = v.clone();
                            }
                        }
                    }
                }
                (200, user.clone())
            }
            ("DELETE", id) => match position(&users, id.trim_start_matches('/')) {
                Some(i) => {
                    users.remove(i);
                    (204, Value::Null)
                }
                None => (404, error(404, "no such user")),
            },
            _ => (405, error(405, "not supported")),
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request (Content-Length bodies only: reqwest sends nothing else here).
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn head(status: u16, length: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/scim+json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Writes one byte every 100 ms; stops when the client has gone.
async fn dribble(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    for b in bytes {
        if stream.write_all(std::slice::from_ref(b)).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Reads until the client closes (how long it waited is what the test measures).
async fn until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

async fn exchange(shared: Arc<Shared>, mut stream: TcpStream) {
    // Nothing here may outlive a test by much: every fault ends within a minute.
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        let Some(req) = read_request(&mut stream).await else {
            return;
        };
        let (fault, only) = *lock(&shared.rule);
        let fault = match only {
            Some(method) if method != req.method => Fault::Healthy,
            _ => fault,
        };
        let index = shared.record(&req, fault);
        let (status, body) = if fault.does_the_work() {
            shared.answer(&req)
        } else {
            (0, Vec::new())
        };
        match fault {
            Fault::Healthy => {
                let _ = stream.write_all(&head(status, body.len())).await;
                let _ = stream.write_all(&body).await;
            }
            Fault::Hang => until_closed(&mut stream).await,
            Fault::Reset => {
                let _ = stream.set_zero_linger();
                drop(stream);
                shared.end(index);
                return;
            }
            Fault::SlowHeaders => {
                if dribble(&mut stream, &head(status, body.len())).await {
                    let _ = stream.write_all(&body).await;
                }
            }
            Fault::SlowBody => {
                let _ = stream.write_all(&head(status, body.len())).await;
                let _ = dribble(&mut stream, &body).await;
            }
            Fault::MalformedJson => {
                let bad = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"Resources":[{"id":"#;
                let _ = stream.write_all(&head(status, bad.len())).await;
                let _ = stream.write_all(bad).await;
            }
            Fault::Truncated => {
                let _ = stream.write_all(&head(status, body.len())).await;
                let _ = stream.write_all(&body[..body.len() / 2]).await;
            }
            Fault::GarbageStatus => {
                let _ = stream
                    .write_all(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
            Fault::Huge(status) => {
                let start = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                let chunk = [b'x'; 64 * 1024];
                let mut written = 0u64;
                if stream.write_all(start.as_bytes()).await.is_ok() {
                    while written < HUGE_BUDGET {
                        let frame = [b"10000\r\n".as_slice(), &chunk, b"\r\n"].concat();
                        if stream.write_all(&frame).await.is_err() {
                            break;
                        }
                        written += chunk.len() as u64;
                    }
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                }
                let mut most = lock(&shared.huge_written);
                *most = (*most).max(written);
            }
        }
        let _ = stream.shutdown().await;
        shared.end(index);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The relay's side

async fn admin_get(s: &TestServer, path: &str) -> Value {
    let r = s
        .client
        .get(format!("{}{path}", s.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("admin answers JSON")
}

async fn deliveries(s: &TestServer, connector: &str) -> Vec<Value> {
    admin_get(
        s,
        &format!("/api/deliveries?connector={connector}&limit=100"),
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// Polls `probe` until it yields a value, for at most `within`.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The connector's one delivery for this resource.
async fn delivery_of(s: &TestServer, connector: &str, resource: &str) -> Option<Value> {
    deliveries(s, connector).await.into_iter().find(|d| {
        d["resource"]
            .as_str()
            .is_some_and(|r| r.ends_with(resource))
    })
}

/// Creates a user through the SCIM API, as the IdP would, and checks that the answer did
/// not wait for any downstream.
async fn idp_creates(s: &TestServer, user_name: &str) -> String {
    let started = Instant::now();
    let r = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": user_name, "displayName": "Ann Lee", "active": true}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(took < PROMPT, "the IdP waited {took:?} for its 201");
    r.body["id"].as_str().expect("id").to_string()
}

/// Asserts that the healthy webhook got this user's `user.created` promptly.
async fn healthy_gets(healthy: &Receiver, user_id: &str) {
    let since = Instant::now();
    healthy
        .wait_for("the healthy connector's delivery", PROMPT, |got| {
            got.iter()
                .any(|r| r.resource_id() == user_id && r.event_type() == "user.created")
        })
        .await;
    let late = healthy
        .accepted()
        .iter()
        .find(|r| r.resource_id() == user_id)
        .map(|r| r.at.saturating_duration_since(since));
    assert!(late.is_some_and(|l| l < PROMPT), "{late:?}");
}

/// What the operator reads while the fault lasts: the delivery is pending (not dead), has
/// failed at least twice, and its error names the problem and no secret. Returns it.
async fn failing_delivery(
    s: &TestServer,
    connector: &str,
    resource: &str,
    expect: &[&str],
) -> Value {
    let d = eventually(
        "two recorded failures",
        Duration::from_secs(20),
        async || {
            let d = delivery_of(s, connector, resource).await?;
            assert_ne!(d["status"], "dead", "dead-lettered: {d}");
            assert_ne!(d["status"], "done", "delivered despite the fault: {d}");
            let failed = d["attempts"].as_u64().unwrap_or(0) >= 2 && d["last_error"].is_string();
            (failed && d["status"] == "pending").then_some(d)
        },
    )
    .await;
    let error = d["last_error"].as_str().unwrap_or("");
    // With --nocapture: exactly what `deliveries show` tells the operator mid-fault.
    eprintln!(
        "{connector}: status={} attempts={} last_status={} last_error={error:?} retry in {} ms",
        d["status"],
        d["attempts"],
        d["last_status"],
        d["next_attempt_at"].as_i64().unwrap_or(0) - d["last_attempt_at"].as_i64().unwrap_or(0)
    );
    for word in expect {
        assert!(
            error.to_lowercase().contains(&word.to_lowercase()),
            "last_error {error:?} does not say {word:?}"
        );
    }
    assert_no_secret(error);
    // Backoff: the next attempt is scheduled after the last one, no later than the cap.
    let gap =
        d["next_attempt_at"].as_i64().unwrap_or(0) - d["last_attempt_at"].as_i64().unwrap_or(0);
    assert!(
        (RETRY_INITIAL_MS / 10 - 5..=RETRY_MAX_MS + 5).contains(&gap),
        "next attempt {gap} ms after the last: {d}"
    );
    // The same error is what `scim-relay status` and the status page show.
    let status = admin_get(s, "/api/status").await;
    let shown = status
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["connector"] == connector)
        .map(|c| c["last_error"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(!shown.is_empty(), "{status}");
    assert_no_secret(&shown);
    d
}

/// With --nocapture: when each request reached the target and how it was answered.
fn timeline(seen: &[Seen]) {
    let Some(first) = seen.first().map(|s| s.at) else {
        return;
    };
    for s in seen {
        eprintln!(
            "  +{:>5} ms {:?} {} {}",
            s.at.duration_since(first).as_millis(),
            s.fault,
            s.method,
            s.path.split('?').next().unwrap_or("")
        );
    }
}

/// Registers the secrets this file plants with the harness, so the CI grep over the test
/// logs (`.ci/secret_grep.sh`) looks for them in every line the servers logged.
fn record_planted_secrets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        common::logs::record_secret("faults-url-password", URL_PASSWORD);
        common::logs::record_secret("faults-url-query", URL_QUERY_SECRET);
        common::logs::record_secret("faults-scim-token", SCIM_TOKEN);
    });
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in [URL_PASSWORD, URL_QUERY_SECRET, SCIM_TOKEN] {
        assert!(!text.contains(secret), "a secret leaked into {text:?}");
    }
}

/// Every faulty exchange that waited for an answer ended about one timeout after it began:
/// the connector gave up, not the fake target.
async fn assert_bounded_by_timeout(target: &Downstream, which: impl Fn(&Seen) -> bool) {
    // A dribbling target notices the client is gone only at its next write.
    let attempts = eventually(
        "the faulty exchanges to end",
        Duration::from_secs(5),
        async || {
            let attempts: Vec<Seen> = target.faulty().into_iter().filter(|a| which(a)).collect();
            attempts
                .iter()
                .all(|a| a.ended.is_some())
                .then_some(attempts)
        },
    )
    .await;
    assert!(!attempts.is_empty());
    let timeout = Duration::from_millis(TIMEOUT_MS);
    for a in &attempts {
        let held = a.ended.map(|e| e.duration_since(a.at));
        // The path without its query, which holds a test secret.
        let path = a.path.split('?').next().unwrap_or("");
        eprintln!("{} {path} held {held:?}", a.method);
        assert!(
            held.is_some_and(|h| h >= timeout - Duration::from_millis(100)
                && h < timeout + Duration::from_millis(1000)),
            "{} {path} held {held:?} for a {timeout:?} timeout",
            a.method,
        );
    }
}

/// The delivery is done, after `min_attempts` at least, with no error left on it.
async fn delivered(s: &TestServer, connector: &str, resource: &str, min_attempts: u64) -> Value {
    let d = eventually(
        "the delivery to be done",
        Duration::from_secs(20),
        async || {
            delivery_of(s, connector, resource)
                .await
                .filter(|d| d["status"] == "done")
        },
    )
    .await;
    eprintln!(
        "{connector}: done after {} attempts, last_status={}",
        d["attempts"], d["last_status"]
    );
    assert!(d["attempts"].as_u64().unwrap_or(0) >= min_attempts, "{d}");
    assert!(d["last_error"].is_null(), "{d}");
    d
}

// ---------------------------------------------------------------------------------------
// Webhooks

/// A faulty webhook (URL with userinfo and a query secret) and a healthy one.
async fn webhook_setup(fault: Fault) -> (TestServer, Downstream, Receiver, tempfile::TempDir) {
    record_planted_secrets();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Downstream::start(Kind::Webhook, fault, None).await;
    let healthy = Receiver::start().await;
    let url = format!(
        "http://relay:{URL_PASSWORD}@{}/hook?token={URL_QUERY_SECRET}",
        target.addr
    );
    let config = format!(
        "{}{}",
        webhook_connector(
            dir.path(),
            "faulty",
            &url,
            &new_secret(),
            &format!("timeout_ms = {TIMEOUT_MS}\n{RETRY}"),
        ),
        webhook_connector(dir.path(), "healthy", &healthy.url, &new_secret(), ""),
    );
    let s = TestServer::start_with(&config).await;
    (s, target, healthy, dir)
}

/// The fault makes every attempt fail: retried with the same webhook-id, each attempt
/// bounded, the error readable, the healthy webhook unaffected; once the target is healthy
/// the event is accepted exactly once.
async fn webhook_fault_is_retried(fault: Fault, expect: &[&str], waits_for_timeout: bool) {
    let (s, target, healthy, _dir) = webhook_setup(fault).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;

    let d = failing_delivery(&s, "faulty", &ann, expect).await;
    let id = d["id"].as_str().expect("delivery id").to_string();
    // Meanwhile, other changes still reach the healthy connector at once.
    let bob = idp_creates(&s, "bob@example.com").await;
    healthy_gets(&healthy, &bob).await;

    target.set(Fault::Healthy, None);
    let healed = Instant::now();
    delivered(&s, "faulty", &ann, 2).await;
    delivered(&s, "faulty", &bob, 1).await;
    eprintln!(
        "recovered {:?} after the target turned healthy",
        healed.elapsed()
    );
    let seen = target.seen();
    timeline(&seen);
    let faulty: Vec<&Seen> = seen.iter().filter(|r| r.fault != Fault::Healthy).collect();
    assert!(faulty.len() >= 2, "{seen:#?}");
    assert!(faulty.iter().all(|r| !r.webhook_id.is_empty()), "{seen:#?}");
    let of_ann: Vec<&Seen> = seen.iter().filter(|r| r.webhook_id == id).collect();
    let accepted = of_ann.iter().filter(|r| r.fault == Fault::Healthy).count();
    assert_eq!(accepted, 1, "accepted once after recovery: {of_ann:#?}");
    if waits_for_timeout {
        assert_bounded_by_timeout(&target, |a| a.webhook_id == id).await;
    }
    for w in of_ann.windows(2) {
        assert!(w[1].at > w[0].at + Duration::from_millis(5), "{of_ann:#?}");
    }
    assert_eq!(
        healthy
            .accepted()
            .iter()
            .filter(|r| r.resource_id() == ann)
            .count(),
        1
    );
    s.stop().await;
}

/// The fault is in the body of a 2xx, which a webhook never reads: delivered on the first
/// attempt, without waiting for the body.
async fn webhook_fault_is_delivered(fault: Fault) {
    let (s, target, healthy, _dir) = webhook_setup(fault).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    let d = delivered(&s, "faulty", &ann, 1).await;
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(d["last_status"], 200, "{d}");
    let seen = target.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_never_answers_times_out_and_retries() {
    webhook_fault_is_retried(Fault::Hang, &["timed out"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_resets_the_connection_is_retried() {
    webhook_fault_is_retried(Fault::Reset, &["request failed", "reset"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_answers_headers_slowly_times_out() {
    webhook_fault_is_retried(Fault::SlowHeaders, &["timed out"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_garbage_status_line_is_retried() {
    webhook_fault_is_retried(
        Fault::GarbageStatus,
        &["request failed", "invalid HTTP"],
        false,
    )
    .await;
}

/// The delivery's error is the status and exactly the answer's first KiB, and the
/// connector hung up long before the endless answer ran out.
#[track_caller]
fn kept_a_kilobyte(d: &Value, status: u16, target: &Downstream) {
    let error = d["last_error"].as_str().unwrap_or("");
    assert_eq!(
        error,
        format!("HTTP {status}: {}", "x".repeat(1024)),
        "the status and the answer's first kilobyte"
    );
    eprintln!(
        "the target wrote {} bytes before the connector hung up",
        target.huge_written()
    );
    assert!(
        target.huge_written() < HUGE_BOUND,
        "the target wrote {} bytes into one answer before the connector stopped reading",
        target.huge_written()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_huge_error_body_keeps_a_kilobyte() {
    let (s, target, healthy, _dir) = webhook_setup(Fault::Huge(500)).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    let d = failing_delivery(&s, "faulty", &ann, &["HTTP 500"]).await;
    assert_eq!(d["last_status"], 500, "{d}");
    kept_a_kilobyte(&d, 500, &target);
    target.set(Fault::Healthy, None);
    delivered(&s, "faulty", &ann, 2).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_2xx_with_a_slow_malformed_or_truncated_body_is_delivered() {
    for fault in [Fault::SlowBody, Fault::MalformedJson, Fault::Truncated] {
        webhook_fault_is_delivered(fault).await;
    }
}

// ---------------------------------------------------------------------------------------
// SCIM targets

/// A SCIM connector at the fake target, and a healthy webhook beside it.
async fn scim_setup(
    fault: Fault,
    only: Option<&'static str>,
    timeout_ms: u64,
) -> (TestServer, Downstream, Receiver, tempfile::TempDir) {
    record_planted_secrets();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Downstream::start(Kind::Scim, fault, only).await;
    let healthy = Receiver::start().await;
    let token = dir.path().join("app.token");
    std::fs::write(&token, SCIM_TOKEN).expect("token file");
    let config = format!(
        "[[connectors]]\nname = \"app\"\nkind = \"scim\"\nurl = \"http://{}/scim/v2\"\n\
         token_file = \"{}\"\ntimeout_ms = {timeout_ms}\n\
         [connectors.mapping]\nuserName = \"userName\"\ndisplayName = \"displayName\"\ntitle = \"title\"\n{RETRY}\n{}",
        target.addr,
        token.display(),
        webhook_connector(dir.path(), "healthy", &healthy.url, &new_secret(), ""),
    );
    let s = TestServer::start_with(&config).await;
    (s, target, healthy, dir)
}

/// The fault makes every attempt fail until the target is healthy; then the user exists at
/// the target exactly once, with the gateway's attributes.
async fn scim_fault_is_retried(
    fault: Fault,
    only: Option<&'static str>,
    expect: &[&str],
    waits_for_timeout: bool,
) {
    let (s, target, healthy, _dir) = scim_setup(fault, only, TIMEOUT_MS).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    failing_delivery(&s, "app", &ann, expect).await;
    let bob = idp_creates(&s, "bob@example.com").await;
    healthy_gets(&healthy, &bob).await;

    target.set(Fault::Healthy, None);
    let healed = Instant::now();
    delivered(&s, "app", &ann, 2).await;
    delivered(&s, "app", &bob, 1).await;
    eprintln!(
        "recovered {:?} after the target turned healthy",
        healed.elapsed()
    );
    timeline(&target.seen());
    if waits_for_timeout {
        assert_bounded_by_timeout(&target, |_| true).await;
    }
    for name in ["ann@example.com", "bob@example.com"] {
        let users = target.users_named(name);
        assert_eq!(users.len(), 1, "{name} at the target: {users:#?}");
        assert_eq!(users[0]["displayName"], "Ann Lee", "{users:#?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_target_that_never_answers_times_out_and_retries() {
    scim_fault_is_retried(Fault::Hang, None, &["timed out"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_target_that_resets_the_connection_is_retried() {
    scim_fault_is_retried(Fault::Reset, None, &["request failed", "reset"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_target_that_answers_slowly_times_out() {
    scim_fault_is_retried(Fault::SlowBody, None, &["timed out"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_create_answered_slowly_is_retried_and_adopted() {
    // The POST is carried out but its answer does not complete in time: the retry must adopt
    // the user it created instead of creating a second one.
    scim_create_answer_is_broken(Fault::SlowBody, "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_target_with_a_garbage_status_line_is_retried() {
    scim_fault_is_retried(
        Fault::GarbageStatus,
        None,
        &["request failed", "invalid HTTP"],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_lookup_with_malformed_json_is_retried_not_taken_for_no_match() {
    // The target already has ann. A garbled lookup answer read as "no such user" would POST
    // (409), look up again, and dead-letter the delivery as a conflict.
    let (s, target, healthy, _dir) =
        scim_setup(Fault::MalformedJson, Some("GET"), TIMEOUT_MS).await;
    let remote = target.seed_user("ann@example.com");
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    let d = failing_delivery(&s, "app", &ann, &["HTTP 200", "not valid JSON"]).await;
    assert_eq!(d["last_status"], 200, "{d}");
    let writes = target
        .seen()
        .into_iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 0, "nothing written on a lookup it could not read");

    target.set(Fault::Healthy, None);
    delivered(&s, "app", &ann, 2).await;
    let users = target.users_named("ann@example.com");
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(users[0]["id"], remote.as_str(), "adopted, not created");
    assert_eq!(users[0]["displayName"], "Ann Lee");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_create_answered_with_malformed_json_is_retried_and_adopted() {
    scim_create_answer_is_broken(Fault::MalformedJson, "not valid JSON").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_create_answered_with_a_truncated_body_is_retried_and_adopted() {
    scim_create_answer_is_broken(Fault::Truncated, "request failed").await;
}

/// The target creates the user but its 201 is broken: the attempt is retried (the log says
/// why), and the retry finds the user by userName and adopts it: one user, one POST.
async fn scim_create_answer_is_broken(fault: Fault, expect: &str) {
    let (s, target, healthy, _dir) = scim_setup(fault, Some("POST"), TIMEOUT_MS).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    let d = delivered(&s, "app", &ann, 2).await;
    let users = target.users_named("ann@example.com");
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(users[0]["displayName"], "Ann Lee");
    let posts = target
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "{:#?}", target.seen());
    let entries = eventually(
        "the failed attempt in the log",
        Duration::from_secs(10),
        async || {
            let log = admin_get(&s, "/api/log?connector=app&limit=100").await;
            let entries = log.as_array().cloned().unwrap_or_default();
            let retried = entries.iter().any(|e| e["outcome"] == "retry");
            let done = entries.iter().any(|e| e["outcome"] == "delivered");
            (retried && done).then_some(entries)
        },
    )
    .await;
    let retry = entries
        .iter()
        .find(|e| e["outcome"] == "retry")
        .expect("a retry entry");
    let detail = retry["detail"].as_str().unwrap_or("");
    assert!(detail.contains(expect), "log detail {detail:?}");
    assert_eq!(retry["delivery_id"], d["id"], "{retry}");
    assert_no_secret(&retry.to_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_patch_answered_with_malformed_json_counts_as_applied() {
    let (s, target, _healthy, _dir) = scim_setup(Fault::Healthy, None, TIMEOUT_MS).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    delivered(&s, "app", &ann, 1).await;
    target.set(Fault::MalformedJson, Some("PATCH"));
    let before = target.seen().len();
    let started = Instant::now();
    let r = s
        .patch(
            &format!("/Users/{ann}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Engineer"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(started.elapsed() < PROMPT);
    eventually(
        "the title at the target",
        Duration::from_secs(10),
        async || {
            let users = target.users_named("ann@example.com");
            (users.len() == 1 && users[0]["title"] == "Engineer").then_some(())
        },
    )
    .await;
    let all = eventually("every delivery done", Duration::from_secs(10), async || {
        let all = deliveries(&s, "app").await;
        (all.len() == 2 && all.iter().all(|d| d["status"] == "done")).then_some(all)
    })
    .await;
    assert!(all.iter().all(|d| d["attempts"] == 1), "{all:#?}");
    let patches: Vec<Seen> = target.seen()[before..]
        .iter()
        .filter(|r| r.method == "PATCH")
        .cloned()
        .collect();
    assert_eq!(patches.len(), 1, "one PATCH, not repeated: {patches:#?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_lookup_with_an_endless_body_is_cut_off() {
    // A longer timeout than the other tests: a reader without a cap would have time to
    // buffer the whole budget, which the byte count below would show.
    let (s, target, healthy, _dir) = scim_setup(Fault::Huge(200), Some("GET"), 10_000).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    healthy_gets(&healthy, &ann).await;
    let d = failing_delivery(&s, "app", &ann, &["larger than"]).await;
    assert_eq!(d["last_status"], 200, "{d}");
    eprintln!(
        "the target wrote {} bytes before the connector hung up",
        target.huge_written()
    );
    assert!(
        target.huge_written() < HUGE_BOUND,
        "the target wrote {} bytes into one answer before the connector stopped reading",
        target.huge_written()
    );
    target.set(Fault::Healthy, None);
    delivered(&s, "app", &ann, 2).await;
    assert_eq!(target.users_named("ann@example.com").len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_error_answer_with_an_endless_body_keeps_a_kilobyte() {
    let (s, target, _healthy, _dir) = scim_setup(Fault::Huge(503), None, 10_000).await;
    let ann = idp_creates(&s, "ann@example.com").await;
    let d = failing_delivery(&s, "app", &ann, &["HTTP 503"]).await;
    kept_a_kilobyte(&d, 503, &target);
    target.set(Fault::Healthy, None);
    delivered(&s, "app", &ann, 2).await;
    assert_eq!(target.users_named("ann@example.com").len(), 1);
    s.stop().await;
}
