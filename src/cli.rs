//! Operator commands that read or change the outbox from the command line. They open the
//! same database the server uses (SQLite lets both write); a delivery queued here is picked
//! up by a running server within a second.

use std::sync::Arc;

use scim_relay::config::{Config, ConnectorConfig, ConnectorKind};
use scim_relay::connector::reconcile::{self, Report};
use scim_relay::connector::Connector;
use scim_relay::outbox::Fanout;
use scim_relay::store::{now_ms, DeliveryFilter, DeliveryInfo, Store, STATUSES};

pub fn open_store(config: &Config) -> Result<Store, String> {
    Store::open(&config.database_path(), 1, Arc::new(Fanout::none())).map_err(|e| e.to_string())
}

fn age(at: Option<i64>) -> String {
    match at {
        None => "-".into(),
        Some(at) => {
            let secs = (now_ms().saturating_sub(at) / 1000).max(0);
            match secs {
                0..=59 => format!("{secs}s ago"),
                60..=3599 => format!("{}m ago", secs / 60),
                3600..=86_399 => format!("{}h ago", secs / 3600),
                _ => format!("{}d ago", secs / 86_400),
            }
        }
    }
}

pub async fn status(config: &Config, json: bool) -> Result<(), String> {
    let store = open_store(config)?;
    let names = config.connectors.iter().map(|c| c.name.clone()).collect();
    let rows = store
        .connector_status(names)
        .await
        .map_err(|e| e.to_string())?;
    let mut switches = Vec::new();
    for r in &rows {
        switches.push(
            store
                .connector_switches(&r.connector)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .zip(&switches)
            .map(|(r, s)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let (Some(obj), Ok(sw)) = (v.as_object_mut(), serde_json::to_value(s)) {
                    obj.insert("switches".into(), sw);
                }
                v
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    if rows.is_empty() {
        println!("no connectors configured in {}", config.file);
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:>9} {:>8} {:>6}  {:<14} {:<14} LAST ERROR",
        "CONNECTOR", "PENDING", "IN FLIGHT", "DONE", "DEAD", "OLDEST PENDING", "LAST SUCCESS"
    );
    for (s, sw) in rows.iter().zip(&switches) {
        if sw.paused || sw.deprovisions_paused {
            println!(
                "{:<20} PAUSED: {}",
                s.connector,
                sw.reason.as_deref().unwrap_or("by an operator")
            );
        }
        let error = match (&s.last_error, s.last_error_at) {
            (Some(e), at) => format!("{} ({})", e, age(at)),
            _ => "-".into(),
        };
        println!(
            "{:<20} {:>8} {:>9} {:>8} {:>6}  {:<14} {:<14} {}",
            s.connector,
            s.pending,
            s.in_flight,
            s.done,
            s.dead,
            age(s.oldest_pending_at),
            age(s.last_success_at),
            error
        );
    }
    Ok(())
}

pub async fn list_deliveries(
    config: &Config,
    filter: DeliveryFilter,
    json: bool,
) -> Result<(), String> {
    if let Some(status) = &filter.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(format!(
                "unknown status {status:?}; use one of {}",
                STATUSES.join(", ")
            ));
        }
    }
    let store = open_store(config)?;
    let rows = store
        .list_deliveries(filter)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<36} {:<16} {:<22} {:<10} {:>8}  {:<10} LAST ERROR",
        "DELIVERY", "CONNECTOR", "EVENT", "STATUS", "ATTEMPTS", "CREATED"
    );
    for d in rows {
        println!(
            "{:<36} {:<16} {:<22} {:<10} {:>8}  {:<10} {}",
            d.id,
            d.connector,
            d.event_type,
            d.status,
            d.attempts,
            age(Some(d.created_at)),
            d.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub async fn show_delivery(config: &Config, id: &str) -> Result<(), String> {
    let store = open_store(config)?;
    let (info, payload): (DeliveryInfo, String) =
        store.show_delivery(id).await.map_err(|e| e.to_string())?;
    let mut out = serde_json::to_value(&info).map_err(|e| e.to_string())?;
    if let Some(obj) = out.as_object_mut() {
        let payload = serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload));
        obj.insert("payload".into(), payload);
    }
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

pub async fn retry(
    config: &Config,
    ids: Vec<String>,
    all_dead_of: Option<String>,
) -> Result<(), String> {
    if ids.is_empty() && all_dead_of.is_none() {
        return Err("name delivery ids, or --all-dead --connector NAME".into());
    }
    if let Some(name) = &all_dead_of {
        if !config.connectors.iter().any(|c| &c.name == name) {
            return Err(format!("no connector named {name:?} in {}", config.file));
        }
    }
    let store = open_store(config)?;
    let n = store
        .retry_deliveries(ids, all_dead_of)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("queued {n} deliveries again");
    Ok(())
}

pub async fn discard(config: &Config, ids: Vec<String>) -> Result<(), String> {
    let store = open_store(config)?;
    let n = store
        .discard_deliveries(ids)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("discarded {n} deliveries");
    Ok(())
}

fn connector<'a>(config: &'a Config, name: &str) -> Result<&'a ConnectorConfig, String> {
    config
        .connectors
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no connector named {name:?} in {}", config.file))
}

pub async fn resync(config: &Config, name: &str) -> Result<(), String> {
    let c = connector(config, name)?;
    if c.kind != ConnectorKind::Scim {
        return Err(format!(
            "{name:?} is a webhook connector: it receives events as they happen; resync is for SCIM connectors"
        ));
    }
    let store = open_store(config)?;
    let n = store
        .resync(name, c.scim.groups)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("queued {n} resources for {name}; only what differs from the target is sent");
    Ok(())
}

pub async fn pause(config: &Config, name: &str, paused: bool) -> Result<(), String> {
    connector(config, name)?;
    let store = open_store(config)?;
    if paused {
        store
            .set_paused(name, true)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("paused {name}: nothing is sent until `scim-relay connectors resume {name}`");
    } else {
        let n = store
            .resume_connector(name)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("resumed {name}; {n} waiting deliveries are due now");
    }
    Ok(())
}

/// Compares a SCIM connector's target with what it should hold and prints the drift; `fix`
/// queues the repairs. Drift is a finding, not a failure: the exit status is 0 either way.
pub async fn reconcile(config: &Config, name: &str, fix: bool, json: bool) -> Result<(), String> {
    let (index, c) = config
        .connectors
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == name)
        .ok_or_else(|| format!("no connector named {name:?} in {}", config.file))?;
    if c.kind != ConnectorKind::Scim {
        return Err(format!(
            "{name:?} is a webhook connector: reconcile compares a SCIM connector's target"
        ));
    }
    let store = open_store(config)?;
    // Only this connector is built, so another connector's missing secret does not matter.
    let built = Connector::from_config(config, index, c, &store).map_err(|e| e.to_string())?;
    let scim = built
        .as_scim()
        .ok_or_else(|| format!("{name:?} is not a SCIM connector"))?;
    let report = reconcile::reconcile(scim, &store, fix)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print_report(&report);
    }
    Ok(())
}

fn shown(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or("(no userName)")
}

fn print_report(r: &Report) {
    let c = &r.counts;
    println!(
        "{}: the target lists {} users; {} of {} gateway users are in scope, {} of them in sync; \
         {} deprovisioned as they should be",
        r.connector, c.remote_users, c.in_scope, c.gateway_users, c.in_sync, c.deprovisioned
    );
    if !r.has_drift() && r.errors.is_empty() {
        println!("no drift");
    }
    if !r.missing.is_empty() {
        println!(
            "\nmissing ({}): in scope, but the target does not hold them",
            r.missing.len()
        );
        for m in &r.missing {
            let why = match (&m.remote_id, &m.adopts) {
                (Some(remote), _) => format!("the linked remote user {remote} is gone"),
                (None, Some(adopt)) => format!("not linked; a sync adopts remote user {adopt}"),
                (None, None) => "never provisioned".to_string(),
            };
            println!("  {} (gateway {}): {why}", shown(&m.user_name), m.local_id);
        }
    }
    if !r.wrong_active.is_empty() {
        println!("\nwrong active ({}):", r.wrong_active.len());
        for w in &r.wrong_active {
            let remote = w.remote.map_or("absent".to_string(), |a| a.to_string());
            let note = if w.in_scope { "" } else { " (deprovisioned)" };
            println!(
                "  {} (gateway {}, remote {}): active is {remote} at the target, should be {}{note}",
                shown(&w.user_name),
                w.local_id,
                w.remote_id,
                w.desired
            );
        }
    }
    if !r.different.is_empty() {
        println!("\ndifferent ({}):", r.different.len());
        for d in &r.different {
            println!(
                "  {} (gateway {}, remote {}):",
                shown(&d.user_name),
                d.local_id,
                d.remote_id
            );
            for a in &d.attributes {
                println!(
                    "    {}: target has {}, should be {}",
                    a.path, a.remote, a.desired
                );
            }
        }
    }
    if !r.extra.is_empty() {
        println!(
            "\nextra ({}): the target holds them for no gateway user in scope (never deleted by reconcile)",
            r.extra.len()
        );
        for e in &r.extra {
            let active = match e.active {
                Some(true) => "active",
                Some(false) => "inactive",
                None => "active unknown",
            };
            let linked = e.linked_to.as_ref().map_or(String::new(), |l| {
                format!("; its deletion for gateway user {l} is pending")
            });
            println!(
                "  {} (remote {}, {active}){linked}",
                shown(&e.user_name),
                e.remote_id
            );
        }
    }
    if !r.errors.is_empty() {
        println!("\ncannot map ({}):", r.errors.len());
        for e in &r.errors {
            println!(
                "  {} (gateway {}): {}",
                shown(&e.user_name),
                e.local_id,
                e.error
            );
        }
    }
    if r.fix {
        println!(
            "\n--fix: queued {} syncs; extra users are left alone",
            c.queued
        );
    } else if c.missing + c.different + c.wrong_active > 0 {
        println!(
            "\nrepair with `scim-relay reconcile --connector {} --fix`",
            r.connector
        );
    }
}

pub async fn log(
    config: &Config,
    query: scim_relay::store::LogQuery,
    json: bool,
) -> Result<(), String> {
    let store = open_store(config)?;
    let rows = store.query_log(query).await.map_err(|e| e.to_string())?;
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<10} {:<3} {:<16} {:<26} {:<28} {:>6} {:<9} DETAIL",
        "WHEN", "DIR", "ACTOR", "OPERATION", "USER", "STATUS", "OUTCOME"
    );
    for e in rows {
        let who = e
            .user_name
            .clone()
            .or_else(|| e.resource_id.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<3} {:<16} {:<26} {:<28} {:>6} {:<9} {}",
            age(Some(e.at)),
            e.direction.as_str(),
            e.actor.as_deref().unwrap_or("-"),
            e.operation,
            who,
            e.status.map_or("-".into(), |s| s.to_string()),
            e.outcome.as_str(),
            e.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
