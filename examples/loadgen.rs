//! A lean load generator for the SCIM API, meant to leave the server most of the CPU.
//!
//! Each of `--connections` tokio tasks owns one HTTP/1.1 keep-alive connection and sends
//! requests back to back; latencies of successful requests made after `--warmup` are kept per
//! task (microseconds) and merged at the end. By default everything runs on one thread.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/scim/v2 \
//!     --token TOKEN [--connections 64] [--duration 10] [--warmup 1] [--threads 1] [--json] SCENARIO
//! ```
//!
//! Scenarios: `create`, `seed [--users 100000]`, `filter [--users 100000]`,
//! `patch [--targets 1000]`. Any failure (unexpected status, failed body check, refused or
//! closed connection, timeout) is counted, whether it happened during warm-up or not, and makes
//! the exit code 1; setup problems exit with 2.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SCIM_JSON: &str = "application/scim+json";
/// How long requests still in flight at the end of a phase may take before being abandoned.
const GRACE: Duration = Duration::from_secs(5);
/// A phase without a duration of its own (seeding, creating patch targets) stops after this.
const SETUP_LIMIT: Duration = Duration::from_secs(3600);

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Benchmark load generator for the scim-relay SCIM API"
)]
struct Cli {
    /// Base URL of the SCIM API (plain http only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080/scim/v2")]
    url: String,
    /// Bearer token.
    #[arg(long, global = true, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Concurrent keep-alive connections, one task each.
    #[arg(long, global = true, default_value_t = 64)]
    connections: usize,
    /// Seconds of measurement (after warm-up); for `seed`, an upper bound (default 3600).
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Seconds of load before measuring starts.
    #[arg(long, global = true, default_value_t = 1.0)]
    warmup: f64,
    /// Runtime threads: 1 runs everything on a current-thread runtime.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Seconds before a single request is abandoned and counted as failed.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    /// Also print one JSON line with the figures.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone, Copy)]
enum Scenario {
    /// POST /Users with unique userNames; expects 201.
    Create,
    /// Make sure at least --users `seed-<i>@example.com` users exist.
    Seed {
        #[arg(long, default_value_t = 100_000)]
        users: u64,
    },
    /// GET /Users?filter=userName eq "seed-<random>@example.com"; expects exactly one match.
    Filter {
        #[arg(long, default_value_t = 100_000)]
        users: u64,
    },
    /// Create --targets users, then PATCH random ones Entra-style; expects 200.
    Patch {
        #[arg(long, default_value_t = 1000)]
        targets: u64,
    },
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Create => "create",
            Scenario::Seed { .. } => "seed",
            Scenario::Filter { .. } => "filter",
            Scenario::Patch { .. } => "patch",
        }
    }
}

/// What every request needs: where to connect and the fixed headers.
struct Ctx {
    addr: String,
    host: HeaderValue,
    auth: HeaderValue,
    base: String,
    users_uri: Uri,
    timeout: Duration,
}

type Sender = SendRequest<Full<Bytes>>;

/// How a response is judged beyond its status code.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    Status,
    /// A list response with `"totalResults":1`.
    TotalOne,
    /// Keep the `id` of the created resource.
    CaptureId,
    /// Seeding: 409 (already there) is fine too.
    Seed,
}

struct Spec {
    method: Method,
    uri: Uri,
    body: Option<Bytes>,
    expect: StatusCode,
    check: Check,
}

/// The requests one phase sends.
enum Work {
    Create {
        run: String,
    },
    Seed {
        next: AtomicU64,
        end: u64,
        done: AtomicU64,
        started: Instant,
    },
    Targets {
        run: String,
        next: AtomicU64,
        end: u64,
    },
    Filter {
        users: u64,
    },
    Patch {
        ids: Vec<String>,
    },
}

const GIVEN: [&str; 8] = [
    "Adele", "Bruno", "Chen", "Dagny", "Emeka", "Farah", "Goran", "Hana",
];
const FAMILY: [&str; 8] = [
    "Vance",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Silva",
    "Novak",
    "Haddad",
];
const DEPARTMENT: [&str; 5] = ["Engineering", "Sales", "Finance", "Support", "Marketing"];
const TITLE: [&str; 5] = ["Engineer", "Manager", "Analyst", "Director", "Consultant"];

/// An Entra ID style create body.
fn user_body(user_name: &str, external_id: &str, k: u64) -> Bytes {
    let given = GIVEN[(k % 8) as usize];
    let family = FAMILY[((k / 8) % 8) as usize];
    let dept = DEPARTMENT[(k % 5) as usize];
    format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","#,
            r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"#,
            r#""externalId":"{ext}","userName":"{un}","active":true,"#,
            r#""displayName":"{g} {f}","#,
            r#""emails":[{{"primary":true,"type":"work","value":"{un}"}}],"#,
            r#""meta":{{"resourceType":"User"}},"#,
            r#""name":{{"formatted":"{g} {f}","familyName":"{f}","givenName":"{g}"}},"#,
            r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":"#,
            r#"{{"department":"{d}"}}}}"#
        ),
        ext = external_id,
        un = user_name,
        g = given,
        f = family,
        d = dept,
    )
    .into()
}

fn uri(s: String) -> Option<Uri> {
    Uri::from_maybe_shared(Bytes::from(s)).ok()
}

impl Work {
    fn next(&self, ctx: &Ctx, task: usize, n: u64, rng: &mut SmallRng) -> Option<Spec> {
        let post = |body: Bytes, check: Check| Spec {
            method: Method::POST,
            uri: ctx.users_uri.clone(),
            body: Some(body),
            expect: StatusCode::CREATED,
            check,
        };
        match self {
            Work::Create { run } => {
                let un = format!("lg-{run}-{task}-{n}@example.com");
                let ext = format!("{run}{task:04x}{n:08x}");
                Some(post(user_body(&un, &ext, rng.random()), Check::Status))
            }
            Work::Seed { next, end, .. } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= *end {
                    return None;
                }
                let un = format!("seed-{i}@example.com");
                let ext = format!("seed-{i:08}");
                Some(post(user_body(&un, &ext, i), Check::Seed))
            }
            Work::Targets { run, next, end } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= *end {
                    return None;
                }
                let un = format!("lgp-{run}-{i}@example.com");
                let ext = format!("lgp-{run}-{i}");
                Some(post(user_body(&un, &ext, i), Check::CaptureId))
            }
            Work::Filter { users } => {
                let i = rng.random_range(0..*users);
                Some(Spec {
                    method: Method::GET,
                    uri: uri(format!(
                        "{}/Users?filter=userName%20eq%20%22seed-{i}%40example.com%22",
                        ctx.base
                    ))?,
                    body: None,
                    expect: StatusCode::OK,
                    check: Check::TotalOne,
                })
            }
            Work::Patch { ids } => {
                let id = &ids[rng.random_range(0..ids.len())];
                let title = TITLE[rng.random_range(0..TITLE.len())];
                let body = format!(
                    concat!(
                        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"#,
                        r#""Operations":[{{"op":"Replace","path":"title","value":"{t} {n}"}},"#,
                        r#"{{"op":"Replace","path":"active","value":"True"}}]}}"#
                    ),
                    t = title,
                    n = rng.random::<u32>(),
                );
                Some(Spec {
                    method: Method::PATCH,
                    uri: uri(format!("{}/Users/{id}", ctx.base))?,
                    body: Some(body.into()),
                    expect: StatusCode::OK,
                    check: Check::Status,
                })
            }
        }
    }

    /// Called after each successful request (seeding progress).
    fn done(&self) {
        if let Work::Seed { done, started, .. } = self {
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d % 10_000 == 0 {
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "seed: {d} created, {:.0} users/s",
                    d as f64 / secs.max(1e-9)
                );
            }
        }
    }
}

/// Per-task results; merged at the end.
#[derive(Default)]
struct Stats {
    lat_us: Vec<u32>,
    ok: u64,
    /// Responses with an unexpected status, by status.
    statuses: BTreeMap<u16, u64>,
    /// Expected status but the body check failed.
    mismatches: u64,
    /// Connection refused or handshake failed.
    connect: u64,
    /// A kept-alive connection found closed before a request.
    closed: u64,
    /// Sending or receiving failed mid-request.
    io: u64,
    timeouts: u64,
    /// Seeding: users already there (409).
    exists: u64,
    first_failure: Option<String>,
    ids: Vec<String>,
    first_ok: Option<Instant>,
    last_ok: Option<Instant>,
}

impl Stats {
    fn failed(&self) -> u64 {
        self.statuses.values().sum::<u64>()
            + self.mismatches
            + self.connect
            + self.closed
            + self.io
            + self.timeouts
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.first_failure.is_none() {
            self.first_failure = Some(what());
        }
    }

    fn merge(&mut self, o: Stats) {
        self.lat_us.extend_from_slice(&o.lat_us);
        self.ok += o.ok;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.mismatches += o.mismatches;
        self.connect += o.connect;
        self.closed += o.closed;
        self.io += o.io;
        self.timeouts += o.timeouts;
        self.exists += o.exists;
        if self.first_failure.is_none() {
            self.first_failure = o.first_failure;
        }
        self.ids.extend(o.ids);
        self.first_ok = match (self.first_ok, o.first_ok) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ok = self.last_ok.max(o.last_ok);
    }
}

async fn connect(ctx: &Ctx) -> Result<Sender, String> {
    let stream = TcpStream::connect(&ctx.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", ctx.addr))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {}: {e}", ctx.addr))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(ctx: &Ctx, spec: Spec) -> Request<Full<Bytes>> {
    let has_body = spec.body.is_some();
    let mut req = Request::new(Full::new(spec.body.unwrap_or_default()));
    *req.method_mut() = spec.method;
    *req.uri_mut() = spec.uri;
    let h = req.headers_mut();
    h.insert(HOST, ctx.host.clone());
    h.insert(AUTHORIZATION, ctx.auth.clone());
    h.insert(ACCEPT, HeaderValue::from_static(SCIM_JSON));
    if has_body {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    }
    req
}

async fn exchange(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// True when the body says `"totalResults":1` (not 10, 11, ...).
fn total_is_one(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"totalResults\":";
    let Some(p) = find_last(body, KEY) else {
        return false;
    };
    let rest = &body[p + KEY.len()..];
    let start = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &rest[start..];
    rest.first() == Some(&b'1') && !rest.get(1).is_some_and(u8::is_ascii_digit)
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.replace('\n', " ")
}

/// One connection's loop: send requests back to back until the work or the time runs out.
async fn worker(
    task: usize,
    ctx: Arc<Ctx>,
    work: Arc<Work>,
    mut sender: Option<Sender>,
    measure_from: Instant,
    end: Instant,
) -> (Stats, Option<Sender>) {
    let mut st = Stats::default();
    let mut rng = SmallRng::seed_from_u64(rand::random::<u64>() ^ task as u64);
    let mut n: u64 = 0;
    let hard_end = end + GRACE;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            prev => {
                if prev.is_some() {
                    st.closed += 1;
                    st.note(|| "server closed a keep-alive connection".into());
                }
                let deadline = (now + ctx.timeout).min(hard_end);
                match tokio::time::timeout_at(deadline, connect(&ctx)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        st.connect += 1;
                        st.note(|| e);
                        tokio::time::sleep_until((now + Duration::from_millis(100)).min(end)).await;
                        continue;
                    }
                    Err(_) => {
                        st.timeouts += 1;
                        st.note(|| "connect timed out".into());
                        continue;
                    }
                }
            }
        };
        let Some(spec) = work.next(&ctx, task, n, &mut rng) else {
            sender = Some(s);
            break;
        };
        n += 1;
        let (expect, check) = (spec.expect, spec.check);
        let req = request(&ctx, spec);
        let t0 = Instant::now();
        let res =
            tokio::time::timeout_at((t0 + ctx.timeout).min(hard_end), exchange(&mut s, req)).await;
        let t1 = Instant::now();
        let (status, body) = match res {
            Ok(Ok(r)) => {
                sender = Some(s);
                r
            }
            Ok(Err(e)) => {
                st.io += 1;
                st.note(|| format!("request failed: {e}"));
                continue;
            }
            Err(_) => {
                st.timeouts += 1;
                st.note(|| "request timed out".into());
                continue;
            }
        };
        let good = if status == expect {
            match check {
                Check::Status | Check::Seed => true,
                Check::TotalOne => total_is_one(&body),
                Check::CaptureId => {
                    match serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                    {
                        Some(id) => {
                            st.ids.push(id);
                            true
                        }
                        None => false,
                    }
                }
            }
        } else if check == Check::Seed && status == StatusCode::CONFLICT {
            st.exists += 1;
            continue;
        } else {
            *st.statuses.entry(status.as_u16()).or_default() += 1;
            st.note(|| format!("HTTP {status}: {}", snippet(&body)));
            continue;
        };
        if !good {
            st.mismatches += 1;
            st.note(|| format!("unexpected body for HTTP {status}: {}", snippet(&body)));
            continue;
        }
        work.done();
        if t0 >= measure_from {
            st.lat_us
                .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
            st.ok += 1;
            if st.first_ok.is_none() {
                st.first_ok = Some(t0);
            }
            st.last_ok = Some(t1);
        }
    }
    (st, sender)
}

/// Run one phase on all connections; returns merged stats and the connections for reuse.
async fn run_phase(
    ctx: &Arc<Ctx>,
    work: Arc<Work>,
    senders: Vec<Option<Sender>>,
    measure_from: Instant,
    end: Instant,
) -> (Stats, Vec<Option<Sender>>) {
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(task, s)| {
            tokio::spawn(worker(
                task,
                ctx.clone(),
                work.clone(),
                s,
                measure_from,
                end,
            ))
        })
        .collect();
    let mut all = Stats::default();
    let mut senders = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok((st, s)) => {
                all.merge(st);
                senders.push(s);
            }
            Err(e) => {
                all.io += 1;
                all.note(|| format!("worker task failed: {e}"));
                senders.push(None);
            }
        }
    }
    (all, senders)
}

/// One request on a fresh connection (setup only).
async fn one_shot(ctx: &Ctx, uri: Uri) -> Result<(StatusCode, Bytes), String> {
    let mut s = tokio::time::timeout(ctx.timeout, connect(ctx))
        .await
        .map_err(|_| "connect timed out".to_string())??;
    let req = request(
        ctx,
        Spec {
            method: Method::GET,
            uri,
            body: None,
            expect: StatusCode::OK,
            check: Check::Status,
        },
    );
    tokio::time::timeout(ctx.timeout, exchange(&mut s, req))
        .await
        .map_err(|_| "request timed out".to_string())?
        .map_err(|e| format!("request failed: {e}"))
}

/// `totalResults` of a list request.
async fn total_results(ctx: &Ctx, query: &str) -> Result<u64, String> {
    let u = uri(format!("{}/Users?{query}", ctx.base)).ok_or("bad URL")?;
    let (status, body) = one_shot(ctx, u).await?;
    if status != StatusCode::OK {
        return Err(format!("HTTP {status}: {}", snippet(&body)));
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("totalResults")?.as_u64())
        .ok_or_else(|| format!("no totalResults in {}", snippet(&body)))
}

/// Whether `seed-<i>@example.com` exists (an indexed `eq` lookup).
async fn seed_exists(ctx: &Ctx, i: u64) -> Result<bool, String> {
    let q = format!("filter=userName%20eq%20%22seed-{i}%40example.com%22&count=1");
    Ok(total_results(ctx, &q).await? > 0)
}

/// How many seed users exist, assuming they were created in index order: the first missing
/// index, found by binary search with `eq` lookups (a `sw` filter or the overall
/// `totalResults` would be slow or count other users).
async fn seed_count(ctx: &Ctx, users: u64) -> Result<u64, String> {
    if users == 0 || seed_exists(ctx, users - 1).await? {
        return Ok(users);
    }
    let (mut lo, mut hi) = (0, users - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if seed_exists(ctx, mid).await? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

struct Summary {
    rps: f64,
    secs: f64,
    ok: u64,
    failed: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summarize(st: &mut Stats, measure_from: Instant) -> Summary {
    st.lat_us.sort_unstable();
    let v = &st.lat_us;
    let pct = |q: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[idx] as f64 / 1000.0
    };
    let from = st.first_ok.map_or(measure_from, |f| f.max(measure_from));
    let secs = st
        .last_ok
        .map_or(0.0, |l| l.saturating_duration_since(from).as_secs_f64());
    Summary {
        rps: if secs > 0.0 { st.ok as f64 / secs } else { 0.0 },
        secs,
        ok: st.ok,
        failed: st.failed(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: v.last().map_or(0.0, |&m| m as f64 / 1000.0),
    }
}

fn report(name: &str, st: &mut Stats, measure_from: Instant, cli: &Cli) -> u64 {
    let s = summarize(st, measure_from);
    println!(
        "{name}: {:.0} req/s over {:.1} s ({} ok, {} failed), latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms",
        s.rps, s.secs, s.ok, s.failed, s.p50, s.p90, s.p99, s.max
    );
    if s.failed > 0 {
        let statuses: Vec<String> = st
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        eprintln!(
            "{name}: failures: statuses [{}], body mismatches {}, connect {}, closed {}, io {}, timeouts {}",
            statuses.join(" "),
            st.mismatches,
            st.connect,
            st.closed,
            st.io,
            st.timeouts
        );
        if let Some(f) = &st.first_failure {
            eprintln!("{name}: first failure: {f}");
        }
    }
    if cli.json {
        let statuses: serde_json::Map<String, serde_json::Value> = st
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "scenario": name,
                "req_per_s": round(s.rps),
                "seconds": round(s.secs),
                "ok": s.ok,
                "failed": s.failed,
                "p50_ms": s.p50,
                "p90_ms": s.p90,
                "p99_ms": s.p99,
                "max_ms": s.max,
                "connections": cli.connections,
                "threads": cli.threads,
                "failures": {
                    "statuses": statuses,
                    "mismatches": st.mismatches,
                    "connect": st.connect,
                    "closed": st.closed,
                    "io": st.io,
                    "timeouts": st.timeouts,
                },
                "existing": st.exists,
            })
        );
    }
    s.failed
}

fn secs(x: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(x).map_err(|_| format!("--{what} must be a non-negative number"))
}

/// Split `http://host:port/base` into a connect address, a Host header and the base path.
fn parse_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("--url needs a host[:port]".into());
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((
        addr,
        authority.to_string(),
        path.trim_end_matches('/').to_string(),
    ))
}

async fn run(cli: &Cli) -> Result<u64, String> {
    let token = cli
        .token
        .as_deref()
        .ok_or("--token is required (or LOADGEN_TOKEN)")?;
    let (addr, host, base) = parse_url(&cli.url)?;
    if cli.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let ctx = Arc::new(Ctx {
        addr,
        host: HeaderValue::from_str(&host).map_err(|_| "bad host in --url")?,
        auth: HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "bad --token")?,
        users_uri: uri(format!("{base}/Users")).ok_or("bad path in --url")?,
        base,
        timeout: secs(cli.timeout, "timeout")?,
    });
    let duration = secs(cli.duration.unwrap_or(10.0), "duration")?;
    let warmup = secs(cli.warmup, "warmup")?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let idle = || (0..cli.connections).map(|_| None).collect::<Vec<_>>();
    let name = cli.scenario.name();

    match cli.scenario {
        Scenario::Create | Scenario::Filter { .. } => {
            let work = match cli.scenario {
                Scenario::Filter { users } => {
                    if users == 0 {
                        return Err("--users must be at least 1".into());
                    }
                    Work::Filter { users }
                }
                _ => Work::Create { run: run_id },
            };
            let start = Instant::now();
            let (mut st, _) = run_phase(
                &ctx,
                Arc::new(work),
                idle(),
                start + warmup,
                start + warmup + duration,
            )
            .await;
            Ok(report(name, &mut st, start + warmup, cli))
        }
        Scenario::Seed { users } => {
            let total = total_results(&ctx, "count=1").await?;
            let have = seed_count(&ctx, users).await?;
            if have >= users {
                println!("seed: {have} seed users already exist (wanted {users})");
                return Ok(0);
            }
            eprintln!(
                "seed: {total} users in all, {have} seed users; creating seed-{have}..seed-{}",
                users - 1
            );
            let start = Instant::now();
            let work = Arc::new(Work::Seed {
                next: AtomicU64::new(have),
                end: users,
                done: AtomicU64::new(0),
                started: start,
            });
            let limit = cli
                .duration
                .map_or(Ok(SETUP_LIMIT), |d| secs(d, "duration"))?;
            let (mut st, _) = run_phase(&ctx, work, idle(), start, start + limit).await;
            if st.exists > 0 {
                eprintln!("seed: {} users already existed (409)", st.exists);
            }
            let failed = report(name, &mut st, start, cli);
            if st.ok + st.exists + failed < users - have {
                eprintln!("seed: stopped by --duration before reaching {users}");
                return Ok(failed.max(1));
            }
            Ok(failed)
        }
        Scenario::Patch { targets } => {
            if targets == 0 {
                return Err("--targets must be at least 1".into());
            }
            let start = Instant::now();
            let setup = Arc::new(Work::Targets {
                run: run_id,
                next: AtomicU64::new(0),
                end: targets,
            });
            let (setup_st, senders) =
                run_phase(&ctx, setup, idle(), start, start + SETUP_LIMIT).await;
            let setup_failed = setup_st.failed();
            eprintln!(
                "patch: created {} targets in {:.1} s ({} failed)",
                setup_st.ids.len(),
                start.elapsed().as_secs_f64(),
                setup_failed
            );
            if let (true, Some(f)) = (setup_failed > 0, &setup_st.first_failure) {
                eprintln!("patch: first setup failure: {f}");
            }
            if setup_st.ids.is_empty() {
                return Err("no patch targets could be created".into());
            }
            let work = Arc::new(Work::Patch { ids: setup_st.ids });
            let start = Instant::now();
            let (mut st, _) = run_phase(
                &ctx,
                work,
                senders,
                start + warmup,
                start + warmup + duration,
            )
            .await;
            Ok(report(name, &mut st, start + warmup, cli) + setup_failed)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
