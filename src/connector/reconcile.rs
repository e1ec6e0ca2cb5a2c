//! Reconciliation: compares what a SCIM connector's target really holds with what the
//! connector says it should hold, reports the drift, and (with `fix`) makes the outbox repair
//! it.
//!
//! Why it is needed: the connector is state-based but sends only the difference between the
//! desired state and the state it last pushed (the link). A change made at the target behind
//! the gateway's back (an admin renames or deactivates a user there, or deletes one) is
//! invisible to it, so nothing would ever repair it.
//!
//! What the target should hold is computed by the connector's own code (`ScimConnector::
//! in_scope` and `desired`: the mapping, the always-managed `active`, the manager id
//! translation), never re-implemented here. For every gateway user in scope:
//! - no usable link, or a link whose remote id the target does not list: `missing`;
//! - a linked remote user whose `active` differs: `wrong_active`;
//! - one that differs on another attribute the mapping writes: `different`, with each
//!   attribute path and both values.
//!
//! Linked users that left the scope (or the gateway) are held to the connector's deprovision
//! mode: with `deactivate` the target should hold them inactive (`wrong_active` otherwise);
//! with `delete` one the target still holds is `extra`, like every remote user that no link
//! ties to a gateway user in scope. Extras are listed, never deleted.
//!
//! Values are compared the way a SCIM server holds them: per managed top-level attribute
//! (extension attributes count as top-level, as in `diff_ops`), both sides normalised with
//! the schema's rules (`normalize_attr`), absent equal to null, multi-valued attributes
//! compared as sets, and of a single-valued complex attribute only the sub-attributes the
//! mapping writes (`name.givenName` says nothing about `name.formatted`). Attributes the
//! mapping does not write are the target's business and are not compared.
//!
//! Groups are not reconciled.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::scim::{outcome_text, ScimConnector};
use super::Connector;
use crate::config::Deprovision;
use crate::outbox::policy::Outcome;
use crate::scim::filter::parse_path;
use crate::scim::resource::Record;
use crate::scim::schema::{self, AttrDef, Container};
use crate::scim::ResourceKind;
use crate::store::{Link, LinkStatus, ListQuery, Store, StoreError};

/// Users asked for per page of the target's `/Users`; the target may answer fewer.
const PAGE_SIZE: usize = 100;
/// Most remote users read: a target listing more is refused rather than read without end.
pub const MAX_REMOTE_USERS: usize = 1_000_000;
/// Most pages read, which also bounds a target that answers pages of one.
const MAX_PAGES: usize = 20_000;
/// Gateway users read per store page.
const LOCAL_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no connector named {0:?}")]
    NoSuchConnector(String),
    #[error("{0:?} is a webhook connector: reconciliation reads a SCIM target's users")]
    NotScim(String),
    /// The kill switch stops all traffic to the target, reads included.
    #[error(
        "connector {0:?} is paused; nothing is sent to it, reads included \
         (`scim-relay connectors resume {0}` first)"
    )]
    Paused(String),
    #[error("reading the target's users: {0}")]
    Target(String),
    #[error("the target lists {total} users, more than the {limit} reconciliation reads")]
    TooMany { total: usize, limit: usize },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("computing what the target should hold for user {id}: {error}")]
    Desired { id: String, error: String },
}

/// What a reconciliation found (and, with `fix`, queued).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub connector: String,
    /// Whether repairs were queued.
    pub fix: bool,
    pub counts: Counts,
    pub missing: Vec<Missing>,
    pub extra: Vec<Extra>,
    pub different: Vec<Different>,
    pub wrong_active: Vec<WrongActive>,
    /// Users in scope the connector cannot map (its syncs of them fail the same way).
    pub errors: Vec<Unmappable>,
}

impl Report {
    /// Whether the target differs from what it should hold (extras included).
    pub fn has_drift(&self) -> bool {
        !(self.missing.is_empty()
            && self.extra.is_empty()
            && self.different.is_empty()
            && self.wrong_active.is_empty())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Users the target lists.
    pub remote_users: usize,
    pub gateway_users: usize,
    pub in_scope: usize,
    /// In-scope users the target holds exactly as mapped.
    pub in_sync: usize,
    /// Linked users out of scope (or deleted) that the target holds as the deprovision mode
    /// says: inactive, or not at all.
    pub deprovisioned: usize,
    pub missing: usize,
    pub extra: usize,
    pub different: usize,
    pub wrong_active: usize,
    pub errors: usize,
    /// Syncs queued by `fix`.
    pub queued: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingReason {
    /// No link (never provisioned, or its remote user was deleted by the connector).
    NotProvisioned,
    /// Linked, but the target no longer lists the linked remote user.
    RemoteNotFound,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub local_id: String,
    pub user_name: Option<String>,
    pub reason: MissingReason,
    /// The stale link's remote id (`remote_not_found`).
    pub remote_id: Option<String>,
    /// A remote user with the same userName, which a sync adopts instead of creating one.
    pub adopts: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Extra {
    pub remote_id: String,
    pub user_name: Option<String>,
    pub active: Option<bool>,
    /// The gateway user the link ties it to when that user is out of scope or deleted and
    /// the deprovision mode is `delete` (the deletion is pending, failed or held).
    pub linked_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Different {
    pub local_id: String,
    pub remote_id: String,
    pub user_name: Option<String>,
    pub attributes: Vec<AttrDrift>,
}

/// One attribute that differs; `null` stands for absent.
#[derive(Debug, Clone, Serialize)]
pub struct AttrDrift {
    /// `displayName`, `name`, `urn:…:enterprise:2.0:User:department`.
    pub path: String,
    pub desired: Value,
    pub remote: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct WrongActive {
    pub local_id: String,
    pub remote_id: String,
    pub user_name: Option<String>,
    pub desired: bool,
    /// `None` when the target shows no `active`.
    pub remote: Option<bool>,
    /// False for a deprovisioned (out of scope or deleted) user the target holds active.
    pub in_scope: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unmappable {
    pub local_id: String,
    pub user_name: Option<String>,
    pub error: String,
}

/// The named connector, if it is a SCIM connector.
pub fn find_scim<'a>(
    connectors: &'a [Connector],
    name: &str,
) -> Result<&'a ScimConnector, ReconcileError> {
    let connector = connectors
        .iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| ReconcileError::NoSuchConnector(name.to_string()))?;
    connector
        .as_scim()
        .ok_or_else(|| ReconcileError::NotScim(name.to_string()))
}

/// Compares the connector's target with what it should hold; with `fix`, queues a sync of
/// every drifted user after preparing its link so that the sync sends what the target
/// lacks (see [`fix_link_state`]). Extra remote users are only reported.
///
/// Safe while the server runs: it reads the gateway and the links first and the target
/// after, so work the outbox finishes meanwhile can only show up as an extra (never acted
/// on) or as a missing user whose re-provisioning adopts the remote user by userName.
pub async fn reconcile(
    connector: &ScimConnector,
    store: &Store,
    fix: bool,
) -> Result<Report, ReconcileError> {
    let name = connector.name.as_str();
    if store.connector_switches(name).await?.paused {
        return Err(ReconcileError::Paused(name.to_string()));
    }
    let fields = managed_fields(connector.mapping().targets());
    let links: HashMap<String, Link> = store
        .links_of(name, ResourceKind::User)
        .await?
        .into_iter()
        .collect();
    let users = gateway_users(store).await?;
    let remote = remote_users(connector).await?;

    let mut report = Report {
        connector: name.to_string(),
        fix,
        ..Report::default()
    };
    report.counts.gateway_users = users.len();
    report.counts.remote_users = remote.len();
    let remote_by_id: HashMap<&str, &Value> = remote
        .iter()
        .filter_map(|u| Some((u.get("id")?.as_str()?, u)))
        .collect();
    let remote_by_name: HashMap<String, &str> = remote
        .iter()
        .filter_map(|u| {
            Some((
                u.get("userName")?.as_str()?.to_lowercase(),
                u.get("id")?.as_str()?,
            ))
        })
        .collect();
    // Remote ids some live link accounts for; the rest are extras.
    let linked: HashMap<&str, &str> = links
        .iter()
        .filter(|(_, l)| l.status != LinkStatus::Deleted)
        .map(|(local, l)| (l.remote_id.as_str(), local.as_str()))
        .collect();
    let mut accounted: HashSet<String> = HashSet::new();
    let mut in_scope_ids: HashSet<&str> = HashSet::new();
    let mut queue: BTreeSet<String> = BTreeSet::new();
    let gateway_ids: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();

    for user in &users {
        if !connector.in_scope(&user.to_scim("")) {
            continue;
        }
        in_scope_ids.insert(&user.id);
        report.counts.in_scope += 1;
        let link = links
            .get(&user.id)
            .filter(|l| l.status != LinkStatus::Deleted);
        let desired = match connector.desired(user).await {
            Ok(d) => d,
            // Storage trouble (the manager's link) is not the user's fault: stop.
            Err(outcome @ (Outcome::Retry { .. } | Outcome::Deferred { .. })) => {
                return Err(ReconcileError::Desired {
                    id: user.id.clone(),
                    error: outcome_text(&outcome),
                })
            }
            Err(outcome) => {
                if let Some(l) = link {
                    accounted.insert(l.remote_id.clone());
                }
                report.errors.push(Unmappable {
                    local_id: user.id.clone(),
                    user_name: user_name(&user.doc),
                    error: outcome_text(&outcome),
                });
                continue;
            }
        };
        // A sync that provisions adopts a remote user of that name rather than create a
        // second one, so that user is accounted for, not extra.
        let mut adoptable = || {
            let id = user_name(&desired)
                .and_then(|n| remote_by_name.get(&n.to_lowercase()).copied())
                .filter(|id| !linked.contains_key(id))?;
            accounted.insert(id.to_string());
            Some(id.to_string())
        };
        let Some(link) = link else {
            let adopts = adoptable();
            report.missing.push(Missing {
                local_id: user.id.clone(),
                user_name: user_name(&desired),
                reason: MissingReason::NotProvisioned,
                remote_id: None,
                adopts,
            });
            queue.insert(format!("User/{}", user.id));
            continue;
        };
        let Some(remote) = remote_by_id.get(link.remote_id.as_str()) else {
            report.missing.push(Missing {
                local_id: user.id.clone(),
                user_name: user_name(&desired),
                reason: MissingReason::RemoteNotFound,
                remote_id: Some(link.remote_id.clone()),
                adopts: adoptable(),
            });
            if fix {
                // A deleted link makes the sync provision again (adopting by userName
                // first), where a live one would PATCH a remote id that is gone.
                save(
                    store,
                    name,
                    &user.id,
                    link,
                    link.state.clone(),
                    LinkStatus::Deleted,
                )
                .await?;
            }
            queue.insert(format!("User/{}", user.id));
            continue;
        };
        accounted.insert(link.remote_id.clone());
        let drift = compare(&fields, &desired, remote);
        if drift.is_empty() {
            report.counts.in_sync += 1;
            continue;
        }
        for d in &drift {
            if d.path == "active" {
                report.wrong_active.push(WrongActive {
                    local_id: user.id.clone(),
                    remote_id: link.remote_id.clone(),
                    user_name: user_name(&desired),
                    desired: d.desired.as_bool().unwrap_or(true),
                    remote: d.remote.as_bool(),
                    in_scope: true,
                });
            }
        }
        let attributes: Vec<AttrDrift> = drift.into_iter().filter(|d| d.path != "active").collect();
        if !attributes.is_empty() {
            report.different.push(Different {
                local_id: user.id.clone(),
                remote_id: link.remote_id.clone(),
                user_name: user_name(&desired),
                attributes,
            });
        }
        if fix {
            let state = fix_link_state(&fields, &desired, remote);
            save(store, name, &user.id, link, state, link.status).await?;
        }
        queue.insert(format!("User/{}", user.id));
    }

    // Linked users that left the scope or the gateway: held to the deprovision mode.
    let settings = connector.settings();
    for (local_id, link) in &links {
        if in_scope_ids.contains(local_id.as_str()) {
            continue;
        }
        let remote = match (remote_by_id.get(link.remote_id.as_str()), link.status) {
            // Gone from the target (deleted by the connector, or lost there after a
            // deactivation): nothing the connector would re-create.
            (None, _) => {
                report.counts.deprovisioned += 1;
                continue;
            }
            // A remote id the connector deleted, listed again: not its user any more.
            (Some(_), LinkStatus::Deleted) => continue,
            (Some(remote), _) => *remote,
        };
        let mode = if gateway_ids.contains(local_id.as_str()) {
            settings.deprovision
        } else {
            settings.on_delete
        };
        if mode == Deprovision::Delete {
            continue; // reported as extra below, with `linked_to`
        }
        accounted.insert(link.remote_id.clone());
        let active = remote.get("active").and_then(active_value);
        if active == Some(false) {
            report.counts.deprovisioned += 1;
            continue;
        }
        report.wrong_active.push(WrongActive {
            local_id: local_id.clone(),
            remote_id: link.remote_id.clone(),
            user_name: user_name(remote),
            desired: false,
            remote: active,
            in_scope: false,
        });
        if fix && link.status != LinkStatus::Active {
            // The connector deprovisions only from an active link; marking it active again
            // (state kept) makes the queued sync deactivate the user once more, through
            // leaver safety like any deprovision.
            save(
                store,
                name,
                local_id,
                link,
                link.state.clone(),
                LinkStatus::Active,
            )
            .await?;
        }
        queue.insert(format!("User/{local_id}"));
    }

    for user in &remote {
        let Some(id) = user.get("id").and_then(Value::as_str) else {
            continue;
        };
        if accounted.contains(id) {
            continue;
        }
        report.extra.push(Extra {
            remote_id: id.to_string(),
            user_name: user_name(user),
            active: user.get("active").and_then(active_value),
            linked_to: linked.get(id).map(|l| l.to_string()),
        });
    }

    if fix && !queue.is_empty() {
        report.counts.queued = store
            .enqueue_sync(name, queue.into_iter().collect())
            .await?;
    }
    sort_report(&mut report);
    let c = &mut report.counts;
    c.missing = report.missing.len();
    c.extra = report.extra.len();
    c.different = report.different.len();
    c.wrong_active = report.wrong_active.len();
    c.errors = report.errors.len();
    Ok(report)
}

/// Runs [`reconcile`] on `connector` every `every` (the first run one interval after the
/// start) until `stop` turns true or its sender is dropped. Each run is logged: a warning
/// with the counts when there is drift, and `fix` queues the repairs. A paused connector is
/// skipped. Stopping cancels a run in progress, which is harmless: a link prepared but not
/// yet queued is repaired by the next run, and meanwhile only makes a later sync of that
/// user send more than it had to.
pub async fn run_periodically(
    connector: Arc<Connector>,
    store: Store,
    every: Duration,
    fix: bool,
    mut stop: watch::Receiver<bool>,
) {
    let Some(scim) = connector.as_scim() else {
        tracing::warn!(
            connector = connector.name(),
            "periodic reconciliation is for SCIM connectors; not started"
        );
        return;
    };
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        let run = reconcile(scim, &store, fix);
        let result = tokio::select! {
            r = run => r,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        log_run(&scim.name, result);
    }
}

fn log_run(name: &str, result: Result<Report, ReconcileError>) {
    match result {
        Ok(r) if r.has_drift() => tracing::warn!(
            connector = name,
            missing = r.counts.missing,
            extra = r.counts.extra,
            different = r.counts.different,
            wrong_active = r.counts.wrong_active,
            queued = r.counts.queued,
            "reconciliation: the target differs from what it should hold \
             (`scim-relay reconcile --connector {name}` lists it)"
        ),
        Ok(r) => tracing::info!(
            connector = name,
            in_sync = r.counts.in_sync,
            remote_users = r.counts.remote_users,
            "reconciliation: the target holds what it should"
        ),
        Err(ReconcileError::Paused(_)) => {
            tracing::debug!(connector = name, "reconciliation skipped: paused")
        }
        Err(e) => tracing::warn!(connector = name, error = %e, "reconciliation failed"),
    }
}

async fn save(
    store: &Store,
    connector: &str,
    local_id: &str,
    link: &Link,
    state: Value,
    status: LinkStatus,
) -> Result<(), StoreError> {
    store
        .save_link(
            connector,
            ResourceKind::User,
            local_id,
            Link {
                remote_id: link.remote_id.clone(),
                state,
                status,
            },
        )
        .await
}

fn sort_report(r: &mut Report) {
    let key = |name: &Option<String>, id: &str| (name.clone().unwrap_or_default(), id.to_string());
    r.missing.sort_by_key(|m| key(&m.user_name, &m.local_id));
    r.extra.sort_by_key(|e| key(&e.user_name, &e.remote_id));
    r.different.sort_by_key(|d| key(&d.user_name, &d.local_id));
    r.wrong_active
        .sort_by_key(|w| key(&w.user_name, &w.local_id));
    r.errors.sort_by_key(|e| key(&e.user_name, &e.local_id));
}

fn user_name(doc: &Value) -> Option<String> {
    doc.as_object()
        .and_then(|o| schema::key_ci(o, "userName"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `active` as a target may write it (Entra-style `"False"` included).
fn active_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading both sides
// ---------------------------------------------------------------------------------------------

/// Every gateway user, with its groups (scope and `member_of` look at them).
async fn gateway_users(store: &Store) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let page = store
            .list(
                ResourceKind::User,
                ListQuery {
                    filter: None,
                    start_index: start,
                    count: LOCAL_PAGE,
                    sort_by: None,
                    descending: false,
                    with_members: false,
                },
            )
            .await?;
        let n = page.records.len();
        out.extend(page.records);
        if n == 0 || out.len() >= page.total {
            return Ok(out);
        }
        start += n;
    }
}

/// Every user the target lists: `GET /Users` page by page (RFC 7644 §3.4.2.4) until
/// `totalResults` are read. An incomplete read is an error rather than a report, since users
/// not read would show up as missing.
async fn remote_users(connector: &ScimConnector) -> Result<Vec<Value>, ReconcileError> {
    let mut out: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut start = 1usize;
    // These reads bypass the outbox's rate limiter, so they keep to the rate themselves.
    let pause = connector
        .limits
        .rate_limit
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    for page in 0..MAX_PAGES {
        if let (true, Some(p)) = (page > 0, pause) {
            tokio::time::sleep(p).await;
        }
        let body = connector
            .get_json(&format!("/Users?startIndex={start}&count={PAGE_SIZE}"))
            .await
            .map_err(ReconcileError::Target)?;
        let total = body
            .get("totalResults")
            .and_then(Value::as_u64)
            .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
        if let Some(total) = total.filter(|t| *t > MAX_REMOTE_USERS) {
            return Err(ReconcileError::TooMany {
                total,
                limit: MAX_REMOTE_USERS,
            });
        }
        let resources = match body.get("Resources") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ReconcileError::Target(
                    "the list response's Resources is not an array".into(),
                ))
            }
        };
        if resources.is_empty() {
            return match total {
                Some(t) if out.len() < t => Err(ReconcileError::Target(format!(
                    "the target stopped listing at {} of the {t} users it counts",
                    out.len()
                ))),
                _ => Ok(out),
            };
        }
        let listed = resources.len();
        let mut new = 0;
        for user in resources {
            let Some(id) = user.get("id").and_then(Value::as_str) else {
                continue;
            };
            if seen.insert(id.to_string()) {
                out.push(user);
                new += 1;
            }
        }
        if new == 0 {
            return Err(ReconcileError::Target(format!(
                "paging does not advance: startIndex={start} answers users already read"
            )));
        }
        if out.len() > MAX_REMOTE_USERS {
            return Err(ReconcileError::TooMany {
                total: out.len(),
                limit: MAX_REMOTE_USERS,
            });
        }
        if total.is_some_and(|t| out.len() >= t) {
            return Ok(out);
        }
        start += listed;
    }
    Err(ReconcileError::Target(format!(
        "more than {MAX_PAGES} pages of users; the target answers pages too small to read"
    )))
}

// ---------------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------------

/// One attribute the connector writes, at the granularity `diff_ops` pushes it: a top-level
/// attribute, or an attribute of the enterprise extension.
#[derive(Debug, Clone)]
struct Field {
    /// As `diff_ops` names it: `displayName`, `urn:…:enterprise:2.0:User:manager`.
    path: String,
    /// The extension URN holding it (the key the mapping writes the extension under).
    ext: Option<&'static str>,
    /// Its name in its container (the schema's spelling; a custom one as configured).
    name: String,
    /// `None` for the target's own attributes, which get no schema normalisation.
    def: Option<&'static AttrDef>,
    /// For a single-valued attribute of which the mapping writes only some sub-attributes
    /// (`name.givenName`): those, lowercased. `None`: the whole value.
    subs: Option<BTreeSet<String>>,
}

/// The fields a mapping writes (from its validated target paths), plus `active`, which the
/// connector always manages.
fn managed_fields<'a>(targets: impl Iterator<Item = &'a str>) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    for target in targets.chain(std::iter::once("active")) {
        // Mapping::new accepted every target, so a path that does not parse cannot occur.
        let Ok(path) = parse_path(target) else {
            continue;
        };
        let (ext, name, def) = match schema::lookup(
            ResourceKind::User,
            path.attr.urn.as_deref(),
            &path.attr.name,
        ) {
            Some((Container::Top, def)) => (None, def.name.to_string(), Some(def)),
            Some((Container::Extension(ext), def)) => {
                (Some(ext.id), def.name.to_string(), Some(def))
            }
            None => (None, path.attr.name.clone(), None),
        };
        let sub = path.attr.sub.as_deref().or(path.sub.as_deref());
        // An element of a multi-valued attribute is pushed as the whole attribute.
        let partial = match (&path.filter, sub) {
            (None, Some(sub)) if !def.is_some_and(|d| d.multi_valued) => {
                Some(sub.to_ascii_lowercase())
            }
            _ => None,
        };
        let existing = fields
            .iter_mut()
            .find(|f| f.ext == ext && f.name.eq_ignore_ascii_case(&name));
        match existing {
            Some(f) => match (&mut f.subs, partial) {
                (Some(subs), Some(sub)) => {
                    subs.insert(sub);
                }
                // `active` is chained last: a mapped `active` is already whole.
                (subs, _) => *subs = None,
            },
            None => fields.push(Field {
                path: ext.map_or_else(|| name.clone(), |urn| format!("{urn}:{name}")),
                ext,
                name,
                def,
                subs: partial.map(|s| BTreeSet::from([s])),
            }),
        }
    }
    fields
}

/// A field's value in a document the way a SCIM server holds it: normalised with the
/// schema's rules, only the managed sub-attributes, `None` when unassigned (absent, null,
/// empty).
fn field_value(doc: &Value, field: &Field) -> Option<Value> {
    let top = doc.as_object()?;
    let container = match field.ext {
        None => top,
        Some(urn) => schema::key_ci(top, urn)?.as_object()?,
    };
    let raw = schema::key_ci(container, &field.name)?;
    let mut value = match field.def {
        // A value that does not normalise is kept as it is: it then differs, as it should.
        Some(def) => match schema::normalize_attr(def, raw, &field.path) {
            Ok(v) => v?,
            Err(_) => raw.clone(),
        },
        None => raw.clone(),
    };
    if let (Some(subs), Value::Object(obj)) = (&field.subs, &mut value) {
        obj.retain(|k, v| subs.contains(&k.to_ascii_lowercase()) && !v.is_null());
    }
    match &value {
        Value::Null => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        _ => Some(value),
    }
}

/// A value in a form where equal means equal to a SCIM server: a multi-valued attribute's
/// elements are a set (RFC 7643 §2.4 gives them no order).
fn comparable(value: &Option<Value>, field: &Field) -> Option<Value> {
    let mut value = value.clone()?;
    if let (Some(def), Value::Array(items)) = (field.def, &mut value) {
        if def.multi_valued {
            items.sort_by_cached_key(|v| v.to_string());
        }
    }
    Some(value)
}

/// The managed attributes on which `remote` differs from `desired`.
fn compare(fields: &[Field], desired: &Value, remote: &Value) -> Vec<AttrDrift> {
    let mut out = Vec::new();
    for field in fields {
        let want = field_value(desired, field);
        let have = field_value(remote, field);
        if comparable(&want, field) != comparable(&have, field) {
            out.push(AttrDrift {
                path: field.path.clone(),
                desired: want.unwrap_or(Value::Null),
                remote: have.unwrap_or(Value::Null),
            });
        }
    }
    out
}

/// The link state to store before re-syncing a drifted user.
///
/// A sync pushes `diff_ops(link.state, desired)`, so simply clearing the state (`{}`) would
/// make it `replace` every desired attribute but never `remove` one the target gained behind
/// our back (a department set there that the mapping leaves empty), and with PATCH it would
/// rewrite attributes that are fine. Instead the state becomes what the target actually
/// holds, on the managed fields that differ (normalised, managed sub-attributes only), and
/// the desired value on the fields that match. The next sync's diff is then exactly the
/// PATCH from the target's state to the desired one: replaces and removes of the drifted
/// attributes and nothing else (with `update = "put"`, a PUT of the whole desired user).
/// Fields are not compared again there: if the target changes once more in between, the
/// next reconciliation sees it.
fn fix_link_state(fields: &[Field], desired: &Value, remote: &Value) -> Value {
    let mut state = match desired {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for field in fields {
        let want = field_value(desired, field);
        let have = field_value(remote, field);
        if comparable(&want, field) == comparable(&have, field) {
            continue;
        }
        let container = match field.ext {
            None => &mut state,
            Some(urn) => {
                let entry = state
                    .entry(urn.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                match entry.as_object_mut() {
                    Some(obj) => obj,
                    None => continue,
                }
            }
        };
        // The desired document may spell a custom attribute in another case.
        let key = container
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&field.name))
            .cloned()
            .unwrap_or_else(|| field.name.clone());
        match have {
            Some(v) => {
                container.insert(key, v);
            }
            None => {
                container.remove(&key);
            }
        }
    }
    Value::Object(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::mapping::diff_ops;
    use crate::scim::ENTERPRISE_USER_SCHEMA as ENT;
    use serde_json::json;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn fields() -> Vec<Field> {
        let dept = format!("{ENT}:department");
        let manager = format!("{ENT}:manager.value");
        managed_fields(
            [
                "userName",
                "displayName",
                "name.givenName",
                "name.familyName",
                "emails[type eq \"work\"].value",
                dept.as_str(),
                manager.as_str(),
                "isRoom",
            ]
            .into_iter(),
        )
    }

    fn desired() -> Value {
        json!({
            "schemas": [USER, ENT],
            "userName": "ann@example.com",
            "displayName": "Ann Lee",
            "active": true,
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"type": "work", "value": "ann@example.com"}, {"type": "home", "value": "a@home"}],
            ENT: {"department": "Sales", "manager": {"value": "m1"}},
            "isRoom": false
        })
    }

    fn paths(drift: &[AttrDrift]) -> Vec<&str> {
        drift.iter().map(|d| d.path.as_str()).collect()
    }

    #[test]
    fn fields_group_sub_attributes_and_always_include_active() {
        let f = fields();
        let names: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "userName",
                "displayName",
                "name",
                "emails",
                format!("{ENT}:department").as_str(),
                format!("{ENT}:manager").as_str(),
                "isRoom",
                "active"
            ]
        );
        let name = f.iter().find(|f| f.path == "name").unwrap();
        assert_eq!(
            name.subs,
            Some(BTreeSet::from(["familyname".into(), "givenname".into()]))
        );
        assert!(f
            .iter()
            .find(|f| f.path == "emails")
            .unwrap()
            .subs
            .is_none());
        // A mapped `active` stays whole.
        let f = managed_fields(["active", "userName"].into_iter());
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn what_a_scim_server_echoes_is_no_drift() {
        // Other key spellings and order, elements reordered, Entra-style string booleans,
        // a server-added `meta`/`id`, a sub-attribute the mapping does not write, an
        // unmapped attribute, and nulls for absent values.
        let remote = json!({
            "id": "r1",
            "meta": {"resourceType": "User"},
            "schemas": [USER, ENT],
            "username": "ann@example.com",
            "displayName": "Ann Lee",
            "active": "True",
            "name": {"familyName": "Lee", "givenName": "Ann", "formatted": "Ann Lee"},
            "emails": [{"value": "a@home", "type": "home"}, {"value": "ann@example.com", "type": "work"}],
            "title": "set by the target's admin",
            ENT: {"department": "Sales", "manager": {"value": "m1", "$ref": "../Users/m1", "displayName": "Boss"}, "costCenter": null},
            "isRoom": false,
            "nickName": null
        });
        assert_eq!(
            paths(&compare(&fields(), &desired(), &remote)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn drift_is_reported_per_managed_attribute_with_absent_as_null() {
        let remote = json!({
            "id": "r1",
            "userName": "ann@example.com",
            "displayName": "Someone Else",
            "active": false,
            "name": {"givenName": "Ann"},
            "emails": [{"type": "work", "value": "ann@example.com"}],
            ENT: {"department": "Sales", "manager": {"value": "m2"}},
        });
        let drift = compare(&fields(), &desired(), &remote);
        assert_eq!(
            paths(&drift),
            [
                "displayName",
                "name",
                "emails",
                format!("{ENT}:manager").as_str(),
                "isRoom",
                "active"
            ]
        );
        let is_room = drift.iter().find(|d| d.path == "isRoom").unwrap();
        assert_eq!(is_room.remote, Value::Null);
        assert_eq!(is_room.desired, json!(false));
    }

    #[test]
    fn the_fixed_link_state_makes_the_sync_patch_exactly_the_drift() {
        let remote = json!({
            "id": "r1",
            "userName": "ann@example.com",
            "displayName": "Someone Else",
            "active": false,
            "name": {"givenName": "Ann", "familyName": "Lee", "formatted": "kept"},
            "emails": [{"type": "home", "value": "a@home"}, {"type": "work", "value": "ann@example.com"}],
            ENT: {"department": "Sales", "manager": {"value": "m1"}, "division": "unmapped"},
            "isRoom": false
        });
        let mut want = desired();
        // The mapping gives no department now, but the target has one: it must go.
        want[ENT].as_object_mut().unwrap().remove("department");
        let state = fix_link_state(&fields(), &want, &remote);
        let ops = diff_ops(&state, &want);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "active", "value": true}),
                json!({"op": "replace", "path": "displayName", "value": "Ann Lee"}),
                json!({"op": "remove", "path": format!("{ENT}:department")}),
            ]
        );
    }
}
