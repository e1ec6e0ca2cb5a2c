//! `[[connectors]]`: downstream targets, with vendor presets merged in.
//!
//! Owns: reading a connector table, loading the preset it names (the built-in ones are the
//! files in `connectors/`, compiled in; a preset ending in `.toml` is read from disk relative
//! to the config file), merging (the connector's own keys win; `mapping`, `allowed_values`
//! and `headers` merge key by key), applying defaults and validating, with errors that name
//! the file, the connector and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;

use super::{key_at, line_col, Config, ConfigError};

/// The built-in presets: (name, file contents). The files in `connectors/` are the source.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "andmoney-advisors",
        include_str!("../../connectors/andmoney-advisors.toml"),
    ),
    (
        "andmoney-rooms",
        include_str!("../../connectors/andmoney-rooms.toml"),
    ),
    ("brellium", include_str!("../../connectors/brellium.toml")),
    ("bruno", include_str!("../../connectors/bruno.toml")),
    ("bifrost", include_str!("../../connectors/bifrost.toml")),
];

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    Webhook,
    Scim,
}

/// How a SCIM connector sends an update.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// PATCH with operations computed from the previously pushed state.
    Patch,
    /// PUT of the whole mapped user.
    Put,
}

/// What "remove this user from the app" means for a SCIM connector.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Deprovision {
    /// PATCH `active` to false (the account stays, disabled; it can be reactivated).
    Deactivate,
    /// DELETE the remote user.
    Delete,
}

/// When a failed delivery is tried again: exponential backoff with full jitter between
/// `initial_ms` and `max_ms`, until the delivery is older than `max_age_secs` (then dead).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub max_age_secs: u64,
    /// Consecutive failures after which the connector's circuit opens (then one probe at a
    /// time until a delivery succeeds).
    pub circuit_after: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: 1_000,
            max_ms: 600_000,
            max_age_secs: 3 * 24 * 3600,
            circuit_after: 10,
        }
    }
}

/// A connector table as written, in the config or in a preset: every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorTable {
    name: Option<String>,
    preset: Option<String>,
    description: Option<String>,
    kind: Option<ConnectorKind>,
    url: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    environments: BTreeMap<String, String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    events: Option<Vec<String>>,
    scope: Option<String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    concurrency: Option<usize>,
    rate_limit: Option<f64>,
    retry: Option<RetryConfig>,
    update: Option<UpdateMode>,
    deprovision: Option<Deprovision>,
    on_delete: Option<Deprovision>,
    groups: Option<bool>,
    #[serde(default)]
    mapping: BTreeMap<String, toml::Value>,
    #[serde(default)]
    allowed_values: BTreeMap<String, Vec<String>>,
    leaver_threshold: Option<f64>,
    leaver_window_secs: Option<u64>,
    leaver_min_count: Option<u64>,
    member_batch: Option<usize>,
    reconcile_every_secs: Option<u64>,
    reconcile_fix: Option<bool>,
}

/// One downstream target, resolved: preset merged, defaults applied, validated.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Unique; deliveries and the CLI refer to the connector by it.
    pub name: String,
    pub kind: ConnectorKind,
    pub url: String,
    pub preset: Option<String>,
    /// What the preset says this target is (shown by `scim-relay status`).
    pub description: Option<String>,
    /// Webhooks: the signing secret(s) (`whsec_…`; several, separated by spaces, sign in
    /// parallel during a rotation).
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// SCIM targets: the bearer token.
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Event types delivered; `*` matches any suffix (`user.*`).
    pub events: Vec<String>,
    /// A SCIM filter over the user: who this target should have.
    pub scope: Option<String>,
    pub timeout_ms: u64,
    pub headers: BTreeMap<String, String>,
    pub concurrency: usize,
    /// Requests per second at most (token bucket); none means unlimited.
    pub rate_limit: Option<f64>,
    pub retry: RetryConfig,
    pub scim: ScimSettings,
}

/// What only SCIM connectors use.
#[derive(Debug, Clone)]
pub struct ScimSettings {
    pub update: UpdateMode,
    /// What leaving the scope does.
    pub deprovision: Deprovision,
    /// What deleting the user in the gateway does.
    pub on_delete: Deprovision,
    /// Whether groups are provisioned too.
    pub groups: bool,
    /// Target attribute → source expression (see `connector::mapping`).
    pub mapping: BTreeMap<String, toml::Value>,
    pub allowed_values: BTreeMap<String, Vec<String>>,
    /// Share of provisioned users whose deprovisioning within `leaver_window_secs` pauses
    /// the connector's deprovisions until an operator resumes it.
    pub leaver_threshold: f64,
    pub leaver_window_secs: u64,
    /// Deprovisions within the window below which the share is not checked, so a small
    /// directory can lose a user or two without tripping leaver safety.
    pub leaver_min_count: u64,
    /// Most members added or removed in one PATCH.
    pub member_batch: usize,
    /// Reconcile with the target this often (none: only on demand).
    pub reconcile_every_secs: Option<u64>,
    /// Whether a periodic reconciliation repairs the drift it finds or only reports it.
    pub reconcile_fix: bool,
}

impl ConnectorConfig {
    /// The webhook secret text (env var first, then file), required to be present.
    pub fn secret(&self, config: &Config, index: usize) -> Result<String, ConfigError> {
        self.required_secret(
            config,
            index,
            ("secret_env", self.secret_env.as_deref()),
            ("secret_file", self.secret_file.as_deref()),
        )
    }

    /// The SCIM target's bearer token (env var first, then file), required to be present.
    pub fn token(&self, config: &Config, index: usize) -> Result<String, ConfigError> {
        self.required_secret(
            config,
            index,
            ("token_env", self.token_env.as_deref()),
            ("token_file", self.token_file.as_deref()),
        )
    }

    fn required_secret(
        &self,
        config: &Config,
        index: usize,
        env: (&str, Option<&str>),
        file: (&str, Option<&std::path::Path>),
    ) -> Result<String, ConfigError> {
        let env_key = format!("connectors[{index}].{}", env.0);
        let file_key = format!("connectors[{index}].{}", file.0);
        super::read_secret(config, &env_key, env.1, &file_key, file.1)?.ok_or_else(|| {
            ConfigError::Value {
                file: config.file.clone(),
                key: env_key,
                message: format!(
                    "connector {:?}: environment variable {} is not set",
                    self.name,
                    env.1.unwrap_or("")
                ),
            }
        })
    }
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

/// Loads a preset by name (built in) or path (`*.toml`, relative to the config file).
fn load_preset(config: &Config, name: &str, key: &str) -> Result<ConnectorTable, ConfigError> {
    let (file, text) = if name.ends_with(".toml") {
        let path = config.resolve(std::path::Path::new(name));
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Value {
            file: config.file.clone(),
            key: key.into(),
            message: format!("cannot read preset {}: {e}", path.display()),
        })?;
        (path.display().to_string(), text)
    } else {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| ConfigError::Value {
                file: config.file.clone(),
                key: key.into(),
                message: format!(
                    "unknown preset {name:?}; built-in presets: {}",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        (format!("connectors/{name}.toml (built-in preset)"), text)
    };
    let table: ConnectorTable = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (line, column) = line_col(&text, offset);
        ConfigError::Invalid {
            file: file.clone(),
            line,
            column,
            key: key_at(&text, offset),
            message: e.message().trim().to_string(),
        }
    })?;
    if table.name.is_some() || table.preset.is_some() {
        return Err(ConfigError::Value {
            file,
            key: "name".into(),
            message: "a preset names no connector and no other preset".into(),
        });
    }
    Ok(table)
}

fn merged<K: Ord + Clone, V: Clone>(base: &BTreeMap<K, V>, own: &BTreeMap<K, V>) -> BTreeMap<K, V> {
    let mut out = base.clone();
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Resolves every connector table; connector names must be unique.
pub(super) fn resolve_all(
    config: &Config,
    tables: &[ConnectorTable],
) -> Result<Vec<ConnectorConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, own) in tables.iter().enumerate() {
        let c = resolve(config, i, own)?;
        if !names.insert(c.name.clone()) {
            return Err(ConfigError::Value {
                file: config.file.clone(),
                key: format!("connectors[{i}].name"),
                message: format!("{:?} is used twice", c.name),
            });
        }
        out.push(c);
    }
    Ok(out)
}

fn resolve(
    config: &Config,
    i: usize,
    own: &ConnectorTable,
) -> Result<ConnectorConfig, ConfigError> {
    let key = |k: &str| format!("connectors[{i}].{k}");
    let bad = |k: &str, message: String| ConfigError::Value {
        file: config.file.clone(),
        key: key(k),
        message,
    };
    let preset = match &own.preset {
        Some(p) => load_preset(config, p, &key("preset"))?,
        None => ConnectorTable::default(),
    };
    let name = own
        .name
        .clone()
        .ok_or_else(|| bad("name", "every connector needs a name".into()))?;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !valid_name {
        return Err(bad(
            "name",
            "must be 1 to 64 characters of letters, digits, '-' and '_'".into(),
        ));
    }
    let kind = own.kind.or(preset.kind).ok_or_else(|| {
        bad(
            "kind",
            "set kind = \"webhook\" or \"scim\" (or a preset)".into(),
        )
    })?;
    let environments = merged(&preset.environments, &own.environments);
    let environment = own.environment.clone().or(preset.environment.clone());
    let url = match (own.url.clone(), &environment) {
        (Some(url), _) => url,
        (None, Some(env)) => environments.get(env).cloned().ok_or_else(|| {
            bad(
                "environment",
                format!(
                    "{env:?} is not one of this connector's environments ({})",
                    environments.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?,
        (None, None) => preset.url.clone().ok_or_else(|| {
            if environments.is_empty() {
                bad(
                    "url",
                    "set the target's url (the vendor gives you a tenant URL)".into(),
                )
            } else {
                bad(
                    "environment",
                    format!(
                        "choose an environment: {}",
                        environments.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            }
        })?,
    };
    let c = ConnectorConfig {
        name,
        kind,
        url,
        preset: own.preset.clone(),
        description: own.description.clone().or(preset.description.clone()),
        secret_env: own.secret_env.clone().or(preset.secret_env.clone()),
        secret_file: own.secret_file.clone().or(preset.secret_file.clone()),
        token_env: own.token_env.clone().or(preset.token_env.clone()),
        token_file: own.token_file.clone().or(preset.token_file.clone()),
        events: own
            .events
            .clone()
            .or(preset.events.clone())
            .unwrap_or_else(all_events),
        scope: own.scope.clone().or(preset.scope.clone()),
        timeout_ms: own.timeout_ms.or(preset.timeout_ms).unwrap_or(10_000),
        headers: merged(&preset.headers, &own.headers),
        concurrency: own.concurrency.or(preset.concurrency).unwrap_or(16),
        rate_limit: own.rate_limit.or(preset.rate_limit),
        retry: own
            .retry
            .clone()
            .or(preset.retry.clone())
            .unwrap_or_default(),
        scim: ScimSettings {
            update: own.update.or(preset.update).unwrap_or(UpdateMode::Patch),
            deprovision: own
                .deprovision
                .or(preset.deprovision)
                .unwrap_or(Deprovision::Deactivate),
            on_delete: own
                .on_delete
                .or(preset.on_delete)
                .unwrap_or(Deprovision::Delete),
            groups: own.groups.or(preset.groups).unwrap_or(false),
            mapping: merged(&preset.mapping, &own.mapping),
            allowed_values: merged(&preset.allowed_values, &own.allowed_values),
            leaver_threshold: own
                .leaver_threshold
                .or(preset.leaver_threshold)
                .unwrap_or(0.10),
            leaver_window_secs: own
                .leaver_window_secs
                .or(preset.leaver_window_secs)
                .unwrap_or(3600),
            leaver_min_count: own
                .leaver_min_count
                .or(preset.leaver_min_count)
                .unwrap_or(5),
            member_batch: own.member_batch.or(preset.member_batch).unwrap_or(100),
            reconcile_every_secs: own.reconcile_every_secs.or(preset.reconcile_every_secs),
            reconcile_fix: own.reconcile_fix.or(preset.reconcile_fix).unwrap_or(false),
        },
    };
    validate(&c, &bad)?;
    Ok(c)
}

fn validate(
    c: &ConnectorConfig,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if !(c.url.starts_with("http://") || c.url.starts_with("https://"))
        || reqwest::Url::parse(&c.url).is_err()
    {
        return Err(bad("url", "must be an http:// or https:// URL".into()));
    }
    for pattern in &c.events {
        if !crate::outbox::event_pattern_is_valid(pattern) {
            return Err(bad(
                "events",
                format!(
                    "{pattern:?} matches no event type (e.g. \"user.*\", \"group.members_added\")"
                ),
            ));
        }
    }
    if let Some(scope) = &c.scope {
        crate::scim::filter::parse_filter(scope)
            .map_err(|e| bad("scope", format!("not a valid SCIM filter: {e}")))?;
    }
    if c.timeout_ms == 0 || c.timeout_ms > 300_000 {
        return Err(bad("timeout_ms", "must be between 1 and 300000".into()));
    }
    if c.concurrency == 0 || c.concurrency > 1024 {
        return Err(bad("concurrency", "must be between 1 and 1024".into()));
    }
    if c.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(bad(
            "rate_limit",
            "must be a positive number of requests per second".into(),
        ));
    }
    for (name, value) in &c.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("webhook-")
            || matches!(
                lower.as_str(),
                "content-type" | "content-length" | "host" | "authorization"
            )
        {
            return Err(bad(
                "headers",
                format!("{name:?} is set by scim-relay itself and cannot be configured"),
            ));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(bad("headers", format!("{name:?} is not a valid header")));
        }
    }
    let r = &c.retry;
    if r.initial_ms == 0 || r.max_ms < r.initial_ms || r.max_age_secs == 0 || r.circuit_after == 0 {
        return Err(bad(
            "retry",
            "needs 0 < initial_ms <= max_ms, max_age_secs > 0 and circuit_after > 0".into(),
        ));
    }
    match c.kind {
        ConnectorKind::Webhook => {
            if c.secret_env.is_none() && c.secret_file.is_none() {
                return Err(bad(
                    "secret_env",
                    "a webhook connector needs secret_env or secret_file (its whsec_… signing secret)"
                        .into(),
                ));
            }
        }
        ConnectorKind::Scim => {
            if c.token_env.is_none() && c.token_file.is_none() {
                return Err(bad(
                    "token_env",
                    "a SCIM connector needs token_env or token_file (the target's bearer token)"
                        .into(),
                ));
            }
            if c.scim.mapping.is_empty() {
                return Err(bad(
                    "mapping",
                    "a SCIM connector needs a mapping (or a preset that has one)".into(),
                ));
            }
            let s = &c.scim;
            if !(s.leaver_threshold > 0.0 && s.leaver_threshold <= 1.0) {
                return Err(bad(
                    "leaver_threshold",
                    "must be a share above 0 and at most 1 (0.1 = 10%)".into(),
                ));
            }
            if s.leaver_window_secs == 0 {
                return Err(bad("leaver_window_secs", "must be at least 1".into()));
            }
            if s.reconcile_every_secs.is_some_and(|secs| secs < 60) {
                return Err(bad(
                    "reconcile_every_secs",
                    "must be at least 60 (a reconciliation reads every user of the target)".into(),
                ));
            }
            if s.member_batch == 0 || s.member_batch > 10_000 {
                return Err(bad("member_batch", "must be between 1 and 10000".into()));
            }
        }
    }
    Ok(())
}
