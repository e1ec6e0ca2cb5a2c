//! Wiring for `scim-relay serve`: open the store, bind the listener, serve until shutdown.
//! Tests use [`start`] to run the real server on an ephemeral port.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError, ConnectorKind};
use crate::connector;
use crate::http::admin::AdminState;
use crate::http::{self, AppState};
use crate::outbox::{self, Engine, Fanout, Route, RouteKind};
use crate::scim::filter::parse_filter;
use crate::store::{Store, StoreError, TokenScope};
use crate::tls::ReloadableTls;

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A server that is listening; `run` serves until the shutdown future resolves.
pub struct Running {
    pub addr: SocketAddr,
    /// Where the admin listener is, when `[admin] listen` is set.
    pub admin_addr: Option<SocketAddr>,
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<ReloadableTls>>,
    limits: http::ConnectionLimits,
    admin: Option<(TcpListener, axum::Router)>,
    engine: Engine,
    store: Store,
    provlog: tokio::task::JoinHandle<()>,
    /// Stops periodic reconciliations.
    stop_background: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
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
    // Certificates first: a bad path should fail before anything else is touched.
    let tls = match config.tls_files() {
        Some((cert, key)) => Some(Arc::new(ReloadableTls::load(cert, key)?)),
        None => None,
    };
    let limits = http::ConnectionLimits {
        header_timeout: Duration::from_secs(config.server.header_timeout_secs),
        max_connections: config.server.max_connections,
        drain: Duration::from_secs(30),
    };
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
    let admin = match config.admin.listen {
        Some(admin_addr) => {
            let admin_listener =
                TcpListener::bind(admin_addr)
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: admin_addr,
                        source,
                    })?;
            let admin_state = AdminState {
                store: store.clone(),
                connectors: Arc::new(config.connectors.clone()),
                live: Arc::new(connector::from_config(config, &store)?),
                configured_token: config
                    .configured_admin_token()?
                    .map(|t| crate::store::hash_token(&t)),
            };
            if admin_state.configured_token.is_none()
                && store.tokens().active_count(TokenScope::Admin)? == 0
            {
                tracing::warn!(
                    "the admin listener has no token yet: create one with `scim-relay --config {} token create --admin --name <operator>`",
                    config.file
                );
            }
            Some((admin_listener, http::admin::router(admin_state)))
        }
        None => None,
    };
    let admin_addr = match &admin {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let provlog = crate::provlog::start(
        store.clone(),
        Duration::from_secs(config.logging.provisioning_log_days.saturating_mul(86_400)),
    );
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    for (c, live) in config
        .connectors
        .iter()
        .zip(connector::from_config(config, &store)?)
    {
        if let Some(secs) = c.scim.reconcile_every_secs {
            background.push(tokio::spawn(crate::connector::reconcile::run_periodically(
                Arc::new(live),
                store.clone(),
                Duration::from_secs(secs),
                c.scim.reconcile_fix,
                background_stopped.clone(),
            )));
        }
    }
    Ok(Running {
        addr,
        admin_addr,
        store,
        provlog,
        stop_background,
        background,
        listener,
        app,
        tls,
        limits,
        admin,
        engine,
    })
}

impl Running {
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        tracing::info!(
            addr = %self.addr,
            tls = self.tls.is_some(),
            "scim-relay listening"
        );
        let reload = tokio::spawn(reload_on_sighup(self.tls.clone()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let admin = self.admin.map(|(listener, app)| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "admin API listening");
            }
            let mut stopped = stopped.clone();
            tokio::spawn(http::serve(listener, app, None, self.limits, async move {
                let _ = stopped.changed().await;
            }))
        });
        http::serve(self.listener, self.app, self.tls, self.limits, shutdown).await?;
        reload.abort();
        let _ = stop.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        let _ = self.stop_background.send(true);
        for task in self.background {
            let _ = task.await;
        }
        self.engine.shutdown(Duration::from_secs(10)).await;
        // The last provisioning-log entries (of the attempts just finished) are written.
        crate::provlog::stop(&self.store);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.provlog).await;
        tracing::info!("scim-relay stopped");
        Ok(())
    }
}

/// Re-reads the TLS certificate and key on each SIGHUP (what `systemctl reload` and
/// certificate renewal hooks send). Handling the signal also keeps it from killing a
/// server that has no TLS to reload.
async fn reload_on_sighup(tls: Option<Arc<ReloadableTls>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS certificates will not reload");
            return;
        };
        while hangups.recv().await.is_some() {
            match &tls {
                None => tracing::info!("SIGHUP: TLS is off, nothing to reload"),
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert_file = %tls.cert_file().display(),
                        "SIGHUP: TLS certificate reloaded; new connections use it"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: TLS reload failed; still serving the previous certificate"
                    ),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
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
