//! Downstream targets. Each connector turns one claimed delivery into one attempt against
//! its target and reports an [`Outcome`]; retries, ordering and bookkeeping are the
//! outbox's.

pub mod signing;
pub mod webhook;

use std::time::Duration;

use crate::config::{Config, ConfigError, ConnectorConfig, ConnectorKind, RetryConfig};
use crate::outbox::policy::Outcome;
use crate::store::Claimed;

/// Settings every connector kind shares.
#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    pub rate_limit: Option<f64>,
    pub timeout: Duration,
    pub retry: RetryConfig,
}

pub enum Connector {
    Webhook(webhook::WebhookConnector),
}

impl Connector {
    /// Builds connector `index` of the config, reading its secrets.
    pub fn from_config(
        config: &Config,
        index: usize,
        c: &ConnectorConfig,
    ) -> Result<Connector, ConfigError> {
        match c.kind {
            ConnectorKind::Webhook => Ok(Connector::Webhook(webhook::WebhookConnector::new(
                config, index, c,
            )?)),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Connector::Webhook(w) => &w.name,
        }
    }

    pub fn limits(&self) -> &Limits {
        match self {
            Connector::Webhook(w) => &w.limits,
        }
    }

    pub async fn deliver(&self, delivery: &Claimed) -> Outcome {
        match self {
            Connector::Webhook(w) => w.deliver(delivery).await,
        }
    }
}

/// Builds every configured connector (secrets read now, so a missing one stops start-up).
pub fn from_config(config: &Config) -> Result<Vec<Connector>, ConfigError> {
    config
        .connectors
        .iter()
        .enumerate()
        .map(|(i, c)| Connector::from_config(config, i, c))
        .collect()
}
