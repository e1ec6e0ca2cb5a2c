//! Crash safety with the real binary: SIGKILL while creates are being acknowledged and
//! thousands of deliveries are pending or in flight; after a restart every acknowledged
//! change is stored and its event reaches the receiver, duplicates only of deliveries that
//! were in flight, each with its original `webhook-id`.

mod common;

use common::{free_port, KillOnDrop};

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{new_secret, webhook_connector};
use serde_json::json;

const CONCURRENCY: usize = 4;

fn serve(config: &std::path::Path, port: u16) -> KillOnDrop {
    KillOnDrop(
        common::relay_bin()
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    )
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A slow receiver: deliveries pile up behind the creates.
    let receiver =
        Receiver::scripted(Arc::new(|_| (204, Vec::new())), Duration::from_millis(3)).await;
    let secret = new_secret();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = \"relay.db\"\n[logging]\nlevel = \"warn\"\n{}",
            webhook_connector(
                dir.path(),
                "crashy",
                &receiver.url,
                &secret,
                &format!("events = [\"user.created\"]\nconcurrency = {CONCURRENCY}"),
            )
        ),
    )
    .expect("config");
    let out = common::relay_bin()
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--name", "crash"])
        .output()
        .expect("token create");
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let port = free_port();
    let mut server = serve(&config, port);
    wait_healthy(&client, port).await;

    // Create users from 16 tasks; kill the server once 1,500 have been acknowledged.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (client, token, acknowledged, count) = (
            client.clone(),
            token.clone(),
            acknowledged.clone(),
            count.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let user_name = format!("crash-{t}-{i}@example.com");
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/scim/v2/Users"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(
                        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name})
                            .to_string(),
                    )
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        if let Ok(mut a) = acknowledged.lock() {
                            a.insert(user_name);
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server is gone: what it did not acknowledge may or may not exist.
                    _ => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < 1500 {
        assert!(Instant::now() < deadline, "creates too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acknowledged = acknowledged.lock().expect("set").clone();
    let before_restart = receiver.accepted().len();
    assert!(
        before_restart < acknowledged.len(),
        "deliveries were still pending at the kill ({before_restart} of {})",
        acknowledged.len()
    );

    let port = free_port();
    let _server = serve(&config, port);
    wait_healthy(&client, port).await;

    // Every acknowledged user is stored...
    let list: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/scim/v2/Users?count=1"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let stored = list["totalResults"].as_u64().unwrap_or(0) as usize;
    assert!(
        stored >= acknowledged.len(),
        "{stored} stored < {} acknowledged",
        acknowledged.len()
    );

    // ...and its event reaches the receiver.
    receiver
        .wait_for(
            "every acknowledged user's event",
            Duration::from_secs(90),
            |got| {
                let names: BTreeSet<&str> = got
                    .iter()
                    .filter_map(|r| r.body["data"]["resource"]["userName"].as_str())
                    .collect();
                acknowledged.iter().all(|u| names.contains(u.as_str()))
            },
        )
        .await;
    let got = receiver.accepted();
    let mut ids_per_event: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut receipts_per_event: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        let event = r.body["id"].as_str().unwrap_or("").to_string();
        ids_per_event
            .entry(event.clone())
            .or_default()
            .insert(r.webhook_id.clone());
        *receipts_per_event.entry(event).or_default() += 1;
    }
    for (event, ids) in &ids_per_event {
        assert_eq!(
            ids.len(),
            1,
            "event {event} was sent under several webhook-ids: {ids:?}"
        );
    }
    let duplicates: usize = receipts_per_event.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates, but at most {CONCURRENCY} deliveries can be in flight"
    );
}
