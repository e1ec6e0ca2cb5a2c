//! Operator commands that read or change the outbox from the command line. They open the
//! same database the server uses (SQLite lets both write); a delivery queued here is picked
//! up by a running server within a second.

use std::sync::Arc;

use scim_relay::config::{Config, ConnectorConfig, ConnectorKind};
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
