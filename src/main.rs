//! The `scim-relay` command line: serve, check-config and token management.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scim_relay::config::{Config, LogFormat};
use scim_relay::server;
use scim_relay::store::{DeliveryFilter, TokenScope};

mod cli;

// glibc's allocator serialises threads on its arena locks under this workload (many small
// JSON values per request); mimalloc keeps allocation thread-local.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scim-relay",
    version,
    about = "One SCIM 2.0 endpoint for your IdP, fanned out to many apps"
)]
struct Cli {
    /// Config file; paths inside it are relative to its folder.
    #[arg(
        long,
        global = true,
        env = "SCIM_RELAY_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SCIM server.
    Serve {
        /// Listen address, overriding server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// SQLite database file, overriding storage.path.
        #[arg(long)]
        database: Option<PathBuf>,
    },
    /// Validate the config file and exit.
    CheckConfig,
    /// Manage the bearer tokens the identity provider uses.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Per connector: deliveries pending, in flight, done and dead; last success and error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect, retry or discard deliveries (the dead-letter list is `--status dead`).
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Queue the current state of every user (and group) for a SCIM connector: a connector
    /// added later gets everyone in scope; repeating it sends only what differs.
    Resync {
        #[arg(long)]
        connector: String,
    },
    /// Compare a SCIM connector's target with what it should hold: users missing there,
    /// extra there, differing on a mapped attribute or in `active`.
    Reconcile {
        #[arg(long)]
        connector: String,
        /// Queue syncs that repair the drift (extra users are only reported).
        #[arg(long)]
        fix: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Search the provisioning log: every inbound SCIM operation and outbound attempt.
    Log {
        /// A user id or userName.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        connector: Option<String>,
        /// ok, error, delivered, retry, dead or deferred.
        #[arg(long)]
        outcome: Option<String>,
        /// Only the last this many minutes.
        #[arg(long)]
        minutes: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Pause (kill switch) or resume a connector; resume also confirms deprovisions held by
    /// leaver safety.
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Stop sending to this connector; its work waits in the outbox.
    Pause { name: String },
    /// Send again, including deprovisions that leaver safety held back.
    Resume { name: String },
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        #[arg(long)]
        connector: Option<String>,
        /// pending, in_flight, done, dead or discarded.
        #[arg(long)]
        status: Option<String>,
        /// A user or group id.
        #[arg(long)]
        resource: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery with the exact payload it sends.
    Show { id: String },
    /// Queue deliveries again now: by id, or every dead one of a connector.
    Retry {
        ids: Vec<String>,
        #[arg(long, requires = "connector")]
        all_dead: bool,
        #[arg(long)]
        connector: Option<String>,
    },
    /// Give up on deliveries (kept, marked discarded).
    Discard {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only it) on stdout; it is not shown again.
    Create {
        #[arg(long)]
        name: String,
        /// A token for the admin API instead of the SCIM API (never interchangeable).
        #[arg(long)]
        admin: bool,
    },
    /// List tokens (names and dates, never the tokens).
    List,
    /// Revoke the active token with this name or id; it is refused from the next request on.
    Revoke { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scim-relay: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scim-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen, database } => {
                if let Some(addr) = listen {
                    config.server.listen = addr;
                }
                if let Some(db) = database {
                    // A path given on the command line is relative to where it was typed.
                    config.storage.path = std::path::absolute(&db).unwrap_or(db);
                }
                let running = server::start(&config).await.map_err(|e| e.to_string())?;
                running
                    .run(server::shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::CheckConfig => {
                config.configured_token().map_err(|e| e.to_string())?;
                let store = cli::open_store(&config)?;
                scim_relay::connector::from_config(&config, &store).map_err(|e| e.to_string())?;
                println!("{}: ok", config.file);
                Ok(())
            }
            Command::Token { command } => token_command(&config, command).await,
            Command::Status { json } => cli::status(&config, json).await,
            Command::Deliveries { command } => match command {
                DeliveriesCommand::List {
                    connector,
                    status,
                    resource,
                    limit,
                    json,
                } => {
                    let filter = DeliveryFilter {
                        connector,
                        status,
                        resource,
                        limit,
                    };
                    cli::list_deliveries(&config, filter, json).await
                }
                DeliveriesCommand::Show { id } => cli::show_delivery(&config, &id).await,
                DeliveriesCommand::Retry {
                    ids,
                    all_dead,
                    connector,
                } => cli::retry(&config, ids, all_dead.then_some(connector).flatten()).await,
                DeliveriesCommand::Discard { ids } => cli::discard(&config, ids).await,
            },
            Command::Resync { connector } => cli::resync(&config, &connector).await,
            Command::Log {
                user,
                connector,
                outcome,
                minutes,
                limit,
                json,
            } => {
                let since = minutes
                    .map(|m| scim_relay::store::now_ms().saturating_sub(m.saturating_mul(60_000)));
                let query = scim_relay::store::LogQuery {
                    user,
                    connector,
                    outcome,
                    since,
                    limit,
                    ..Default::default()
                };
                cli::log(&config, query, json).await
            }
            Command::Reconcile {
                connector,
                fix,
                json,
            } => cli::reconcile(&config, &connector, fix, json).await,
            Command::Connectors { command } => match command {
                ConnectorsCommand::Pause { name } => cli::pause(&config, &name, true).await,
                ConnectorsCommand::Resume { name } => cli::pause(&config, &name, false).await,
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scim-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn token_command(config: &Config, command: TokenCommand) -> Result<(), String> {
    let store = cli::open_store(config)?;
    match command {
        TokenCommand::Create { name, admin } => {
            let scope = if admin {
                TokenScope::Admin
            } else {
                TokenScope::Scim
            };
            let (info, token) = store
                .create_token(&name, scope)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "created token {:?} (id {}); it is shown once, store it in the IdP now",
                info.name, info.id
            );
            println!("{token}");
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await.map_err(|e| e.to_string())?;
            println!("{:<36}  {:<24}  {:<24}  STATUS", "ID", "NAME", "CREATED");
            for t in tokens {
                let status = t
                    .revoked
                    .map_or("active".to_string(), |r| format!("revoked {r}"));
                println!("{:<36}  {:<24}  {:<24}  {status}", t.id, t.name, t.created);
            }
        }
        TokenCommand::Revoke { name } => {
            let n = store.revoke_token(&name).await.map_err(|e| e.to_string())?;
            eprintln!("revoked {n} token(s) named {name:?}");
        }
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&config.logging.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}
