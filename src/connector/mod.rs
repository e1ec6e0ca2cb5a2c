//! Downstream targets. Each connector turns one claimed delivery into one attempt against
//! its target and reports an [`Outcome`]; retries, ordering and bookkeeping are the
//! outbox's.

pub mod mapping;
pub mod reconcile;
pub mod scim;
pub mod signing;
pub mod webhook;

use std::time::Duration;

use crate::config::{Config, ConfigError, ConnectorConfig, ConnectorKind, RetryConfig};
use crate::outbox::policy::Outcome;
use crate::store::{Claimed, Store};

/// Settings every connector kind shares.
#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    pub rate_limit: Option<f64>,
    pub timeout: Duration,
    pub retry: RetryConfig,
}

pub enum Connector {
    Webhook(Box<webhook::WebhookConnector>),
    Scim(Box<scim::ScimConnector>),
}

impl Connector {
    /// Builds connector `index` of the config, reading its secrets.
    pub fn from_config(
        config: &Config,
        index: usize,
        c: &ConnectorConfig,
        store: &Store,
    ) -> Result<Connector, ConfigError> {
        match c.kind {
            ConnectorKind::Webhook => Ok(Connector::Webhook(Box::new(
                webhook::WebhookConnector::new(config, index, c)?,
            ))),
            ConnectorKind::Scim => Ok(Connector::Scim(Box::new(scim::ScimConnector::new(
                config,
                index,
                c,
                store.clone(),
            )?))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Connector::Webhook(w) => &w.name,
            Connector::Scim(s) => &s.name,
        }
    }

    pub fn limits(&self) -> &Limits {
        match self {
            Connector::Webhook(w) => &w.limits,
            Connector::Scim(s) => &s.limits,
        }
    }

    /// The SCIM connector behind this one, if it is one (reconciliation needs it).
    pub fn as_scim(&self) -> Option<&scim::ScimConnector> {
        match self {
            Connector::Scim(s) => Some(s),
            Connector::Webhook(_) => None,
        }
    }

    pub async fn deliver(&self, delivery: &Claimed) -> Outcome {
        match self {
            Connector::Webhook(w) => w.deliver(delivery).await,
            Connector::Scim(s) => s.deliver(delivery).await,
        }
    }
}

/// Builds every configured connector (secrets read now, so a missing one stops start-up).
pub fn from_config(config: &Config, store: &Store) -> Result<Vec<Connector>, ConfigError> {
    config
        .connectors
        .iter()
        .enumerate()
        .map(|(i, c)| Connector::from_config(config, i, c, store))
        .collect()
}

impl Limits {
    fn of(c: &ConnectorConfig) -> Limits {
        Limits {
            concurrency: c.concurrency,
            rate_limit: c.rate_limit,
            timeout: Duration::from_millis(c.timeout_ms),
            retry: c.retry.clone(),
        }
    }
}

/// The HTTP client of one connector: its timeout, no redirects (a payload goes to the
/// configured URL and nowhere else; a redirect is a failure), a pool sized to its
/// concurrency, and `headers` on every request.
fn http_client(
    c: &ConnectorConfig,
    headers: reqwest::header::HeaderMap,
) -> Result<reqwest::Client, reqwest::Error> {
    let timeout = Duration::from_millis(c.timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(c.concurrency)
        .default_headers(headers)
        .user_agent(concat!("scim-relay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The connector's configured extra headers.
fn extra_headers(
    c: &ConnectorConfig,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<reqwest::header::HeaderMap, ConfigError> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &c.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| bad("headers", format!("{k:?}: {e}")))?;
        let value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|e| bad("headers", format!("{k:?}: {e}")))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A network error in words an operator can act on (never the payload or headers). The URL
/// is left out: a configured URL may carry a credential in its query (`?token=…`), and the
/// error goes to the outbox, the provisioning log and the logs; the connector names the
/// target anyway.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    format!("{kind}: {detail}")
}

/// Why a response body was not read whole.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the answer is larger than {limit} bytes; not read further")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Read(String),
}

/// The body, up to `limit` bytes; a longer one is an error rather than buffered, so a target
/// cannot make the connector hold an unbounded answer in memory.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(describe(e)))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The first `limit` bytes of the body, for an error message: whatever arrives before the
/// limit, the end or a read error (the status already says what happened).
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(limit);
    buf
}
