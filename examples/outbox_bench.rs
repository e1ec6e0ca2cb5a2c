//! End-to-end benchmark of the outbox: SCIM writes in, signed webhooks out.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/outbox_bench [--bin target/release/scim-relay] [--rate 1000] \
//!     [--duration 10] [--connectors 3] [--backlog 30000] [--workdir DIR] [--json]
//! ```
//!
//! Everything runs on 127.0.0.1 and in one process beside the server: `--connectors` webhook
//! receivers (hyper, one runtime thread named `bench-recv`) answer 204 and note when each
//! user's event arrived (signatures are not checked here, the tests do that); a temporary
//! folder gets a config with one `[[connectors]]` webhook per receiver, a token is created
//! with `scim-relay token create`, and `scim-relay serve` runs as a child until the end.
//! The SCIM client runs on the main thread (one current-thread runtime).
//!
//! 1. latency: POST /Users at a fixed open-loop `--rate` for `--duration` seconds over
//!    16 keep-alive connections; per delivery, end-to-end latency = arrival at the receiver
//!    minus the moment the client had the 201 (it can be slightly negative: the outbox may
//!    send before the 201 has travelled back).
//! 2. throughput: `--backlog` creates as fast as 64 connections go, then deliveries/s from
//!    the first create to the last arrival, and the drain rate after the last 201.
//!
//! Each phase also reports CPU use (from /proc) of scim-relay, its busiest threads, and of this
//! process. Exit code 1 when a create failed or a delivery is missing, 2 on a setup error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::error::Error;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;
type Sender = SendRequest<Full<Bytes>>;

const SCIM_JSON: &str = "application/scim+json";
const LATENCY_CONNS: usize = 16;
const FLOOD_CONNS: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After the latency phase's writes, how long its deliveries may take.
const LATENCY_WAIT: Duration = Duration::from_secs(30);
/// The throughput phase's creates stop after this.
const FLOOD_LIMIT: Duration = Duration::from_secs(600);
/// After the throughput phase's writes, how long the backlog may take to drain.
const DRAIN_WAIT: Duration = Duration::from_secs(120);
const STARTUP_WAIT: Duration = Duration::from_secs(30);
/// Largest event body a receiver reads.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// /proc times are in USER_HZ, which Linux fixes at 100 for user space.
const CLK_TCK: f64 = 100.0;

#[derive(Parser)]
#[command(
    name = "outbox_bench",
    about = "Benchmark scim-relay's outbox: SCIM creates to webhook arrivals"
)]
struct Cli {
    /// The scim-relay binary to run.
    #[arg(long, default_value = "target/release/scim-relay")]
    bin: PathBuf,
    /// Creates per second in the latency phase (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Webhook receivers, one connector each.
    #[arg(long, default_value_t = 3)]
    connectors: usize,
    /// Users created as fast as possible in the throughput phase.
    #[arg(long, default_value_t = 30_000)]
    backlog: u64,
    /// Folder to create the temporary config and database in (default: the system temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Also print one JSON line with every figure.
    #[arg(long)]
    json: bool,
}

// ---------------------------------------------------------------------------------------------
// Receivers

/// What one receiver saw. `arrivals[seq]` is the first arrival of user `seq`'s event, in
/// nanoseconds since `Recorder::base` plus one (0: not yet).
struct Hook {
    arrivals: Vec<AtomicU64>,
    /// Distinct users seen, per phase.
    got: [AtomicU64; 2],
    requests: AtomicU64,
    duplicates: AtomicU64,
    /// Bodies that are not an event for one of this run's users.
    unattributed: AtomicU64,
}

struct Recorder {
    base: Instant,
    /// `ob-<run>-`: userNames are `<prefix><seq>@example.com`.
    prefix: String,
    /// Users `0..split` belong to the latency phase, the rest to the throughput phase.
    split: u64,
    hooks: Vec<Hook>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: EventData<'a>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    resource: EventResource<'a>,
}

#[derive(Deserialize)]
struct EventResource<'a> {
    #[serde(borrow, rename = "userName")]
    user_name: Cow<'a, str>,
}

impl Recorder {
    fn new(prefix: String, split: u64, total: u64, hooks: usize) -> Recorder {
        let len = usize::try_from(total).unwrap_or(0);
        Recorder {
            base: Instant::now(),
            prefix,
            split,
            hooks: (0..hooks)
                .map(|_| Hook {
                    arrivals: (0..len).map(|_| AtomicU64::new(0)).collect(),
                    got: [AtomicU64::new(0), AtomicU64::new(0)],
                    requests: AtomicU64::new(0),
                    duplicates: AtomicU64::new(0),
                    unattributed: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        (stamp > 0).then(|| self.base + Duration::from_nanos(stamp - 1))
    }

    fn seq_of(&self, body: &[u8]) -> Option<u64> {
        let event: Envelope<'_> = serde_json::from_slice(body).ok()?;
        event
            .data
            .resource
            .user_name
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix("@example.com")?
            .parse()
            .ok()
    }

    fn record(&self, hook: usize, body: Option<Bytes>, at: Instant) {
        let Some(h) = self.hooks.get(hook) else {
            return;
        };
        h.requests.fetch_add(1, Relaxed);
        let seq = body.as_deref().and_then(|b| self.seq_of(b));
        let slot = seq.and_then(|s| Some((s, h.arrivals.get(usize::try_from(s).ok()?)?)));
        match slot {
            Some((seq, slot)) => {
                if slot
                    .compare_exchange(0, self.stamp(at), Relaxed, Relaxed)
                    .is_ok()
                {
                    h.got[usize::from(seq >= self.split)].fetch_add(1, Relaxed);
                } else {
                    h.duplicates.fetch_add(1, Relaxed);
                }
            }
            None => {
                h.unattributed.fetch_add(1, Relaxed);
            }
        }
    }

    fn arrival(&self, hook: usize, seq: u64) -> Option<Instant> {
        let slot = self
            .hooks
            .get(hook)?
            .arrivals
            .get(usize::try_from(seq).ok()?)?;
        self.instant(slot.load(Relaxed))
    }

    /// Whether every receiver has every one of `seqs`.
    fn has_all(&self, phase: usize, seqs: &[u64]) -> bool {
        let n = seqs.len() as u64;
        self.hooks.iter().all(|h| h.got[phase].load(Relaxed) >= n)
            && (0..self.hooks.len()).all(|i| seqs.iter().all(|&s| self.arrival(i, s).is_some()))
    }

    fn sum(&self, f: impl Fn(&Hook) -> &AtomicU64) -> u64 {
        self.hooks.iter().map(|h| f(h).load(Relaxed)).sum()
    }
}

async fn receive(
    rec: Arc<Recorder>,
    hook: usize,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let body = Limited::new(req.into_body(), MAX_EVENT_BYTES)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes());
    rec.record(hook, body, Instant::now());
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Serves one receiver until the runtime shuts down.
async fn serve_hook(listener: std::net::TcpListener, rec: Arc<Recorder>, hook: usize) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("outbox_bench: receiver {hook} cannot listen: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let rec = rec.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| receive(rec.clone(), hook, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The scim-relay child

/// Kills the server when dropped, on every path out of `run`.
struct ServerGuard {
    child: Child,
    log: PathBuf,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerGuard {
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("scim-relay exited ({status})")),
            _ => None,
        }
    }
}

/// The last lines of the server's stderr, for error messages.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs a command to completion within `limit`; returns its stdout.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Res<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    if !status.success() {
        return Err(format!("{cmd:?} failed ({status}): {}", err.trim()).into());
    }
    Ok(out)
}

fn write_config(dir: &Path, port: u16, hooks: &[SocketAddr]) -> Res<PathBuf> {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\npath = \"bench.db\"\n\n\
         [logging]\nlevel = \"warn\"\n"
    );
    for (i, addr) in hooks.iter().enumerate() {
        text.push_str(&format!(
            "\n[[connectors]]\nname = \"hook{i}\"\nkind = \"webhook\"\n\
             url = \"http://{addr}/events\"\nsecret_env = \"BENCH_SECRET\"\n\
             events = [\"user.*\"]\nconcurrency = 32\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// SCIM client (after examples/loadgen.rs)

struct Ctx {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
    users: Uri,
    prefix: String,
}

async fn connect(addr: SocketAddr) -> Res<Sender> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn exchange(s: &mut Sender, req: Request<Full<Bytes>>) -> Res<(StatusCode, Bytes)> {
    s.ready().await?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One GET on a fresh connection (start-up checks).
async fn get_status(addr: SocketAddr, path: &str) -> Res<StatusCode> {
    let fut = async {
        let mut s = connect(addr).await?;
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = Uri::try_from(path)?;
        req.headers_mut()
            .insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        Ok::<_, Box<dyn Error + Send + Sync>>(exchange(&mut s, req).await?.0)
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .map_err(|_| "timed out")?
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

/// An Entra ID style create body for user `seq`.
fn create_request(ctx: &Ctx, seq: u64) -> Request<Full<Bytes>> {
    let (g, f) = (GIVEN[(seq % 8) as usize], FAMILY[((seq / 8) % 8) as usize]);
    let un = format!("{}{seq}@example.com", ctx.prefix);
    let body = format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","#,
            r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"#,
            r#""externalId":"{ext}","userName":"{un}","active":true,"#,
            r#""displayName":"{g} {f}","#,
            r#""emails":[{{"primary":true,"type":"work","value":"{un}"}}],"#,
            r#""name":{{"formatted":"{g} {f}","familyName":"{f}","givenName":"{g}"}},"#,
            r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":"#,
            r#"{{"department":"{d}","employeeNumber":"{seq}"}}}}"#
        ),
        ext = format!("{}{seq}", ctx.prefix),
        un = un,
        g = g,
        f = f,
        d = DEPARTMENT[(seq % 5) as usize],
        seq = seq,
    );
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = ctx.users.clone();
    let h = req.headers_mut();
    h.insert(HOST, ctx.host.clone());
    h.insert(AUTHORIZATION, ctx.auth.clone());
    h.insert(ACCEPT, HeaderValue::from_static(SCIM_JSON));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    req
}

/// The creates of one phase: users `next..end`, optionally paced at `rate` from `start`.
struct Plan {
    next: AtomicU64,
    first: u64,
    end: u64,
    pace: Option<(Instant, f64)>,
    /// No request is started after this.
    deadline: Instant,
}

#[derive(Default)]
struct Tally {
    /// (seq, sent, 201 received)
    created: Vec<(u64, Instant, Instant)>,
    failures: BTreeMap<String, u64>,
    first_failure: Option<String>,
    /// How far behind its schedule the latest paced send went.
    max_lag: Duration,
}

impl Tally {
    fn fail(&mut self, kind: String, detail: impl FnOnce() -> String) {
        *self.failures.entry(kind).or_default() += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(detail());
        }
    }

    fn merge(&mut self, o: Tally) {
        self.created.extend(o.created);
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        if self.first_failure.is_none() {
            self.first_failure = o.first_failure;
        }
        self.max_lag = self.max_lag.max(o.max_lag);
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

async fn create_worker(ctx: Arc<Ctx>, plan: Arc<Plan>, mut sender: Option<Sender>) -> Tally {
    let mut t = Tally::default();
    loop {
        let seq = plan.next.fetch_add(1, Relaxed);
        if seq >= plan.end {
            break;
        }
        if let Some((start, rate)) = plan.pace {
            let at = start + Duration::from_secs_f64((seq - plan.first) as f64 / rate);
            let now = Instant::now();
            if at > now {
                tokio::time::sleep_until(at.into()).await;
            } else {
                t.max_lag = t.max_lag.max(now - at);
            }
        }
        if Instant::now() >= plan.deadline {
            t.fail("not sent (time limit)".into(), || {
                "the phase's time limit passed before every create was sent".into()
            });
            continue;
        }
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match tokio::time::timeout(REQUEST_TIMEOUT, connect(ctx.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    t.fail("connect".into(), || format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    t.fail("connect timeout".into(), || "connect timed out".into());
                    continue;
                }
            },
        };
        let req = create_request(&ctx, seq);
        let sent = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut s, req)).await {
            Ok(Ok((StatusCode::CREATED, _))) => {
                t.created.push((seq, sent, Instant::now()));
                sender = Some(s);
            }
            Ok(Ok((status, body))) => {
                t.fail(format!("HTTP {}", status.as_u16()), || {
                    let b = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    format!("HTTP {status}: {b}")
                });
                sender = Some(s);
            }
            Ok(Err(e)) => t.fail("io".into(), || format!("request failed: {e}")),
            Err(_) => t.fail("timeout".into(), || "request timed out".into()),
        }
    }
    t
}

/// Runs a phase's creates on `conns` fresh keep-alive connections.
async fn run_creates(ctx: &Arc<Ctx>, plan: Plan, conns: usize) -> Res<Tally> {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let s = tokio::time::timeout(Duration::from_secs(10), connect(ctx.addr))
            .await
            .map_err(|_| "connect to scim-relay timed out")??;
        senders.push(s);
    }
    let plan = Arc::new(Plan {
        pace: plan
            .pace
            .map(|(_, rate)| (Instant::now() + Duration::from_millis(5), rate)),
        ..plan
    });
    let handles: Vec<_> = senders
        .into_iter()
        .map(|s| tokio::spawn(create_worker(ctx.clone(), plan.clone(), Some(s))))
        .collect();
    let mut all = Tally::default();
    for h in handles {
        match h.await {
            Ok(t) => all.merge(t),
            Err(e) => all.fail("task".into(), || format!("client task failed: {e}")),
        }
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// CPU from /proc

/// utime + stime (ticks) and comm of one /proc stat file.
fn stat_ticks(path: &Path) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let (head, rest) = s.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// A process's CPU ticks, in all and per thread name (trailing digits dropped, so the
/// `store-reader-N` threads count together).
struct CpuSample {
    at: Instant,
    total: u64,
    threads: BTreeMap<String, u64>,
}

fn cpu_sample(pid: &str) -> Option<CpuSample> {
    let at = Instant::now();
    let (_, total) = stat_ticks(&PathBuf::from(format!("/proc/{pid}/stat")))?;
    let mut threads = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in dir.flatten() {
            if let Some((comm, ticks)) = stat_ticks(&entry.path().join("stat")) {
                let name = comm
                    .trim_end_matches(|c: char| c.is_ascii_digit())
                    .trim_end_matches('-')
                    .to_string();
                *threads.entry(name).or_default() += ticks;
            }
        }
    }
    Some(CpuSample { at, total, threads })
}

/// CPU use between two samples, in percent of one core: (total, per thread name, busiest first).
fn cpu_use(a: &Option<CpuSample>, b: &Option<CpuSample>) -> Option<(f64, Vec<(String, f64)>)> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let pct = |ticks: u64| ticks as f64 / CLK_TCK / secs * 100.0;
    let mut threads: Vec<(String, f64)> = b
        .threads
        .iter()
        .map(|(name, &t)| {
            let before = a.threads.get(name).copied().unwrap_or(0);
            (name.clone(), pct(t.saturating_sub(before)))
        })
        .collect();
    threads.sort_by(|x, y| y.1.total_cmp(&x.1));
    Some((pct(b.total.saturating_sub(a.total)), threads))
}

/// Busy ticks of the whole machine (all cores), from the `cpu` line of /proc/stat.
fn host_busy() -> Option<(Instant, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let busy = v.iter().take(8).sum::<u64>()
        - v.get(3).copied().unwrap_or(0)
        - v.get(4).copied().unwrap_or(0);
    Some((Instant::now(), busy))
}

/// CPU counters at the start of a phase.
struct CpuStart {
    server: Option<CpuSample>,
    bench: Option<CpuSample>,
    host: Option<(Instant, u64)>,
}

impl CpuStart {
    fn now(server_pid: &str) -> CpuStart {
        CpuStart {
            server: cpu_sample(server_pid),
            bench: cpu_sample("self"),
            host: host_busy(),
        }
    }
}

struct PhaseCpu {
    server: Option<(f64, Vec<(String, f64)>)>,
    bench: Option<(f64, Vec<(String, f64)>)>,
    /// CPU the rest of the machine used meanwhile (other processes, the kernel), which
    /// competes with the server: figures taken while it is high are not trustworthy.
    others: Option<f64>,
}

impl PhaseCpu {
    fn measure(server_pid: &str, from: &CpuStart) -> PhaseCpu {
        let now = CpuStart::now(server_pid);
        let server = cpu_use(&from.server, &now.server);
        let bench = cpu_use(&from.bench, &now.bench);
        let others = match (from.host, now.host, &server, &bench) {
            (Some((t0, b0)), Some((t1, b1)), Some((s, _)), Some((b, _))) => {
                let secs = t1.saturating_duration_since(t0).as_secs_f64();
                (secs > 0.0).then(|| {
                    (b1.saturating_sub(b0) as f64 / CLK_TCK / secs * 100.0 - s - b).max(0.0)
                })
            }
            _ => None,
        };
        PhaseCpu {
            server,
            bench,
            others,
        }
    }

    fn line(&self, phase: &str) -> String {
        let part = |name: &str, u: &Option<(f64, Vec<(String, f64)>)>| match u {
            None => format!("{name} n/a"),
            Some((total, threads)) => {
                let top: Vec<String> = threads
                    .iter()
                    .filter(|(_, p)| *p >= 1.0)
                    .take(5)
                    .map(|(n, p)| format!("{n} {p:.0}%"))
                    .collect();
                format!("{name} {total:.0}% [{}]", top.join(", "))
            }
        };
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!(
            "cpu ({phase}, % of one core, {cores} cores): {}; {}; rest of the machine {}",
            part("scim-relay", &self.server),
            part("bench", &self.bench),
            self.others.map_or("n/a".into(), |o| format!("{o:.0}%"))
        )
    }

    fn json(&self) -> serde_json::Value {
        let one = |u: &Option<(f64, Vec<(String, f64)>)>| match u {
            None => serde_json::Value::Null,
            Some((total, threads)) => json!({
                "pct": round1(*total),
                "threads": threads
                    .iter()
                    .map(|(n, p)| (n.clone(), json!(round1(*p))))
                    .collect::<serde_json::Map<_, _>>(),
            }),
        };
        json!({
            "scim_relay": one(&self.server),
            "bench": one(&self.bench),
            "others_pct": self.others.map(round1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of sorted microseconds, in ms.
fn pct_ms(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

fn micros(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from((earlier - later).as_micros()).unwrap_or(i64::MAX),
    }
}

fn failures_text(t: &Tally) -> String {
    let kinds: Vec<String> = t
        .failures
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    kinds.join(", ")
}

fn report_failures(phase: &str, t: &Tally) {
    if t.failed() > 0 {
        eprintln!("{phase}: failed creates: {}", failures_text(t));
        if let Some(f) = &t.first_failure {
            eprintln!("{phase}: first failure: {f}");
        }
    }
}

/// Waits (bounded) until every receiver has every user in `seqs`.
async fn wait_delivered(rec: &Recorder, phase: usize, seqs: &[u64], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if rec.has_all(phase, seqs) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(cli: &Cli, receivers: tokio::runtime::Handle) -> Res<u64> {
    if !(cli.rate > 0.0 && cli.rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    let duration = Duration::try_from_secs_f64(cli.duration)
        .map_err(|_| "--duration must be a non-negative number")?;
    let planned = (cli.rate * cli.duration).round() as u64;
    if planned == 0 || cli.connectors == 0 || cli.backlog == 0 {
        return Err("--rate × --duration, --connectors and --backlog must be at least 1".into());
    }
    if !cli.bin.is_file() {
        return Err(format!(
            "{} not found (cargo build --release --bins --examples)",
            cli.bin.display()
        )
        .into());
    }
    let n = cli.connectors as u64;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let prefix = format!("ob-{run_id}-");
    let rec = Arc::new(Recorder::new(
        prefix.clone(),
        planned,
        planned + cli.backlog,
        cli.connectors,
    ));

    // Receivers.
    let mut hook_addrs = Vec::new();
    for i in 0..cli.connectors {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        hook_addrs.push(l.local_addr()?);
        receivers.spawn(serve_hook(l, rec.clone(), i));
    }

    // The server.
    let dir = match &cli.workdir {
        Some(d) => tempfile::Builder::new()
            .prefix("outbox-bench")
            .tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("outbox-bench").tempdir()?,
    };
    let port = free_port()?;
    let config = write_config(dir.path(), port, &hook_addrs)?;
    let secret = {
        use base64::Engine;
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        )
    };
    let command = |args: &[&str]| {
        let mut c = Command::new(&cli.bin);
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("BENCH_SECRET", &secret)
            .env_remove("RUST_LOG");
        c
    };
    let token = run_bounded(
        &mut command(&["token", "create", "--name", "bench"]),
        Duration::from_secs(30),
    )?
    .trim()
    .to_string();
    if token.is_empty() {
        return Err("`token create` printed no token".into());
    }
    let log = dir.path().join("serve.log");
    let mut server = ServerGuard {
        child: command(&["serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
        log,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let up_by = Instant::now() + STARTUP_WAIT;
    loop {
        if let Some(why) = server.exited() {
            return Err(format!("{why}:\n{}", log_tail(&server.log, 20)).into());
        }
        if let Ok(StatusCode::OK) = get_status(addr, "/healthz").await {
            break;
        }
        if Instant::now() >= up_by {
            return Err(
                format!("scim-relay did not answer /healthz within {STARTUP_WAIT:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_pid = server.child.id().to_string();
    eprintln!(
        "outbox_bench: scim-relay pid {server_pid} on {addr}, {} webhook(s) on {}, data in {}",
        cli.connectors,
        hook_addrs
            .iter()
            .map(|a| a.port().to_string())
            .collect::<Vec<_>>()
            .join(","),
        dir.path().display()
    );
    let ctx = Arc::new(Ctx {
        addr,
        host: HeaderValue::from_str(&addr.to_string())?,
        auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
        users: Uri::try_from("/scim/v2/Users")?,
        prefix,
    });

    // Phase 1: latency at a fixed rate.
    eprintln!(
        "outbox_bench: latency phase: {planned} creates at {} /s",
        cli.rate
    );
    let cpu0 = CpuStart::now(&server_pid);
    let lat = run_creates(
        &ctx,
        Plan {
            next: AtomicU64::new(0),
            first: 0,
            end: planned,
            pace: Some((Instant::now(), cli.rate)),
            deadline: Instant::now() + duration + REQUEST_TIMEOUT,
        },
        LATENCY_CONNS,
    )
    .await?;
    let lat_seqs: Vec<u64> = lat.created.iter().map(|c| c.0).collect();
    let lat_complete = wait_delivered(&rec, 0, &lat_seqs, LATENCY_WAIT).await;
    let lat_cpu = PhaseCpu::measure(&server_pid, &cpu0);
    let mut e2e: Vec<i64> = Vec::with_capacity(lat.created.len() * cli.connectors);
    let mut from_sent: Vec<i64> = Vec::with_capacity(e2e.capacity());
    let mut create_us: Vec<i64> = Vec::with_capacity(lat.created.len());
    for &(seq, sent, done) in &lat.created {
        create_us.push(micros(done, sent));
        for h in 0..cli.connectors {
            if let Some(at) = rec.arrival(h, seq) {
                e2e.push(micros(at, done));
                from_sent.push(micros(at, sent));
            }
        }
    }
    e2e.sort_unstable();
    from_sent.sort_unstable();
    create_us.sort_unstable();
    let lat_expected = lat.created.len() as u64 * n;
    let lat_missing = lat_expected - e2e.len() as u64;
    let lat_span = match (
        lat.created.iter().map(|c| c.1).min(),
        lat.created.iter().map(|c| c.2).max(),
    ) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let lat_wps = if lat_span > 0.0 {
        lat.created.len() as f64 / lat_span
    } else {
        0.0
    };
    let negative = e2e.iter().filter(|&&x| x < 0).count();

    println!(
        "latency @{} writes/s: p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.1} ms ({} deliveries to {} webhooks{})",
        cli.rate,
        pct_ms(&e2e, 0.50),
        pct_ms(&e2e, 0.90),
        pct_ms(&e2e, 0.99),
        e2e.last().map_or(0.0, |&m| m as f64 / 1000.0),
        e2e.len(),
        cli.connectors,
        if lat_missing > 0 {
            format!(", {lat_missing} MISSING")
        } else {
            String::new()
        }
    );
    println!(
        "  scim creates: {} × 201 at {:.0}/s, p50 {:.2} ms p99 {:.2} ms max {:.1} ms, {} failed; sends behind schedule by up to {:.1} ms; {} deliveries arrived before the 201",
        lat.created.len(),
        lat_wps,
        pct_ms(&create_us, 0.50),
        pct_ms(&create_us, 0.99),
        create_us.last().map_or(0.0, |&m| m as f64 / 1000.0),
        lat.failed(),
        lat.max_lag.as_secs_f64() * 1000.0,
        negative
    );
    println!(
        "  from POST sent to arrival: p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.1} ms",
        pct_ms(&from_sent, 0.50),
        pct_ms(&from_sent, 0.90),
        pct_ms(&from_sent, 0.99),
        from_sent.last().map_or(0.0, |&m| m as f64 / 1000.0),
    );
    println!("  {}", lat_cpu.line("latency"));
    report_failures("latency", &lat);
    if !lat_complete {
        eprintln!(
            "latency: {lat_missing} of {lat_expected} deliveries had not arrived after {LATENCY_WAIT:?}"
        );
    }

    // Phase 2: a backlog as fast as possible, then the drain.
    eprintln!(
        "outbox_bench: throughput phase: {} creates on {FLOOD_CONNS} connections",
        cli.backlog
    );
    let cpu1 = CpuStart::now(&server_pid);
    let flood = run_creates(
        &ctx,
        Plan {
            next: AtomicU64::new(planned),
            first: planned,
            end: planned + cli.backlog,
            pace: None,
            deadline: Instant::now() + FLOOD_LIMIT,
        },
        FLOOD_CONNS,
    )
    .await?;
    let flood_seqs: Vec<u64> = flood.created.iter().map(|c| c.0).collect();
    let flood_complete = wait_delivered(&rec, 1, &flood_seqs, DRAIN_WAIT).await;
    let tp_cpu = PhaseCpu::measure(&server_pid, &cpu1);
    let first_send = flood.created.iter().map(|c| c.1).min();
    let last_201 = flood.created.iter().map(|c| c.2).max();
    let mut arrivals: Vec<Instant> = Vec::new();
    for h in 0..cli.connectors {
        for seq in planned..planned + cli.backlog {
            if let Some(at) = rec.arrival(h, seq) {
                arrivals.push(at);
            }
        }
    }
    let last_arrival = arrivals.iter().max().copied();
    let tp_expected = flood.created.len() as u64 * n;
    let tp_missing = flood_seqs
        .iter()
        .map(|&s| {
            (0..cli.connectors)
                .filter(|&h| rec.arrival(h, s).is_none())
                .count() as u64
        })
        .sum::<u64>();
    let (mut e2e_rate, mut drain_rate, mut after, mut drain_s, mut writes_s) =
        (0.0, 0.0, 0u64, 0.0, 0.0);
    if let (Some(first), Some(last), Some(end)) = (first_send, last_201, last_arrival) {
        let total_s = end.saturating_duration_since(first).as_secs_f64();
        if total_s > 0.0 {
            e2e_rate = arrivals.len() as f64 / total_s;
        }
        writes_s = last.saturating_duration_since(first).as_secs_f64();
        after = arrivals.iter().filter(|&&a| a > last).count() as u64;
        drain_s = end.saturating_duration_since(last).as_secs_f64();
        if drain_s > 0.0 {
            drain_rate = after as f64 / drain_s;
        }
    }
    let creates_per_s = if writes_s > 0.0 {
        flood.created.len() as f64 / writes_s
    } else {
        0.0
    };
    let during = arrivals.len() as u64 - after;
    println!(
        "throughput: {:.0} deliveries/s end to end ({} deliveries, {} webhooks{}); drain after writes {:.0}/s",
        e2e_rate,
        arrivals.len(),
        cli.connectors,
        if tp_missing > 0 {
            format!(", {tp_missing} MISSING")
        } else {
            String::new()
        },
        drain_rate
    );
    println!(
        "  scim creates: {} × 201 in {:.2} s ({:.0}/s, {} failed); {} deliveries arrived during the writes ({:.0}/s), {} after, drained in {:.2} s",
        flood.created.len(),
        writes_s,
        creates_per_s,
        flood.failed(),
        during,
        if writes_s > 0.0 { during as f64 / writes_s } else { 0.0 },
        after,
        drain_s
    );
    println!("  {}", tp_cpu.line("throughput"));
    report_failures("throughput", &flood);
    if !flood_complete {
        eprintln!(
            "throughput: {tp_missing} of {tp_expected} deliveries had not arrived after {DRAIN_WAIT:?}"
        );
    }

    let duplicates = rec.sum(|h| &h.duplicates);
    let unattributed = rec.sum(|h| &h.unattributed);
    let requests = rec.sum(|h| &h.requests);
    if duplicates > 0 || unattributed > 0 {
        eprintln!(
            "receivers: {requests} requests, {duplicates} duplicate deliveries, {unattributed} not attributable to this run's users"
        );
    }
    let warnings = log_tail(&server.log, usize::MAX);
    if !warnings.is_empty() {
        eprintln!(
            "scim-relay logged {} line(s) at warn or above; last ones:\n{}",
            warnings.lines().count(),
            log_tail(&server.log, 5)
        );
    }
    if let Some(why) = server.exited() {
        eprintln!("outbox_bench: {why} during the run");
    }

    let problems = lat.failed() + flood.failed() + lat_missing + tp_missing + unattributed;
    if cli.json {
        let failures = |t: &Tally| {
            t.failures
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
        };
        println!(
            "{}",
            json!({
                "connectors": cli.connectors,
                "latency": {
                    "target_writes_per_s": cli.rate,
                    "writes_per_s": round1(lat_wps),
                    "duration_s": cli.duration,
                    "creates": lat.created.len(),
                    "create_failures": failures(&lat),
                    "create_p50_ms": round3(pct_ms(&create_us, 0.50)),
                    "create_p99_ms": round3(pct_ms(&create_us, 0.99)),
                    "create_max_ms": round3(create_us.last().map_or(0.0, |&m| m as f64 / 1000.0)),
                    "max_schedule_lag_ms": round3(lat.max_lag.as_secs_f64() * 1000.0),
                    "deliveries": e2e.len(),
                    "expected": lat_expected,
                    "missing": lat_missing,
                    "before_201": negative,
                    "p50_ms": round3(pct_ms(&e2e, 0.50)),
                    "p90_ms": round3(pct_ms(&e2e, 0.90)),
                    "p99_ms": round3(pct_ms(&e2e, 0.99)),
                    "max_ms": round3(e2e.last().map_or(0.0, |&m| m as f64 / 1000.0)),
                    "min_ms": round3(e2e.first().map_or(0.0, |&m| m as f64 / 1000.0)),
                    "from_sent_p50_ms": round3(pct_ms(&from_sent, 0.50)),
                    "from_sent_p90_ms": round3(pct_ms(&from_sent, 0.90)),
                    "from_sent_p99_ms": round3(pct_ms(&from_sent, 0.99)),
                    "from_sent_max_ms": round3(from_sent.last().map_or(0.0, |&m| m as f64 / 1000.0)),
                    "cpu": lat_cpu.json(),
                },
                "throughput": {
                    "backlog": cli.backlog,
                    "creates": flood.created.len(),
                    "create_failures": failures(&flood),
                    "creates_per_s": round1(creates_per_s),
                    "writes_s": round3(writes_s),
                    "deliveries": arrivals.len(),
                    "expected": tp_expected,
                    "missing": tp_missing,
                    "deliveries_per_s": round1(e2e_rate),
                    "delivered_during_writes": during,
                    "delivered_after_writes": after,
                    "drain_s": round3(drain_s),
                    "drain_after_writes_per_s": round1(drain_rate),
                    "cpu": tp_cpu.json(),
                },
                "receiver_requests": requests,
                "duplicates": duplicates,
                "unattributed": unattributed,
                "ok": problems == 0,
            })
        );
    }
    drop(server);
    Ok(problems)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "interrupted".into(),
                _ = term.recv() => return "terminated".into(),
            }
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => "interrupted".into(),
        Err(_) => std::future::pending().await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let receivers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-recv")
        .enable_all()
        .build();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (receivers, client) = match (receivers, client) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("outbox_bench: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Interrupted, `run` is dropped, and with it the guard that kills the server.
    let result = client.block_on(async {
        tokio::select! {
            r = run(&cli, receivers.handle().clone()) => r,
            why = interrupted() => Err(why.into()),
        }
    });
    receivers.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("outbox_bench: {e}");
            ExitCode::from(2)
        }
    }
}
