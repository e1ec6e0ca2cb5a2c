//! The delivery engine: one dispatch loop per connector.
//!
//! A loop claims due deliveries (woken by the store right after a commit, or by its own
//! timer for retries), sends them on tasks bounded by the connector's concurrency and rate
//! limit, and records each outcome. Different resources go out in parallel; one resource's
//! deliveries go out one at a time, in event order (the claim query sees to that). A
//! connector whose attempts keep failing opens its circuit: it then sends one probe at a
//! time, with growing pauses, while the other connectors carry on.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::policy::{backoff_ms, next_attempt_at, Outcome};
use super::Fanout;
use crate::connector::Connector;
use crate::metrics::metrics;
use crate::provlog::{self, Direction, LogEntry, LogOutcome};
use crate::store::{now_ms, Claimed, Store, StoreError};

/// Most deliveries claimed in one transaction.
const CLAIM_BATCH: usize = 256;
/// The longest a loop sleeps without looking for work, so deliveries queued by another
/// process (`scim-relay deliveries retry`) start within this time.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The running engine; dropping it does not stop the loops, [`Engine::shutdown`] does.
pub struct Engine {
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Stops claiming, lets in-flight attempts finish (up to `grace`), and returns. An
    /// attempt cut short stays in flight in the database and is sent again on restart.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_join(self.loops);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("deliveries still in flight at shutdown are resent on restart");
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// Returns deliveries a previous run left in flight to the queue, then starts one loop per
/// connector. `connectors[i]` must be the connector behind route `i` of `fanout`.
pub async fn start(
    store: Store,
    fanout: &Fanout,
    connectors: Vec<Connector>,
) -> Result<Engine, StoreError> {
    let released = store.release_in_flight().await?;
    if released > 0 {
        tracing::info!(
            released,
            "deliveries interrupted by the last shutdown are queued again"
        );
    }
    let (stop, stopped) = watch::channel(false);
    let mut loops = Vec::new();
    for (i, connector) in connectors.into_iter().enumerate() {
        let notify = fanout
            .notifier(i)
            .unwrap_or_else(|| Arc::new(Notify::new()));
        let dispatcher = Dispatcher::new(store.clone(), Arc::new(connector), notify);
        loops.push(tokio::spawn(dispatcher.run(stopped.clone())));
    }
    Ok(Engine { stop, loops })
}

/// Consecutive failures and, once they reach the threshold, when to probe next.
struct Circuit {
    failures: u32,
    open: bool,
    probe_delay_ms: u64,
    next_probe: Instant,
}

/// A token bucket: `rate` requests per second, bursts up to one second's worth.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// How long to wait before the next request may go; takes its token.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        let burst = self.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

struct Dispatcher {
    store: Store,
    connector: Arc<Connector>,
    notify: Arc<Notify>,
    permits: Arc<Semaphore>,
    circuit: Arc<Mutex<Circuit>>,
    rate: Option<Mutex<RateLimit>>,
}

impl Dispatcher {
    fn new(store: Store, connector: Arc<Connector>, notify: Arc<Notify>) -> Dispatcher {
        let limits = connector.limits().clone();
        Dispatcher {
            store,
            permits: Arc::new(Semaphore::new(limits.concurrency)),
            circuit: Arc::new(Mutex::new(Circuit {
                failures: 0,
                open: false,
                probe_delay_ms: limits.retry.initial_ms,
                next_probe: Instant::now(),
            })),
            rate: limits.rate_limit.map(|rate| {
                Mutex::new(RateLimit {
                    rate,
                    tokens: rate.max(1.0),
                    last: Instant::now(),
                })
            }),
            connector,
            notify,
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.connector.name().to_string();
        let concurrency = self.connector.limits().concurrency;
        let lease_ms = i64::try_from(self.connector.limits().timeout.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(60_000);
        loop {
            if *stop.borrow() {
                break;
            }
            match self.store.connector_switches(&name).await {
                Ok(switches) if switches.paused => {
                    // The kill switch: work waits in the outbox until resumed.
                    self.idle(&mut stop, IDLE_POLL).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(connector = %name, error = %e, "cannot read connector switches");
                    self.idle(&mut stop, IDLE_POLL).await;
                    continue;
                }
            }
            let (open, probe_wait) = self.circuit_state();
            if let Some(wait) = probe_wait {
                self.idle(&mut stop, wait).await;
                continue;
            }
            let free = self.permits.available_permits();
            // An open circuit sends a single probe, and only when nothing else is in flight.
            let want = if open {
                usize::from(free == concurrency)
            } else {
                free.min(CLAIM_BATCH)
            };
            if want == 0 {
                self.idle(&mut stop, IDLE_POLL).await;
                continue;
            }
            let batch = match self.store.claim(&name, want, lease_ms).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(connector = %name, error = %e, "cannot claim deliveries");
                    self.idle(&mut stop, IDLE_POLL).await;
                    continue;
                }
            };
            if batch.is_empty() {
                let wait = match self.store.next_due(&name).await {
                    Ok(Some(due)) => {
                        let ms = due.saturating_sub(now_ms()).clamp(0, 1_000);
                        // Due but not claimable: an earlier delivery of the same resource is
                        // in flight, and its completion wakes us.
                        Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1))
                    }
                    _ => IDLE_POLL,
                };
                let wait = if wait <= Duration::from_millis(1) {
                    IDLE_POLL
                } else {
                    wait
                };
                self.idle(&mut stop, wait).await;
                continue;
            }
            for delivery in batch {
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                if let Some(rate) = &self.rate {
                    let wait = rate.lock().map(|mut r| r.take()).unwrap_or(Duration::ZERO);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                let connector = self.connector.clone();
                let store = self.store.clone();
                let circuit = self.circuit.clone();
                let notify = self.notify.clone();
                tokio::spawn(async move {
                    attempt(&store, &connector, &circuit, delivery).await;
                    drop(permit);
                    notify.notify_one();
                });
            }
        }
        // Wait for attempts in flight: acquiring every permit means all have finished.
        let n = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(n).await;
        tracing::debug!(connector = %name, "dispatcher stopped");
    }

    /// Whether the circuit is open, and how long to wait before the next probe.
    fn circuit_state(&self) -> (bool, Option<Duration>) {
        match self.circuit.lock() {
            Ok(c) if c.open => {
                let now = Instant::now();
                (true, (c.next_probe > now).then(|| c.next_probe - now))
            }
            _ => (false, None),
        }
    }

    async fn idle(&self, stop: &mut watch::Receiver<bool>, wait: Duration) {
        tokio::select! {
            _ = self.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Sends one delivery and records what happened: in the outbox, in the metrics, and in the
/// provisioning log (one entry per attempt, carrying the request id of the SCIM change that
/// caused it).
async fn attempt(store: &Store, connector: &Connector, circuit: &Mutex<Circuit>, d: Claimed) {
    let name = connector.name();
    let rid = d.request_id.as_deref().unwrap_or("");
    let at = now_ms();
    let started = Instant::now();
    let outcome = connector.deliver(&d).await;
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_millis();
    let policy = &connector.limits().retry;
    let (logged, recorded) = match &outcome {
        Outcome::Delivered { status } => {
            tracing::debug!(connector = name, delivery = %d.id, request_id = rid, status, elapsed_ms, "delivered");
            close_circuit(circuit, name, policy.initial_ms);
            (
                LogOutcome::Delivered,
                store.mark_delivered(&d.id, *status).await,
            )
        }
        Outcome::Retry {
            status,
            error,
            retry_after_ms,
        } => {
            let next = next_attempt_at(
                policy,
                d.created_at,
                now_ms(),
                d.attempts,
                *retry_after_ms,
                rand::random::<f64>(),
            );
            let logged = match next {
                Some(_) => {
                    tracing::warn!(connector = name, delivery = %d.id, request_id = rid, attempt = d.attempts, error = %error, "delivery failed; will retry");
                    LogOutcome::Retry
                }
                None => {
                    tracing::error!(connector = name, delivery = %d.id, request_id = rid, error = %error, "delivery failed past the give-up age; dead-lettered");
                    LogOutcome::Dead
                }
            };
            trip_circuit(circuit, name, policy);
            (logged, store.mark_failed(&d.id, *status, error, next).await)
        }
        Outcome::Deferred {
            reason,
            retry_after_ms,
        } => {
            tracing::info!(connector = name, delivery = %d.id, request_id = rid, reason = %reason, "delivery held back");
            let next = now_ms().saturating_add(i64::try_from(*retry_after_ms).unwrap_or(i64::MAX));
            (
                LogOutcome::Deferred,
                store.mark_failed(&d.id, None, reason, Some(next)).await,
            )
        }
        Outcome::Permanent { status, error } => {
            tracing::error!(connector = name, delivery = %d.id, request_id = rid, error = %error, "delivery rejected; dead-lettered");
            if *status == Some(410) {
                // 410 Gone: the endpoint says it no longer exists. Stop sending (the rest
                // waits in the outbox) until an operator fixes the URL and resumes.
                tracing::error!(connector = name, "the target answered 410 Gone; connector paused (`scim-relay connectors resume {name}` after fixing its url)");
                if let Err(e) = store.set_paused(name, true).await {
                    tracing::error!(connector = name, error = %e, "cannot pause the connector");
                }
            }
            (
                LogOutcome::Dead,
                store.mark_failed(&d.id, *status, error, None).await,
            )
        }
    };
    if let Err(e) = recorded {
        // The delivery stays in flight in the database; `claim` takes it back once its lease
        // runs out (or a restart releases it) and sends it again.
        tracing::error!(connector = name, delivery = %d.id, request_id = rid, error = %e, "cannot record a delivery outcome");
    }
    metrics().delivery_attempt(name, logged, elapsed);
    if provlog::enabled(store) {
        provlog::record(
            store,
            outbound_entry(connector, &d, &outcome, logged, at, elapsed),
        );
    }
}

/// The parts of an event envelope the provisioning log names: its type, and whose
/// userName it carries. Everything else in the payload is skipped without being kept.
#[derive(serde::Deserialize)]
struct EnvelopeFacts<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<DataFacts<'a>>,
}

#[derive(serde::Deserialize)]
struct DataFacts<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<ResourceFacts<'a>>,
}

#[derive(serde::Deserialize)]
struct ResourceFacts<'a> {
    #[serde(rename = "userName", borrow)]
    user_name: Option<Cow<'a, str>>,
}

/// The provisioning-log entry of one attempt: what was sent for which resource, to whom,
/// and how it ended. The userName comes from the event's snapshot when the event is about
/// this very user (a group event fanned out to a member is not); the recorder looks up the
/// rest by id. Never the payload, headers or secrets.
fn outbound_entry(
    connector: &Connector,
    d: &Claimed,
    outcome: &Outcome,
    logged: LogOutcome,
    at: i64,
    elapsed: Duration,
) -> LogEntry {
    let (resource_type, resource_id) = match d.resource_key.split_once('/') {
        Some((kind, id)) => (Some(kind.to_string()), Some(id.to_string())),
        None => (None, Some(d.resource_key.clone())),
    };
    let facts = serde_json::from_str::<EnvelopeFacts<'_>>(&d.payload).ok();
    let event_type = facts.as_ref().and_then(|f| f.event_type.as_deref());
    let user_name = facts
        .as_ref()
        .and_then(|f| f.data.as_ref())
        .filter(|data| {
            data.resource_type.as_deref() == Some("User")
                && data.id.as_deref() == resource_id.as_deref()
        })
        .and_then(|data| data.resource.as_ref()?.user_name.as_deref())
        .map(str::to_string);
    let operation = match connector {
        Connector::Webhook(_) => format!("deliver {}", event_type.unwrap_or("event")),
        Connector::Scim(_) => format!("sync {}", resource_type.as_deref().unwrap_or("resource")),
    };
    let (status, detail) = match outcome {
        Outcome::Delivered { status } => (Some(*status), None),
        Outcome::Retry { status, error, .. } | Outcome::Permanent { status, error } => {
            (*status, Some(provlog::truncate_detail(error)))
        }
        Outcome::Deferred { reason, .. } => (None, Some(provlog::truncate_detail(reason))),
    };
    LogEntry {
        id: None,
        at,
        direction: Direction::Out,
        actor: Some(connector.name().to_string()),
        operation,
        resource_type,
        resource_id,
        user_name,
        status,
        latency_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        outcome: logged,
        detail,
        request_id: d.request_id.clone(),
        delivery_id: Some(d.id.clone()),
    }
}

fn close_circuit(circuit: &Mutex<Circuit>, name: &str, initial_ms: u64) {
    if let Ok(mut c) = circuit.lock() {
        if c.open {
            tracing::info!(connector = name, "target answered again; circuit closed");
            metrics().set_circuit_open(name, false);
        }
        c.failures = 0;
        c.open = false;
        c.probe_delay_ms = initial_ms;
    }
}

fn trip_circuit(circuit: &Mutex<Circuit>, name: &str, policy: &crate::config::RetryConfig) {
    if let Ok(mut c) = circuit.lock() {
        c.failures = c.failures.saturating_add(1);
        if c.failures >= policy.circuit_after {
            if !c.open {
                tracing::warn!(
                    connector = name,
                    failures = c.failures,
                    "every attempt fails; circuit open, probing with backoff"
                );
                metrics().set_circuit_open(name, true);
            }
            c.open = true;
            let delay = backoff_ms(policy, 1, 1.0).max(c.probe_delay_ms);
            c.next_probe = Instant::now() + Duration::from_millis(delay);
            c.probe_delay_ms = c.probe_delay_ms.saturating_mul(2).min(policy.max_ms);
        }
    }
}
