//! Versioned schema migrations, run in order at start-up inside one transaction each.
//! A migration is never edited once released: add a new one instead.

use rusqlite::Connection;

use super::StoreError;

/// (version, SQL). Versions are consecutive from 1.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
INSERT INTO store_meta (key, value) VALUES ('schema', 'scim-relay');

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    -- Unicode-lowercased userName: SCIM compares userName case-insensitively.
    user_name_key TEXT NOT NULL UNIQUE,
    external_id   TEXT,
    display_name  TEXT,
    active        INTEGER NOT NULL,
    doc           TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL
) STRICT;
CREATE INDEX users_external_id ON users (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE groups (
    id               TEXT PRIMARY KEY,
    display_name_key TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    external_id      TEXT,
    doc              TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created          TEXT NOT NULL,
    last_modified    TEXT NOT NULL
) STRICT;
CREATE INDEX groups_display_name ON groups (display_name_key);
CREATE INDEX groups_external_id ON groups (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The member's display as the client sent it; NULL falls back to the user's displayName.
    display  TEXT,
    PRIMARY KEY (group_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id, group_id);

CREATE TABLE tokens (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    hash      BLOB NOT NULL UNIQUE,
    -- scim: the IdP's SCIM API; admin: the admin API. Never interchangeable.
    scope     TEXT NOT NULL DEFAULT 'scim' CHECK (scope IN ('scim', 'admin')),
    created   TEXT NOT NULL,
    revoked   TEXT
) STRICT;
"#,
    ),
    (
        2,
        r#"
-- The outbox: an append-only event log, and one delivery per (connector, event), both
-- written in the transaction of the change that caused them.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    -- The JSON envelope exactly as consumers receive it.
    payload       TEXT NOT NULL,
    time          TEXT NOT NULL,
    -- The X-Request-Id of the SCIM request that caused the event, carried into the
    -- provisioning log of every delivery it causes.
    request_id    TEXT
) STRICT;

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    connector       TEXT NOT NULL,
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    resource_key    TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'in_flight', 'done', 'dead', 'discarded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Times are Unix milliseconds.
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    done_at         INTEGER
) STRICT;
CREATE INDEX deliveries_due ON deliveries (connector, status, next_attempt_at);
-- The claim walks a connector's pending deliveries in event order and stops at its limit.
CREATE INDEX deliveries_pending ON deliveries (connector, event_seq) WHERE status = 'pending';
CREATE INDEX deliveries_order ON deliveries (connector, resource_key, event_seq)
    WHERE status IN ('pending', 'in_flight');
"#,
    ),
    (
        3,
        r#"
-- What each SCIM connector has provisioned: the remote id of every local resource and the
-- mapped state last pushed (updates are computed against it).
CREATE TABLE links (
    connector        TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('User', 'Group')),
    local_id         TEXT NOT NULL,
    remote_id        TEXT NOT NULL,
    state            TEXT NOT NULL,
    -- active: provisioned and enabled; inactive: deprovisioned by deactivation;
    -- deleted: removed from the target (kept to count leavers).
    status           TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'deleted')),
    updated_at       INTEGER NOT NULL,
    deprovisioned_at INTEGER,
    PRIMARY KEY (connector, kind, local_id)
) STRICT;
CREATE INDEX links_deprovisioned ON links (connector, deprovisioned_at);

-- Deprovisions each connector was allowed to make, for leaver safety (recorded when
-- allowed, so deprovisions running in parallel count each other).
CREATE TABLE leavers (
    connector TEXT NOT NULL,
    local_id  TEXT NOT NULL,
    at        INTEGER NOT NULL
) STRICT;
CREATE INDEX leavers_window ON leavers (connector, at);

-- Operator switches per connector.
CREATE TABLE connector_state (
    connector           TEXT PRIMARY KEY,
    -- The kill switch: nothing is sent while set.
    paused              INTEGER NOT NULL DEFAULT 0,
    -- Set by leaver safety: deprovisions wait until an operator resumes the connector.
    deprovisions_paused INTEGER NOT NULL DEFAULT 0,
    reason              TEXT,
    -- Leavers are counted from here on after an operator's resume.
    resumed_at          INTEGER,
    updated_at          INTEGER NOT NULL
) STRICT;
"#,
    ),
    (
        4,
        r#"
-- The provisioning log: every inbound SCIM operation and every outbound delivery attempt,
-- written in batches off the request path and pruned by age. Never headers, tokens,
-- secrets or bodies.
CREATE TABLE provisioning_log (
    id            INTEGER PRIMARY KEY,
    -- Unix milliseconds.
    at            INTEGER NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    -- The token's name (in) or the connector's name (out).
    actor         TEXT,
    operation     TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    user_name     TEXT,
    status        INTEGER,
    latency_ms    INTEGER,
    outcome       TEXT NOT NULL,
    detail        TEXT,
    request_id    TEXT,
    delivery_id   TEXT
) STRICT;
-- Time ranges, newest-first listing and pruning.
CREATE INDEX provisioning_log_at ON provisioning_log (at);
-- "What happened to this user": by id. A userName is first resolved to ids (the users
-- table, then user_name_history), so user_name needs no index of its own: one keyed by
-- random names would cost the writer a random B-tree insert per entry.
CREATE INDEX provisioning_log_resource ON provisioning_log (resource_id);
-- One connector's attempts (outbound only, so inbound entries, the bulk on a busy IdP,
-- skip it).
CREATE INDEX provisioning_log_connector ON provisioning_log (actor, at) WHERE direction = 'out';

-- The userNames users no longer hold (deleted, or renamed), so the log can still be searched
-- by them; written in the transaction of the delete or rename, pruned with the log.
CREATE TABLE user_name_history (
    -- Unicode-lowercased, like users.user_name_key.
    user_name_key TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    at            INTEGER NOT NULL
) STRICT;
CREATE INDEX user_name_history_key ON user_name_history (user_name_key);
CREATE INDEX user_name_history_at ON user_name_history (at);
"#,
    ),
];

pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL) STRICT",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)",
            rusqlite::params![version, super::now_rfc3339()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
