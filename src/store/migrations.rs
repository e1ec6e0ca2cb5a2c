//! Versioned schema migrations, run in order at start-up inside one transaction each.
//! A migration is never edited once released: add a new one instead.

use rusqlite::Connection;

use super::StoreError;

/// (version, SQL). Versions are consecutive from 1.
const MIGRATIONS: &[(i64, &str)] = &[(
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
    created   TEXT NOT NULL,
    revoked   TEXT
) STRICT;
"#,
)];

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
