//! The webhook connector: POSTs each event's envelope as JSON, signed per the Standard
//! Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::signing::{parse_secrets, sign, Secret};
use super::Limits;
use crate::config::{Config, ConfigError, ConnectorConfig};
use crate::outbox::policy::{classify, parse_retry_after, Outcome};
use crate::store::{now_ms, Claimed};

/// How much of a failing response body is kept for the operator.
const ERROR_BODY_LIMIT: usize = 1024;

pub struct WebhookConnector {
    pub name: String,
    pub limits: Limits,
    url: reqwest::Url,
    secrets: Vec<Secret>,
    client: reqwest::Client,
}

impl WebhookConnector {
    pub fn new(
        config: &Config,
        index: usize,
        c: &ConnectorConfig,
    ) -> Result<WebhookConnector, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Value {
            file: config.file.clone(),
            key: format!("connectors[{index}].{key}"),
            message,
        };
        let secrets = parse_secrets(&c.secret(config, index)?)
            .map_err(|e| bad("secret_env", format!("connector {:?}: {e}", c.name)))?;
        let url = reqwest::Url::parse(&c.url).map_err(|e| bad("url", e.to_string()))?;
        let client = super::http_client(c, super::extra_headers(c, &bad)?)
            .map_err(|e| bad("url", format!("cannot build HTTP client: {e}")))?;
        Ok(WebhookConnector {
            name: c.name.clone(),
            limits: Limits::of(c),
            url,
            secrets,
            client,
        })
    }

    pub async fn deliver(&self, d: &Claimed) -> Outcome {
        // Each attempt is signed afresh with its own timestamp (receivers reject stale ones).
        let timestamp = now_ms() / 1000;
        let signature = sign(&self.secrets, &d.id, timestamp, d.payload.as_bytes());
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    error: super::describe(e),
                    retry_after_ms: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now_ms()));
        let body = if response.status().is_success() {
            String::new()
        } else {
            let prefix = super::read_prefix(&mut response, ERROR_BODY_LIMIT).await;
            String::from_utf8_lossy(&prefix).trim().to_string()
        };
        classify(status, &body, retry_after)
    }
}
