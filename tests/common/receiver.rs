//! A real webhook receiver on a loopback port: records every request and answers as its
//! script says (status and headers per request), so tests can play a target that fails,
//! throttles or recovers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub raw: Vec<u8>,
    pub body: Value,
    pub at: Instant,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
    pub fn resource_id(&self) -> &str {
        self.body["data"]["id"].as_str().unwrap_or("")
    }
}

/// Decides the answer to request number `n` (0-based): status and extra headers.
pub type Script = Arc<dyn Fn(usize) -> (u16, Vec<(&'static str, String)>) + Send + Sync>;

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    script: Script,
    delay: Duration,
}

pub struct Receiver {
    pub url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver that accepts everything with 204.
    pub async fn start() -> Receiver {
        Self::scripted(Arc::new(|_| (204, Vec::new())), Duration::ZERO).await
    }

    pub async fn scripted(script: Script, delay: Duration) -> Receiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            log: log.clone(),
            script,
            delay,
        };
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/events"),
            log,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    /// Requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits (bounded) until `pred` holds for what was accepted.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.accepted()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; accepted {} of {} requests",
                self.accepted().len(),
                self.received().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // Numbering and logging under one lock, so concurrent requests get distinct numbers.
    let (status, extra) = {
        let Ok(mut log) = shared.log.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let (status, extra) = (shared.script)(log.len());
        log.push(Received {
            webhook_id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            raw: body.to_vec(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            at: Instant::now(),
            answered: status,
        });
        (status, extra)
    };
    let mut resp = StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
