//! `config.toml` → typed settings.
//!
//! Owns: reading the file, rejecting unknown keys and bad values with an error that names the
//! file, line and key (never the offending line's text, which may hold a secret), resolving
//! relative paths against the config file's folder, and reading secrets from the environment
//! or from files. Must not open sockets or databases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod connector;

use connector::ConnectorTable;
pub use connector::{
    ConnectorConfig, ConnectorKind, Deprovision, RetryConfig, ScimSettings, UpdateMode, PRESETS,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{file}: {key}: {message}")]
    Value {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub scim: ScimConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    /// `[[connectors]]` as written; resolved (presets merged, defaults applied) into
    /// `connectors` by `Config::parse`.
    #[serde(default, rename = "connectors")]
    connector_tables: Vec<ConnectorTable>,
    #[serde(skip)]
    pub connectors: Vec<ConnectorConfig>,
    /// Folder the config file lives in; relative paths are resolved against it.
    #[serde(skip)]
    pub dir: PathBuf,
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where the SCIM API is mounted, e.g. `/scim/v2`.
    pub base_path: String,
    /// The URL the IdP uses to reach `base_path` (it appears in `meta.location`). Defaults to
    /// `http://<listen><base_path>`; set it when running behind a proxy or TLS terminator.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Failed bearer-token attempts one client address may make per minute; beyond it the
    /// address gets 429 until its minute is over. 0 turns the lockout off.
    pub auth_failures_per_minute: u32,
    /// Requests the SCIM listener handles at once; more are refused with 503.
    pub max_concurrent_requests: usize,
    /// Connections served at once (both listeners each); more wait in the accept queue.
    pub max_connections: usize,
    /// Seconds a client has to send a complete request head, from connecting (and again
    /// after each response, so it is also the idle keep-alive timeout).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send the whole request body; slower bodies get 408.
    pub body_timeout_secs: u64,
    /// Deepest nesting of JSON arrays and objects accepted in a request body.
    pub max_json_depth: usize,
    /// Serve HTTPS on `listen` with this certificate; reloaded on SIGHUP.
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (as issued by e.g. Let's Encrypt's fullchain.pem).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_path: "/scim/v2".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            auth_failures_per_minute: 20,
            max_concurrent_requests: 1024,
            max_connections: 4096,
            header_timeout_secs: 20,
            body_timeout_secs: 30,
            max_json_depth: 32,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Read connections beside the single writer.
    pub readers: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/scim-relay.db"),
            readers: 4,
        }
    }
}

/// Bearer tokens normally live hashed in the database (`scim-relay token create`). A token
/// may also be supplied from the environment or a file, for deployments that inject secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// The admin listener: admin API, `/metrics`, `/events`, the status page. Off unless
/// `listen` is set (the shipped config sets 127.0.0.1:8081); it has its own tokens
/// (`token create --admin`), and an admin token from the environment or a file may be
/// supplied as for the SCIM API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// Largest page a list request returns (advertised as `filter.maxResults`).
    pub max_results: usize,
    /// Most operations accepted in one PATCH request.
    pub max_patch_operations: usize,
    /// Longest filter string accepted, in bytes.
    pub max_filter_length: usize,
    /// Deepest nesting of parentheses, `not (…)` and value filters in a request's filter
    /// (at most `scim::filter::MAX_DEPTH`).
    pub max_filter_depth: usize,
    /// Most attribute expressions in a request's filter (at most `scim::filter::MAX_TERMS`).
    pub max_filter_terms: usize,
    /// Most group member values one POST/PUT of a group or one PATCH may carry.
    pub max_members_per_request: usize,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            max_results: 1000,
            max_patch_operations: 1000,
            max_filter_length: 4096,
            max_filter_depth: crate::scim::filter::MAX_DEPTH,
            max_filter_terms: crate::scim::filter::MAX_TERMS,
            max_members_per_request: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A `tracing` filter directive such as `info` or `scim_relay=debug,info`.
    pub level: String,
    pub format: LogFormat,
    /// Days the provisioning log (every inbound operation and outbound attempt) is kept.
    pub provisioning_log_days: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Pretty,
            provisioning_log_days: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &file, dir)
    }

    /// Parses config text; `file` names it in errors and `dir` anchors relative paths.
    pub fn parse(text: &str, file: &str, dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                key: key_at(text, offset),
                message: e.message().trim().to_string(),
            }
        })?;
        config.dir = dir;
        config.file = file.to_string();
        config.validate().map_err(|e| with_line(e, text, file))?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let file = self.file.clone();
        let bad = |key: &str, message: &str| ConfigError::Value {
            file: file.clone(),
            key: key.into(),
            message: message.into(),
        };
        let bp = &self.server.base_path;
        if !bp.starts_with('/') || bp.ends_with('/') && bp.len() > 1 {
            return Err(bad(
                "server.base_path",
                "must start with '/' and not end with '/' (e.g. \"/scim/v2\")",
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(bad("server.max_body_bytes", "must be at least 1024"));
        }
        // The upper bound keeps the value within what `tokio::sync::Semaphore` accepts.
        if self.server.max_concurrent_requests == 0
            || self.server.max_concurrent_requests > 1_000_000
        {
            return Err(bad(
                "server.max_concurrent_requests",
                "must be between 1 and 1000000",
            ));
        }
        if self.server.max_connections == 0 || self.server.max_connections > 1_000_000 {
            return Err(bad(
                "server.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if self.server.header_timeout_secs == 0 || self.server.header_timeout_secs > 3600 {
            return Err(bad(
                "server.header_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.server.body_timeout_secs == 0 || self.server.body_timeout_secs > 3600 {
            return Err(bad(
                "server.body_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        // serde_json stops at 128 levels on its own; ours must bite first to give the
        // documented error.
        if self.server.max_json_depth < 8 || self.server.max_json_depth > 120 {
            return Err(bad("server.max_json_depth", "must be between 8 and 120"));
        }
        if self.storage.readers == 0 || self.storage.readers > 64 {
            return Err(bad("storage.readers", "must be between 1 and 64"));
        }
        if self.scim.max_results == 0 {
            return Err(bad("scim.max_results", "must be at least 1"));
        }
        if self.scim.max_patch_operations == 0 {
            return Err(bad("scim.max_patch_operations", "must be at least 1"));
        }
        if self.scim.max_members_per_request == 0 {
            return Err(bad("scim.max_members_per_request", "must be at least 1"));
        }
        let (max_depth, max_terms) = (
            crate::scim::filter::MAX_DEPTH,
            crate::scim::filter::MAX_TERMS,
        );
        if self.scim.max_filter_depth == 0 || self.scim.max_filter_depth > max_depth {
            return Err(bad(
                "scim.max_filter_depth",
                &format!("must be between 1 and {max_depth}"),
            ));
        }
        if self.scim.max_filter_terms == 0 || self.scim.max_filter_terms > max_terms {
            return Err(bad(
                "scim.max_filter_terms",
                &format!("must be between 1 and {max_terms}"),
            ));
        }
        if self.scim.max_filter_length < 64 {
            return Err(bad("scim.max_filter_length", "must be at least 64"));
        }
        if let Some(url) = &self.server.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    "server.public_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if self.logging.provisioning_log_days == 0 || self.logging.provisioning_log_days > 3650 {
            return Err(bad(
                "logging.provisioning_log_days",
                "must be between 1 and 3650",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| bad("logging.level", &e.to_string()))?;
        self.connectors = connector::resolve_all(self, &self.connector_tables)?;
        Ok(())
    }

    /// Resolves a path from the config relative to the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// The certificate and key files of `[server.tls]`, resolved, if TLS is on.
    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        self.server
            .tls
            .as_ref()
            .map(|t| (self.resolve(&t.cert_file), self.resolve(&t.key_file)))
    }

    pub fn database_path(&self) -> PathBuf {
        self.resolve(&self.storage.path)
    }

    /// The externally visible URL of the SCIM base path, without a trailing slash, for a
    /// server bound to `bound` (which differs from `server.listen` when that asks for port 0).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{bound}{}", self.server.base_path)
            }
        }
    }

    /// The admin token configured through `admin.token_env` / `admin.token_file`, if any.
    pub fn configured_admin_token(&self) -> Result<Option<String>, ConfigError> {
        read_secret(
            self,
            "admin.token_env",
            self.admin.token_env.as_deref(),
            "admin.token_file",
            self.admin.token_file.as_deref(),
        )
    }

    /// The token configured through `auth.token_env` / `auth.token_file`, if any.
    pub fn configured_token(&self) -> Result<Option<String>, ConfigError> {
        read_secret(
            self,
            "auth.token_env",
            self.auth.token_env.as_deref(),
            "auth.token_file",
            self.auth.token_file.as_deref(),
        )
    }
}

/// Reads a secret from an environment variable or a file named in the config. An unset
/// variable is not an error (the secret is optional); an unreadable file is.
pub fn read_secret(
    config: &Config,
    env_key: &str,
    env: Option<&str>,
    file_key: &str,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(var) = env {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => return Ok(Some(v.trim().to_string())),
            Ok(_) | Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError::Value {
                    file: config.file.clone(),
                    key: env_key.into(),
                    message: format!("environment variable {var} is not valid UTF-8"),
                })
            }
        }
    }
    if let Some(path) = file {
        let full = config.resolve(path);
        let text = std::fs::read_to_string(&full).map_err(|e| ConfigError::Value {
            file: config.file.clone(),
            key: file_key.into(),
            message: format!("cannot read {}: {e}", full.display()),
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(ConfigError::Value {
                file: config.file.clone(),
                key: file_key.into(),
                message: format!("{} is empty", full.display()),
            });
        }
        return Ok(Some(secret.to_string()));
    }
    Ok(None)
}

/// Adds the line to a validation error about this file, when the key can be found in it
/// (a default that was never written has no line).
fn with_line(e: ConfigError, text: &str, this_file: &str) -> ConfigError {
    match e {
        ConfigError::Value { file, key, message } if file == this_file => {
            match locate(text, &key) {
                Some((line, column)) => ConfigError::Invalid {
                    file,
                    line,
                    column,
                    key,
                    message,
                },
                None => ConfigError::Value { file, key, message },
            }
        }
        other => other,
    }
}

/// Where `key` (`server.listen`, `connectors[1].scope`, `connectors[0].retry`) is written:
/// its line and column. Scans headers and `key =` lines; good enough for the keys this
/// config has, which are never dotted inline.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let (table, leaf) = key.rsplit_once('.')?;
    let (table, index) = match table.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => (table, 0),
    };
    let mut current = String::new();
    let mut seen = 0usize;
    let mut in_target = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = header.trim().to_string();
            if current == table {
                in_target = seen == index;
                seen += 1;
            } else {
                in_target = false;
            }
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let header = header.trim();
            // A sub-table of the target (`[connectors.retry]`) may be the key itself.
            if in_target && header == format!("{table}.{leaf}") {
                let column = raw.find('[').unwrap_or(0) + 1;
                return Some((n + 1, column));
            }
            if !header.starts_with(&format!("{table}.")) {
                in_target = header == table;
            }
            current = header.to_string();
            continue;
        }
        let written = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'));
        if in_target && current.starts_with(table) && written == Some(leaf) {
            let column = raw.find(leaf).unwrap_or(0) + 1;
            return Some((n + 1, column));
        }
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// The dotted key whose value sits at `offset`: the nearest `[table]` header above it plus
/// the key on that line. Recovered from the text because toml's error does not expose it.
fn key_at(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| offset + i);
    let line = text.get(line_start..line_end).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key.is_empty()) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, false) => key,
        (None, true) => "(top level)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", PathBuf::from("/etc/scim-relay"))
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.server.base_path, "/scim/v2");
        assert_eq!(
            c.database_path(),
            PathBuf::from("/etc/scim-relay/data/scim-relay.db")
        );
        assert_eq!(
            c.public_url(c.server.listen),
            "http://127.0.0.1:8080/scim/v2"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n")
            .expect_err("unknown key must fail")
            .to_string();
        assert!(err.starts_with("test.toml:3:"), "{err}");
        assert!(err.contains("server.lisen"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_never_echoes_the_line() {
        let err = parse("[server]\nlisten = \"not-an-address-secret123\"\n")
            .expect_err("bad address must fail")
            .to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        assert!(err.contains("server.listen"), "{err}");
        assert!(!err.contains("secret123"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_line_where_the_key_is_written() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nbase_path = \"scim\"\n")
            .expect_err("relative base path")
            .to_string();
        assert!(err.starts_with("test.toml:3:1: server.base_path:"), "{err}");
        let two = "[[connectors]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_env = \"S\"\n\
                   [[connectors]]\nname = \"b\"\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_env = \"S\"\nscope = 'nope'\n";
        let err = parse(two).expect_err("bad scope").to_string();
        assert!(
            err.starts_with("test.toml:11:1: connectors[1].scope:"),
            "{err}"
        );
        let retry = "[[connectors]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_env = \"S\"\n[connectors.retry]\ninitial_ms = 9\nmax_ms = 1\n";
        let err = parse(retry).expect_err("bad retry").to_string();
        assert!(
            err.starts_with("test.toml:6:1: connectors[0].retry:"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_name_the_key() {
        let err = parse("[server]\nbase_path = \"scim\"\n")
            .expect_err("relative base path must fail")
            .to_string();
        assert!(err.contains("server.base_path"), "{err}");
        let err = parse("[logging]\nformat = \"xml\"\n")
            .expect_err("unknown format must fail")
            .to_string();
        assert!(err.contains("logging.format"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token.txt"), "s3cret\n").expect("write");
        let c = Config::parse(
            "[auth]\ntoken_file = \"token.txt\"\n",
            "t.toml",
            dir.path().to_path_buf(),
        )
        .expect("valid");
        assert_eq!(
            c.configured_token().expect("readable").as_deref(),
            Some("s3cret")
        );
    }

    fn connector(extra: &str) -> String {
        format!(
            "[[connectors]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9000/e\"\nsecret_env = \"X\"\n{extra}\n"
        )
    }

    #[test]
    fn connectors_are_validated_with_their_index_in_the_key() {
        let c = parse(&connector(
            "events = [\"user.*\"]\nscope = 'active eq true'",
        ))
        .expect("valid");
        assert_eq!(c.connectors[0].events, ["user.*"]);
        assert_eq!(c.connectors[0].retry, RetryConfig::default());
        for (extra, key) in [
            ("events = [\"users.*\"]", "connectors[0].events"),
            ("scope = 'active eq'", "connectors[0].scope"),
            ("concurrency = 0", "connectors[0].concurrency"),
            (
                "headers = { \"webhook-id\" = \"x\" }",
                "connectors[0].headers",
            ),
            (
                "[connectors.retry]\ninitial_ms = 10\nmax_ms = 5",
                "connectors[0].retry",
            ),
        ] {
            let err = parse(&connector(extra)).expect_err(extra).to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let twice = format!("{}{}", connector(""), connector(""));
        assert!(parse(&twice)
            .expect_err("duplicate")
            .to_string()
            .contains("used twice"));
        let no_secret = "[[connectors]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x/\"\n";
        let err = parse(no_secret).expect_err("secret").to_string();
        assert!(err.contains("connectors[0].secret_env"), "{err}");
        let err = parse(&connector("colour = \"red\""))
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("test.toml:6:") && err.contains("colour"),
            "{err}"
        );
    }
}
