//! The outbound SCIM connector: converges a downstream SCIM app to the gateway's current
//! state of each resource, through the connector's mapping and scope.
//!
//! A delivery names a resource; the connector reads its current state, decides from scope
//! and the link (what the target holds) whether to provision, update, deprovision or do
//! nothing, and sends only what differs from the state it last pushed. So several pending
//! changes to one user cost one request, and a later success heals an earlier failure.

use std::collections::BTreeSet;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{json, Value};

use super::mapping::{diff_ops, Expr, Mapping};
use super::Limits;
use crate::config::{Config, ConfigError, ConnectorConfig, Deprovision, ScimSettings, UpdateMode};
use crate::outbox::policy::{classify, parse_retry_after, Outcome};
use crate::scim::filter::{parse_filter, Filter};
use crate::scim::resource::Record;
use crate::scim::{schema, ResourceKind, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA};
use crate::store::{now_ms, Claimed, LeaverPolicy, Link, LinkStatus, Store, StoreError};

/// How much of a failing response body is kept for the operator.
const ERROR_BODY_LIMIT: usize = 1024;
/// The largest successful answer read: a page of 100 users or a group with tens of
/// thousands of members fits; an answer beyond it fails the attempt instead of filling memory.
const MAX_JSON_BODY: usize = 16 << 20;
/// How much of an answer that is not JSON the error quotes.
const MALFORMED_QUOTE_LIMIT: usize = 200;
/// How long a deprovision held by leaver safety waits before it looks again.
const PAUSED_RETRY_MS: u64 = 60_000;

pub struct ScimConnector {
    pub name: String,
    pub limits: Limits,
    base: String,
    client: reqwest::Client,
    mapping: Mapping,
    scope: Option<Filter>,
    settings: ScimSettings,
    store: Store,
}

/// A target's answer.
struct Answer {
    status: u16,
    /// The JSON of a 2xx answer (`Null` when it had no body, or none that parses).
    body: Value,
    /// Why a 2xx answer's body is not JSON, when it is not.
    malformed: Option<String>,
    /// The start of a non-2xx answer's body, for the operator.
    text: String,
    retry_after_ms: Option<u64>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The JSON of a 2xx answer whose content the caller needs (a lookup's matches, a new
    /// resource's id). Unreadable JSON is retried, not dead-lettered: it leaves unknown what
    /// the target did, and the next attempt finds out safely, since it looks the resource up
    /// by userName (adopting what a garbled POST created) and sends only what differs from
    /// what the target last confirmed. Read as "no match" instead, it would create a
    /// duplicate or dead-letter a conflict; and a target that keeps answering garbage still
    /// ends in the dead-letter list after `max_age_secs`, with this error on it.
    fn json(&self) -> Step<&Value> {
        match &self.malformed {
            Some(why) => Err(Outcome::Retry {
                status: Some(self.status),
                error: format!("HTTP {}: the answer is not valid JSON: {why}", self.status),
                retry_after_ms: None,
            }),
            None => Ok(&self.body),
        }
    }
    /// The outcome of an answer the caller did not expect.
    fn failure(&self) -> Outcome {
        match classify(self.status, &self.text, self.retry_after_ms) {
            Outcome::Delivered { status } => Outcome::Permanent {
                status: Some(status),
                error: format!(
                    "HTTP {status}: the answer lacks what was expected: {}",
                    self.text
                ),
            },
            other => other,
        }
    }
}

type Step<T> = Result<T, Outcome>;

fn storage(e: StoreError) -> Outcome {
    Outcome::Retry {
        status: None,
        error: format!("storage: {e}"),
        retry_after_ms: None,
    }
}

impl ScimConnector {
    pub fn new(
        config: &Config,
        index: usize,
        c: &ConnectorConfig,
        store: Store,
    ) -> Result<ScimConnector, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Value {
            file: config.file.clone(),
            key: format!("connectors[{index}].{key}"),
            message,
        };
        let token = c.token(config, index)?;
        let mut targets = std::collections::BTreeMap::new();
        for (target, value) in &c.scim.mapping {
            let expr: Expr = value
                .clone()
                .try_into()
                .map_err(|e| bad(&format!("mapping.{target}"), e.to_string()))?;
            targets.insert(target.clone(), expr);
        }
        let mapping = Mapping::new(&targets, &c.scim.allowed_values)
            .map_err(|e| bad("mapping", e.to_string()))?;
        let scope = c
            .scope
            .as_deref()
            .map(parse_filter)
            .transpose()
            .map_err(|e| bad("scope", e.to_string()))?;
        let mut headers = HeaderMap::new();
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            bad(
                "token_env",
                "the token has characters a header cannot carry".into(),
            )
        })?;
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/scim+json, application/json"),
        );
        headers.extend(super::extra_headers(c, &bad)?);
        let client = super::http_client(c, headers)
            .map_err(|e| bad("url", format!("cannot build HTTP client: {e}")))?;
        Ok(ScimConnector {
            name: c.name.clone(),
            limits: Limits::of(c),
            base: c.url.trim_end_matches('/').to_string(),
            client,
            mapping,
            scope,
            settings: c.scim.clone(),
            store,
        })
    }

    pub async fn deliver(&self, d: &Claimed) -> Outcome {
        let result = match d.resource_key.split_once('/') {
            Some(("User", id)) => self.sync_user(id, d.created_at).await,
            Some(("Group", id)) if self.settings.groups => self.sync_group(id).await,
            Some(("Group", _)) => Ok(0),
            _ => Err(Outcome::Permanent {
                status: None,
                error: format!("cannot sync {:?}", d.resource_key),
            }),
        };
        match result {
            Ok(status) => Outcome::Delivered { status },
            Err(outcome) => outcome,
        }
    }

    /// The mapping the connector pushes through (reconciliation compares what it writes).
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    pub(crate) fn settings(&self) -> &ScimSettings {
        &self.settings
    }

    /// A GET against the target through the connector's own client (token, headers,
    /// timeout, no redirects): the JSON body of a 2xx answer, or why there is none.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, String> {
        let answer = self
            .send(reqwest::Method::GET, path, None)
            .await
            .map_err(|o| outcome_text(&o))?;
        if answer.ok() {
            answer.json().map_err(|o| outcome_text(&o))?;
            Ok(answer.body)
        } else {
            Err(outcome_text(&answer.failure()))
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Step<Answer> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/scim+json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let mut response = request.send().await.map_err(|e| Outcome::Retry {
            status: None,
            error: super::describe(e),
            retry_after_ms: None,
        })?;
        let status = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now_ms()));
        if !response.status().is_success() {
            // A failure is judged by its status; its body only informs the operator.
            let prefix = super::read_prefix(&mut response, ERROR_BODY_LIMIT).await;
            return Ok(Answer {
                status,
                body: Value::Null,
                malformed: None,
                text: String::from_utf8_lossy(&prefix).trim().to_string(),
                retry_after_ms,
            });
        }
        // A body that breaks off or overflows leaves unknown what the target did: retried,
        // like a lost connection.
        let bytes = super::read_limited(&mut response, MAX_JSON_BODY)
            .await
            .map_err(|e| Outcome::Retry {
                status: Some(status),
                error: format!("HTTP {status}: {e}"),
                retry_after_ms: None,
            })?;
        let (body, malformed) = if bytes.iter().all(u8::is_ascii_whitespace) {
            (Value::Null, None)
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(body) => (body, None),
                Err(e) => {
                    let quote = bytes.get(..MALFORMED_QUOTE_LIMIT).unwrap_or(&bytes);
                    let quote = String::from_utf8_lossy(quote);
                    (Value::Null, Some(format!("{e} in {:?}", quote.trim())))
                }
            }
        };
        Ok(Answer {
            status,
            body,
            malformed,
            text: String::new(),
            retry_after_ms,
        })
    }

    /// Whether the user (its full SCIM representation) is in the connector's scope.
    pub(crate) fn in_scope(&self, user: &Value) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|scope| scope.matches(user, &|p| schema::case_exact(ResourceKind::User, p)))
    }

    /// The target's id for the user's manager: `manager.value` holds the gateway's id, which
    /// means nothing to the target. Without a link yet the manager is left out (it follows
    /// with a later sync of this user).
    async fn translate_manager(&self, mapped: &mut Value) -> Step<()> {
        let Some(ext) = mapped
            .get_mut(ENTERPRISE_USER_SCHEMA)
            .and_then(Value::as_object_mut)
        else {
            return Ok(());
        };
        let Some(local) = ext
            .get("manager")
            .and_then(|m| m.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Ok(());
        };
        let remote = self
            .store
            .remote_ids(&self.name, ResourceKind::User, vec![local])
            .await
            .map_err(storage)?
            .pop()
            .map(|(_, remote)| remote);
        match remote {
            Some(remote) => {
                ext.insert("manager".into(), json!({"value": remote}));
            }
            None => {
                ext.remove("manager");
            }
        }
        Ok(())
    }

    /// The mapped user this target should hold; `active` is always managed, since
    /// deprovisioning by deactivation and reactivation write it.
    pub(crate) async fn desired(&self, user: &Record) -> Step<Value> {
        let rendered = user.to_scim("");
        let mut mapped = self
            .mapping
            .apply(&rendered)
            .map_err(|e| Outcome::Permanent {
                status: None,
                error: format!("mapping: {e}"),
            })?;
        if let Some(obj) = mapped.as_object_mut() {
            if !obj.contains_key("active") {
                let active = rendered
                    .get("active")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                obj.insert("active".into(), Value::Bool(active));
            }
        }
        self.translate_manager(&mut mapped).await?;
        Ok(mapped)
    }

    /// `queued_at`: when the delivery was queued (an operator's resume confirms deprovisions
    /// queued before it).
    async fn sync_user(&self, id: &str, queued_at: i64) -> Step<u16> {
        let user = match self.store.get(ResourceKind::User, id, false).await {
            Ok(u) => Some(u),
            Err(StoreError::Scim(e)) if e.status == 404 => None,
            Err(e) => return Err(storage(e)),
        };
        let link = self
            .store
            .link(&self.name, ResourceKind::User, id)
            .await
            .map_err(storage)?;
        let in_scope = user.as_ref().is_some_and(|u| self.in_scope(&u.to_scim("")));
        match (user, link) {
            (Some(user), link) if in_scope => {
                let desired = self.desired(&user).await?;
                match link {
                    Some(link) if link.status != LinkStatus::Deleted => {
                        self.update_user(&user, link, desired, queued_at).await
                    }
                    _ => self.provision_user(&user, desired).await,
                }
            }
            (user, Some(link)) => {
                let deleted = user.is_none();
                let mode = if deleted {
                    self.settings.on_delete
                } else {
                    self.settings.deprovision
                };
                match (link.status, mode) {
                    (LinkStatus::Active, _) | (LinkStatus::Inactive, Deprovision::Delete) => {
                        self.deprovision_user(id, link, mode, queued_at).await
                    }
                    _ => Ok(0),
                }
            }
            _ => Ok(0),
        }
    }

    /// The remote user with this userName, if the target has one.
    async fn find_remote(
        &self,
        kind: ResourceKind,
        attr: &str,
        value: &str,
    ) -> Step<Option<String>> {
        let filter = format!("{attr} eq {}", Value::String(value.to_string()));
        let path = format!("{}?filter={}", kind.endpoint(), percent_encode(&filter));
        let answer = self.send(reqwest::Method::GET, &path, None).await?;
        if !answer.ok() {
            return Err(answer.failure());
        }
        Ok(answer
            .json()?
            .get("Resources")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    async fn provision_user(&self, user: &Record, desired: Value) -> Step<u16> {
        let user_name = desired
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Adopt an account the target already has rather than fail on a duplicate.
        let existing = if user_name.is_empty() {
            None
        } else {
            self.find_remote(ResourceKind::User, "userName", &user_name)
                .await?
        };
        let (remote_id, status) = match existing {
            Some(remote_id) => {
                let status = self.push_user(&remote_id, &json!({}), &desired).await?;
                (remote_id, status)
            }
            None => {
                let answer = self
                    .send(reqwest::Method::POST, "/Users", Some(&desired))
                    .await?;
                let created = if answer.ok() {
                    answer.json()?.get("id").and_then(Value::as_str)
                } else {
                    None
                };
                match created {
                    Some(remote_id) => (remote_id.to_string(), answer.status),
                    _ if answer.status == 409 && !user_name.is_empty() => {
                        let remote_id = self
                            .find_remote(ResourceKind::User, "userName", &user_name)
                            .await?
                            .ok_or_else(|| answer.failure())?;
                        let status = self.push_user(&remote_id, &json!({}), &desired).await?;
                        (remote_id, status)
                    }
                    _ => return Err(answer.failure()),
                }
            }
        };
        self.link_user(&user.id, remote_id, desired).await?;
        if self.settings.groups && !user.groups.is_empty() {
            // Groups synced before this user existed remotely lack it as a member.
            let keys = user
                .groups
                .iter()
                .map(|g| format!("Group/{}", g.id))
                .collect();
            self.store
                .enqueue_sync(&self.name, keys)
                .await
                .map_err(storage)?;
        }
        Ok(status)
    }

    async fn link_user(&self, local_id: &str, remote_id: String, state: Value) -> Step<()> {
        let status = if state.get("active") == Some(&Value::Bool(false)) {
            LinkStatus::Inactive
        } else {
            LinkStatus::Active
        };
        self.store
            .save_link(
                &self.name,
                ResourceKind::User,
                local_id,
                Link {
                    remote_id,
                    state,
                    status,
                },
            )
            .await
            .map_err(storage)
    }

    /// Sends the difference between `before` and `desired` (PATCH) or the whole user (PUT).
    async fn push_user(&self, remote_id: &str, before: &Value, desired: &Value) -> Step<u16> {
        let path = format!("/Users/{remote_id}");
        let answer = match self.settings.update {
            UpdateMode::Patch => {
                let ops = diff_ops(before, desired);
                if ops.is_empty() {
                    return Ok(0);
                }
                let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
                self.send(reqwest::Method::PATCH, &path, Some(&body))
                    .await?
            }
            UpdateMode::Put => {
                let mut body = desired.clone();
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("id".into(), Value::String(remote_id.to_string()));
                }
                self.send(reqwest::Method::PUT, &path, Some(&body)).await?
            }
        };
        if answer.ok() {
            Ok(answer.status)
        } else {
            Err(answer.failure())
        }
    }

    async fn update_user(
        &self,
        user: &Record,
        link: Link,
        desired: Value,
        queued_at: i64,
    ) -> Step<u16> {
        if diff_ops(&link.state, &desired).is_empty() {
            return Ok(0);
        }
        let deactivating = desired.get("active") == Some(&Value::Bool(false))
            && link.state.get("active") != Some(&Value::Bool(false));
        if deactivating {
            self.check_leavers(&user.id, queued_at).await?;
        }
        match self.push_user(&link.remote_id, &link.state, &desired).await {
            Ok(status) => {
                self.link_user(&user.id, link.remote_id, desired).await?;
                Ok(status)
            }
            // The target lost the user: create it again.
            Err(Outcome::Permanent {
                status: Some(404), ..
            }) => self.provision_user(user, desired).await,
            Err(other) => Err(other),
        }
    }

    /// Leaver safety: waits (in the outbox) while deprovisions are paused.
    async fn check_leavers(&self, local_id: &str, queued_at: i64) -> Step<()> {
        let policy = LeaverPolicy {
            threshold: self.settings.leaver_threshold,
            window_ms: i64::try_from(self.settings.leaver_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            min_count: self.settings.leaver_min_count,
        };
        if self
            .store
            .allow_deprovision(&self.name, local_id, policy, queued_at)
            .await
            .map_err(storage)?
        {
            Ok(())
        } else {
            Err(Outcome::Deferred {
                reason: format!(
                    "deprovisions paused by leaver safety; confirm with `scim-relay connectors resume {}`",
                    self.name
                ),
                retry_after_ms: PAUSED_RETRY_MS,
            })
        }
    }

    async fn deprovision_user(
        &self,
        id: &str,
        link: Link,
        mode: Deprovision,
        queued_at: i64,
    ) -> Step<u16> {
        self.check_leavers(id, queued_at).await?;
        let path = format!("/Users/{}", link.remote_id);
        match mode {
            Deprovision::Deactivate => {
                let mut state = link.state.clone();
                if let Some(obj) = state.as_object_mut() {
                    obj.insert("active".into(), Value::Bool(false));
                }
                let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [
                    {"op": "replace", "path": "active", "value": false}
                ]});
                let answer = self
                    .send(reqwest::Method::PATCH, &path, Some(&body))
                    .await?;
                // A target that no longer has the user has nothing left to deactivate.
                let link_status = match answer.status {
                    _ if answer.ok() => LinkStatus::Inactive,
                    404 => LinkStatus::Deleted,
                    _ => return Err(answer.failure()),
                };
                self.save(ResourceKind::User, id, link.remote_id, state, link_status)
                    .await?;
                Ok(answer.status)
            }
            Deprovision::Delete => self.delete_remote(ResourceKind::User, id, link).await,
        }
    }

    /// Deletes the remote resource (already gone is fine) and remembers that it is.
    async fn delete_remote(&self, kind: ResourceKind, local_id: &str, link: Link) -> Step<u16> {
        let path = format!("{}/{}", kind.endpoint(), link.remote_id);
        let answer = self.send(reqwest::Method::DELETE, &path, None).await?;
        if !(answer.ok() || answer.status == 404) {
            return Err(answer.failure());
        }
        self.save(
            kind,
            local_id,
            link.remote_id,
            link.state,
            LinkStatus::Deleted,
        )
        .await?;
        Ok(answer.status)
    }

    async fn save(
        &self,
        kind: ResourceKind,
        local_id: &str,
        remote_id: String,
        state: Value,
        status: LinkStatus,
    ) -> Step<()> {
        self.store
            .save_link(
                &self.name,
                kind,
                local_id,
                Link {
                    remote_id,
                    state,
                    status,
                },
            )
            .await
            .map_err(storage)
    }

    async fn sync_group(&self, id: &str) -> Step<u16> {
        let group = match self.store.get(ResourceKind::Group, id, true).await {
            Ok(g) => Some(g),
            Err(StoreError::Scim(e)) if e.status == 404 => None,
            Err(e) => return Err(storage(e)),
        };
        let link = self
            .store
            .link(&self.name, ResourceKind::Group, id)
            .await
            .map_err(storage)?
            .filter(|l| l.status != LinkStatus::Deleted);
        match (group, link) {
            (Some(group), link) => {
                let display = group
                    .doc
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let local_members: Vec<String> = group
                    .members
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.id)
                    .collect();
                let members: BTreeSet<String> = self
                    .store
                    .remote_ids(&self.name, ResourceKind::User, local_members)
                    .await
                    .map_err(storage)?
                    .into_iter()
                    .map(|(_, remote)| remote)
                    .collect();
                let (remote_id, before) = match link {
                    Some(link) => (link.remote_id, link.state),
                    None => (self.create_group(&display).await?, json!({})),
                };
                let status = self
                    .push_group(&remote_id, &before, &display, &members)
                    .await?;
                let state = json!({"displayName": display, "members": members});
                self.save(
                    ResourceKind::Group,
                    id,
                    remote_id,
                    state,
                    LinkStatus::Active,
                )
                .await?;
                Ok(status)
            }
            (None, Some(link)) => self.delete_remote(ResourceKind::Group, id, link).await,
            (None, None) => Ok(0),
        }
    }

    /// Creates the group empty (members follow in batches), or adopts one of that name.
    async fn create_group(&self, display: &str) -> Step<String> {
        if let Some(id) = self
            .find_remote(ResourceKind::Group, "displayName", display)
            .await?
        {
            return Ok(id);
        }
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": display});
        let answer = self
            .send(reqwest::Method::POST, "/Groups", Some(&body))
            .await?;
        let created = if answer.ok() {
            answer.json()?.get("id").and_then(Value::as_str)
        } else {
            None
        };
        match created {
            Some(id) => Ok(id.to_string()),
            None => Err(answer.failure()),
        }
    }

    /// Renames and changes membership, at most `member_batch` members per PATCH.
    async fn push_group(
        &self,
        remote_id: &str,
        before: &Value,
        display: &str,
        members: &BTreeSet<String>,
    ) -> Step<u16> {
        let had: BTreeSet<String> = before
            .get("members")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut batches: Vec<Vec<Value>> = Vec::new();
        if before.get("displayName").and_then(Value::as_str) != Some(display) {
            batches.push(vec![
                json!({"op": "replace", "path": "displayName", "value": display}),
            ]);
        }
        let added: Vec<&String> = members.difference(&had).collect();
        let removed: Vec<&String> = had.difference(members).collect();
        for chunk in added.chunks(self.settings.member_batch) {
            let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
            batches.push(vec![
                json!({"op": "add", "path": "members", "value": value}),
            ]);
        }
        for chunk in removed.chunks(self.settings.member_batch) {
            let ops = chunk
                .iter()
                .map(|id| {
                    json!({"op": "remove", "path": format!("members[value eq {}]", Value::String((*id).clone()))})
                })
                .collect();
            batches.push(ops);
        }
        let mut last = 0;
        for ops in batches {
            let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
            let answer = self
                .send(
                    reqwest::Method::PATCH,
                    &format!("/Groups/{remote_id}"),
                    Some(&body),
                )
                .await?;
            if !answer.ok() {
                return Err(answer.failure());
            }
            last = answer.status;
        }
        Ok(last)
    }
}

/// An unsuccessful outcome in words, for callers outside the outbox.
pub(crate) fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered { status } => format!("HTTP {status}"),
        Outcome::Retry { error, .. } | Outcome::Permanent { error, .. } => error.clone(),
        Outcome::Deferred { reason, .. } => reason.clone(),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
