//! A small Standard Webhooks receiver for scim-relay's webhook connector, used in the README
//! walkthrough and handy for trying a config locally.
//!
//! ```text
//! export HR_EVENTS_SECRET=whsec_...            # the same value scim-relay signs with
//! cargo run --example webhook_receiver -- --listen 127.0.0.1:9000 --secret-env HR_EVENTS_SECRET
//! ```
//!
//! `--secret whsec_...` takes the secret literally instead (for tests; it shows up in the
//! process list), and several secrets separated by commas or spaces are accepted during a
//! rotation. Every POST to `--path` (default `/events`) is checked the way a production receiver
//! should check it: the `webhook-timestamp` must be within ±300 s of this machine's clock and one
//! `v1` entry of `webhook-signature` must match (`scim_relay::connector::signing::verify`);
//! otherwise the answer is 401 and the reason goes to stderr. A `webhook-id` seen before is
//! answered 200 and printed as `duplicate` (scim-relay keeps the id across retries, so this is
//! how a receiver stays idempotent; the set lives in memory only). A verified body that is not
//! JSON gets 400. Each accepted event is printed on stdout as one line,
//!
//! ```text
//! <webhook-id> <type> <data.resourceType>/<data.id> changed=[a,b] [members=[id,...]]
//! ```
//!
//! (`members=` only for `group.members_*` events), and answered 204.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::{ArgGroup, Parser};
use serde_json::Value;

use scim_relay::connector::signing::{self, Secret, SigningError};

/// How far `webhook-timestamp` may be from this machine's clock (the spec's ±5 minutes).
const TOLERANCE_SECS: i64 = 300;

#[derive(Parser)]
#[command(
    name = "webhook_receiver",
    about = "Receive and verify scim-relay's signed webhook events"
)]
#[command(group(ArgGroup::new("key").required(true).args(["secret_env", "secret_file", "secret"])))]
struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Name of the environment variable holding the `whsec_...` secret(s).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// File holding the `whsec_...` secret(s), like a connector's `secret_file`.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<std::path::PathBuf>,
    /// The `whsec_...` secret(s) themselves (for tests).
    #[arg(long, value_name = "WHSEC")]
    secret: Option<String>,
    /// Path that receives the POSTs.
    #[arg(long, default_value = "/events")]
    path: String,
}

struct Receiver {
    secrets: Vec<Secret>,
    seen: Mutex<HashSet<String>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let secrets = match load_secrets(&args) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("webhook_receiver: {message}");
            return ExitCode::from(2);
        }
    };
    if !args.path.starts_with('/') {
        eprintln!("webhook_receiver: --path must start with `/`");
        return ExitCode::from(2);
    }
    let state = Arc::new(Receiver {
        secrets,
        seen: Mutex::new(HashSet::new()),
    });
    let app = Router::new()
        .route(&args.path, post(receive))
        .with_state(state);

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("webhook_receiver: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    eprintln!("webhook_receiver: listening on http://{bound}{}", args.path);
    let shutdown = async {
        // If the handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webhook_receiver: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The secrets from `--secret` or from the variable `--secret-env` names. Errors name the
/// variable, never its value.
fn load_secrets(args: &Args) -> Result<Vec<Secret>, String> {
    if let Some(path) = &args.secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return signing::parse_secrets(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let (text, source) = match (&args.secret, &args.secret_env) {
        (Some(text), _) => (text.clone(), "--secret".to_string()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(text) => (text, format!("${var}")),
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {var} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {var} is not valid UTF-8"))
            }
        },
        (None, None) => {
            return Err("give --secret-env VAR, --secret-file PATH or --secret WHSEC".into())
        }
    };
    signing::parse_secrets(&text).map_err(|e| format!("{source}: {e}"))
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let id = match header(&headers, "webhook-id") {
        Ok(id) if !id.is_empty() => id,
        _ => return reject("-", "missing or unreadable webhook-id header"),
    };
    let Ok(timestamp) = header(&headers, "webhook-timestamp") else {
        return reject(id, "missing or unreadable webhook-timestamp header");
    };
    let Ok(signature) = header(&headers, "webhook-signature") else {
        return reject(id, "missing or unreadable webhook-signature header");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if let Err(e) = signing::verify(
        &rx.secrets,
        id,
        timestamp,
        signature,
        &body,
        now,
        TOLERANCE_SECS,
    ) {
        let why = match e {
            SigningError::Timestamp => format!(
                "webhook-timestamp {timestamp:?} is not within ±{TOLERANCE_SECS} s of now ({now})"
            ),
            other => other.to_string(),
        };
        return reject(id, &why);
    }

    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{id}: rejected (400): body is not JSON: {e}");
            return (StatusCode::BAD_REQUEST, "body is not JSON\n").into_response();
        }
    };

    let first_time = match rx.seen.lock() {
        Ok(mut seen) => seen.insert(id.to_string()),
        Err(poisoned) => poisoned.into_inner().insert(id.to_string()),
    };
    if !first_time {
        println!("{id} duplicate");
        return (StatusCode::OK, "duplicate\n").into_response();
    }

    println!("{}", summary(id, &event));
    StatusCode::NO_CONTENT.into_response()
}

/// A header's value as text; `Err` when it is missing or not visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ()> {
    headers
        .get(name)
        .ok_or(())
        .and_then(|v| v.to_str().map_err(|_| ()))
}

fn reject(id: &str, why: &str) -> Response {
    eprintln!("{id}: rejected (401): {why}");
    (StatusCode::UNAUTHORIZED, "webhook verification failed\n").into_response()
}

/// `<id> <type> <resourceType>/<resource id> changed=[...]` plus ` members=[...]` when the event
/// carries a member list. Missing fields print as `-`, a missing list as `[]`.
fn summary(id: &str, event: &Value) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    let list = |v: Option<&Value>| match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| text(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    let data = event.get("data");
    let field = |name: &str| data.and_then(|d| d.get(name));
    let mut line = format!(
        "{id} {} {}/{} changed=[{}]",
        text(event.get("type")),
        text(field("resourceType")),
        text(field("id")),
        list(field("changed")),
    );
    if let Some(members) = field("members") {
        line.push_str(&format!(" members=[{}]", list(Some(members))));
    }
    line
}
