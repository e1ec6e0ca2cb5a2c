//! Wiring for `scim-relay serve`: open the store, bind the listener, serve until shutdown.
//! Tests use [`start`] to run the real server on an ephemeral port.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError, ConnectorKind};
use crate::connector;
use crate::http::{self, AppState};
use crate::outbox::{self, Engine, Fanout, Route, RouteKind};
use crate::scim::filter::parse_filter;
use crate::store::{Store, StoreError, TokenScope};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A server that is listening; `run` serves until the shutdown future resolves.
pub struct Running {
    pub addr: SocketAddr,
    listener: TcpListener,
    app: axum::Router,
    engine: Engine,
}

/// The routing table for the configured connectors (validated already by `Config`).
fn fanout(config: &Config, base_url: String) -> Result<Fanout, ConfigError> {
    let routes = config
        .connectors
        .iter()
        .map(|c| {
            let scope = c
                .scope
                .as_deref()
                .map(parse_filter)
                .transpose()
                .map_err(|e| ConfigError::Value {
                    file: config.file.clone(),
                    key: format!("connector {:?} scope", c.name),
                    message: e.to_string(),
                })?;
            let kind = match c.kind {
                ConnectorKind::Webhook => RouteKind::Events,
                ConnectorKind::Scim => RouteKind::State {
                    groups: c.scim.groups,
                },
            };
            Ok(Route::new(c.name.clone(), kind, c.events.clone(), scope))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(Fanout::new(routes, base_url))
}

/// Opens the database and binds the listener, so start-up errors surface before serving.
pub async fn start(config: &Config) -> Result<Running, ServeError> {
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    let fanout = Arc::new(fanout(config, config.public_url(addr))?);
    let store = Store::open(
        &config.database_path(),
        config.storage.readers,
        fanout.clone(),
    )?;
    // A missing secret stops start-up here, before anything is served.
    let connectors = connector::from_config(config, &store)?;
    let engine = outbox::start(store.clone(), &fanout, connectors).await?;
    let state = AppState::new(config, store.clone(), addr)?;
    if state.configured_token.is_none() && store.tokens().active_count(TokenScope::Scim)? == 0 {
        tracing::warn!(
            "no API token exists yet: create one with `scim-relay --config {} token create --name <idp>` \
             and give it to the identity provider as its Secret Token",
            config.file
        );
    }
    let app = http::router(state, &config.server.base_path);
    Ok(Running {
        addr,
        listener,
        app,
        engine,
    })
}

impl Running {
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        tracing::info!(addr = %self.addr, "scim-relay listening");
        http::serve(self.listener, self.app, shutdown).await?;
        self.engine.shutdown(Duration::from_secs(10)).await;
        tracing::info!("scim-relay stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
