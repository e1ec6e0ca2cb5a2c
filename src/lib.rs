//! scim-relay: one SCIM 2.0 endpoint for an identity provider, stored in SQLite,
//! fanned out to downstream targets through a durable outbox.
//!
//! Layers (see `../shared/design.md`): `scim` is pure (schema, filter, PATCH, projection);
//! `store` owns SQLite; `http` is the axum front end; `config` turns TOML into typed settings;
//! `server` wires them together for the `serve` command and for tests.

pub mod config;
pub mod connector;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod provlog;
pub mod scim;
pub mod server;
pub mod store;
pub mod tls;
