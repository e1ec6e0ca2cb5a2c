//! Bearer tokens for the SCIM API: created with a name, shown once, stored as a SHA-256
//! hash (tokens are 256 random bits, so a fast hash is enough), revoked by name or id.

use base64::Engine;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{now_rfc3339, Store, StoreError};
use crate::scim::ScimError;

/// What a token opens. A SCIM token never opens the admin API, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Scim,
    Admin,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Scim => "scim",
            TokenScope::Admin => "admin",
        }
    }

    /// Every token starts with its scope's prefix, so a leaked one is recognisable in a
    /// secret scanner and a misplaced one is obvious.
    fn prefix(self) -> &'static str {
        match self {
            TokenScope::Scim => "scr_",
            TokenScope::Admin => "sca_",
        }
    }

    fn parse(s: &str) -> TokenScope {
        if s == "admin" {
            TokenScope::Admin
        } else {
            TokenScope::Scim
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    pub created: String,
    pub revoked: Option<String>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token(scope: TokenScope) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{}{}",
        scope.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hashes of every token of this scope that is not revoked.
pub fn active_hashes(conn: &Connection, scope: TokenScope) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT hash FROM tokens WHERE revoked IS NULL AND scope = ?1")?;
    let rows = stmt.query_map([scope.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(hash) = <[u8; 32]>::try_from(row?.as_slice()) {
            out.push(hash);
        }
    }
    Ok(out)
}

impl Store {
    /// Creates a token; returns its record and the token, which is never retrievable again.
    pub async fn create_token(
        &self,
        name: &str,
        scope: TokenScope,
    ) -> Result<(TokenInfo, String), StoreError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(ScimError::invalid_value("token name must be 1 to 200 characters").into());
        }
        self.write(move |conn| {
            let taken: Option<String> = conn
                .query_row(
                    "SELECT id FROM tokens WHERE name = ?1 AND revoked IS NULL",
                    [&name],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(ScimError::uniqueness(format!(
                    "an active token named {name:?} exists; revoke it or pick another name"
                ))
                .into());
            }
            let token = new_token(scope);
            let info = TokenInfo {
                id: uuid::Uuid::new_v4().to_string(),
                name,
                scope,
                created: now_rfc3339(),
                revoked: None,
            };
            conn.execute(
                "INSERT INTO tokens (id, name, hash, created, scope) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    info.id,
                    info.name,
                    hash_token(&token).to_vec(),
                    info.created,
                    info.scope.as_str()
                ],
            )?;
            Ok((info, token))
        })
        .await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, created, revoked, scope FROM tokens ORDER BY created, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created: r.get(2)?,
                    revoked: r.get(3)?,
                    scope: TokenScope::parse(&r.get::<_, String>(4)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Revokes the active token with this name or id; returns how many were revoked.
    pub async fn revoke_token(&self, name_or_id: &str) -> Result<usize, StoreError> {
        let key = name_or_id.to_string();
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE tokens SET revoked = ?2 WHERE (name = ?1 OR id = ?1) AND revoked IS NULL",
                params![key, now_rfc3339()],
            )?;
            if n == 0 {
                return Err(ScimError::not_found(format!("no active token named {key:?}")).into());
            }
            Ok(n)
        })
        .await
    }
}

/// The hash and name of every token of this scope that is not revoked.
fn active_tokens(conn: &Connection, scope: TokenScope) -> Result<Vec<ActiveToken>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT hash, name FROM tokens WHERE revoked IS NULL AND scope = ?1")?;
    let rows = stmt.query_map([scope.as_str()], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (hash, name) = row?;
        if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
            out.push(ActiveToken {
                hash,
                name: name.into(),
            });
        }
    }
    Ok(out)
}

/// An active token as the cache keeps it: its hash, and its name for the provisioning log.
struct ActiveToken {
    hash: [u8; 32],
    name: std::sync::Arc<str>,
}

/// The active token hashes, re-read whenever the database changed since the last check, so a
/// token revoked from the CLI (another process) is refused from the next request on.
pub struct TokenCache {
    state: std::sync::Mutex<CacheState>,
}

struct CacheState {
    conn: Connection,
    data_version: Option<i64>,
    scim: Vec<ActiveToken>,
    admin: Vec<ActiveToken>,
}

impl TokenCache {
    pub(super) fn new(conn: Connection) -> Self {
        TokenCache {
            state: std::sync::Mutex::new(CacheState {
                conn,
                data_version: None,
                scim: Vec::new(),
                admin: Vec::new(),
            }),
        }
    }

    /// Whether the token's hash is one of the active tokens, compared in constant time
    /// against every one of them so timing reveals neither which nor how many matched.
    pub fn contains(&self, hash: &[u8; 32], scope: TokenScope) -> Result<bool, StoreError> {
        Ok(self.lookup(hash, scope)?.is_some())
    }

    /// The name of the active token with this hash (`None`: no such active token), found
    /// like [`TokenCache::contains`]: every hash is compared in constant time, and the name
    /// is picked only after the walk, so timing does not say which one matched.
    pub fn lookup(
        &self,
        hash: &[u8; 32],
        scope: TokenScope,
    ) -> Result<Option<std::sync::Arc<str>>, StoreError> {
        use subtle::{ConditionallySelectable, ConstantTimeEq};
        let mut state = self.state.lock().map_err(|_| StoreError::Stopped)?;
        // data_version changes when any other connection commits; cheap to read.
        // A cached statement: this runs on every request, parsing it each time would show.
        let version: i64 = state
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if state.data_version != Some(version) {
            state.scim = active_tokens(&state.conn, TokenScope::Scim)?;
            state.admin = active_tokens(&state.conn, TokenScope::Admin)?;
            state.data_version = Some(version);
        }
        let tokens = match scope {
            TokenScope::Scim => &state.scim,
            TokenScope::Admin => &state.admin,
        };
        let mut found = subtle::Choice::from(0u8);
        let mut index = 0u64;
        for (i, t) in tokens.iter().enumerate() {
            let eq = t.hash.ct_eq(hash);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if !bool::from(found) {
            return Ok(None);
        }
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        Ok(tokens.get(index).map(|t| t.name.clone()))
    }

    /// How many tokens of a scope are active (to tell a new operator how to create one).
    pub fn active_count(&self, scope: TokenScope) -> Result<usize, StoreError> {
        let state = self.state.lock().map_err(|_| StoreError::Stopped)?;
        Ok(active_hashes(&state.conn, scope)?.len())
    }
}
