//! The outbox end to end: SCIM writes on the real server, signed webhooks arriving at real
//! receivers on loopback, failures retried, dead letters replayed from the CLI.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::{Received, Receiver};
use common::{new_secret, webhook_connector, TestServer};
use reqwest::StatusCode;
use scim_relay::connector::signing::{parse_secrets, verify};
use serde_json::json;

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Fast retries so a test sees several attempts in well under a second.
const FAST_RETRY: &str =
    "[connectors.retry]\ninitial_ms = 20\nmax_ms = 200\nmax_age_secs = 3600\ncircuit_after = 1000\n";

fn now_secs() -> i64 {
    scim_relay::store::now_ms() / 1000
}

fn assert_signed(r: &Received, secret: &str) {
    let secrets = parse_secrets(secret).expect("secret");
    verify(
        &secrets,
        &r.webhook_id,
        &r.timestamp,
        &r.signature,
        &r.raw,
        now_secs(),
        300,
    )
    .unwrap_or_else(|e| panic!("signature of {} does not verify: {e}", r.webhook_id));
    assert!(r.webhook_id.starts_with("msg_"), "{}", r.webhook_id);
}

fn patch_title(title: &str) -> serde_json::Value {
    json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": title}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_in_order() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "hooks",
        &receiver.url,
        &secret,
        "events = [\"*\"]",
    ))
    .await;

    let u = s.create_user("ann@example.com").await;
    assert_eq!(
        s.patch(&format!("/Users/{u}"), patch_title("Engineer"))
            .await
            .status,
        StatusCode::OK
    );
    let deactivate = json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    assert_eq!(
        s.patch(&format!("/Users/{u}"), deactivate).await.status,
        StatusCode::OK
    );
    let g = s.create_group("Sales").await;
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": u}]}]});
    assert_eq!(
        s.patch(&format!("/Groups/{g}"), add).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.delete(&format!("/Users/{u}")).await.status,
        StatusCode::NO_CONTENT
    );

    receiver
        .wait_for("7 events", Duration::from_secs(10), |got| got.len() >= 7)
        .await;
    let got = receiver.accepted();
    for r in &got {
        assert_signed(r, &secret);
        assert!(r.body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_")));
        assert!(r.body["timestamp"].as_str().is_some());
    }
    let user_events: Vec<&str> = got
        .iter()
        .filter(|r| r.resource_id() == u)
        .map(Received::event_type)
        .collect();
    assert_eq!(
        user_events,
        [
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.deleted"
        ]
    );
    let group_events: Vec<&str> = got
        .iter()
        .filter(|r| r.resource_id() == g)
        .map(Received::event_type)
        .collect();
    assert_eq!(
        group_events,
        [
            "group.created",
            "group.members_added",
            "group.members_removed"
        ]
    );
    let updated = got
        .iter()
        .find(|r| r.event_type() == "user.updated")
        .expect("updated");
    assert_eq!(updated.body["data"]["changed"], json!(["title"]));
    assert_eq!(updated.body["data"]["resource"]["title"], "Engineer");
    let added = got
        .iter()
        .find(|r| r.event_type() == "group.members_added")
        .expect("added");
    assert_eq!(added.body["data"]["members"], json!([u]));
    assert_eq!(
        got.len(),
        7,
        "nothing is delivered twice when nothing fails"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_scope_filters_choose_what_a_connector_receives() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "sales",
        &receiver.url,
        &secret,
        "events = [\"user.*\"]\nscope = 'groups[display eq \"Sales\"]'",
    ))
    .await;
    let g = s.create_group("Sales").await;
    let inside = s.create_user("in@example.com").await;
    let outside = s.create_user("out@example.com").await;
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": inside}]}]});
    assert_eq!(
        s.patch(&format!("/Groups/{g}"), add).await.status,
        StatusCode::OK
    );
    for id in [&inside, &outside] {
        assert_eq!(
            s.patch(&format!("/Users/{id}"), patch_title("x"))
                .await
                .status,
            StatusCode::OK
        );
    }
    receiver
        .wait_for("the in-scope update", Duration::from_secs(10), |got| {
            !got.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.accepted();
    assert_eq!(got.len(), 1, "only the in-scope user's update: {got:?}");
    assert_eq!(got[0].event_type(), "user.updated");
    assert_eq!(got[0].resource_id(), inside);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_resource_holds_under_concurrent_writes() {
    let secrets = tempfile::tempdir().expect("tempdir");
    // A receiver that is a little slow, so many deliveries are pending at once.
    let receiver =
        Receiver::scripted(Arc::new(|_| (204, Vec::new())), Duration::from_millis(2)).await;
    let secret = new_secret();
    let s = Arc::new(
        TestServer::start_with(&webhook_connector(
            secrets.path(),
            "ordered",
            &receiver.url,
            &secret,
            "events = [\"user.updated\"]\nconcurrency = 8",
        ))
        .await,
    );
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(s.create_user(&format!("o{i}@example.com")).await);
    }
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for v in 0..10 {
                let r = s
                    .patch(&format!("/Users/{id}"), patch_title(&format!("v{v}")))
                    .await;
                assert_eq!(r.status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    receiver
        .wait_for("200 updates", Duration::from_secs(30), |got| {
            got.len() >= 200
        })
        .await;
    let mut per_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in receiver.accepted() {
        per_user
            .entry(r.resource_id().to_string())
            .or_default()
            .push(
                r.body["data"]["resource"]["title"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
    }
    let expected: Vec<String> = (0..10).map(|v| format!("v{v}")).collect();
    for id in &ids {
        assert_eq!(
            per_user.get(id),
            Some(&expected),
            "events of {id} arrived out of order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_recovers_and_does_not_slow_the_others() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let down_until = Instant::now() + Duration::from_millis(3000);
    let flaky = Receiver::scripted(
        Arc::new(move |_| {
            if Instant::now() < down_until {
                (500, Vec::new())
            } else {
                (204, Vec::new())
            }
        }),
        Duration::ZERO,
    )
    .await;
    let healthy = Receiver::start().await;
    let (s1, s2) = (new_secret(), new_secret());
    let config = format!(
        "{}{FAST_RETRY}{}",
        webhook_connector(secrets.path(), "flaky", &flaky.url, &s1, ""),
        webhook_connector(secrets.path(), "healthy", &healthy.url, &s2, "")
    );
    let s = TestServer::start_with(&config).await;
    let started = Instant::now();
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        ids.insert(s.create_user(&format!("f{i}@example.com")).await);
    }
    healthy
        .wait_for(
            "30 events at the healthy target",
            Duration::from_secs(10),
            |got| got.len() >= 30,
        )
        .await;
    assert!(
        Instant::now() < down_until,
        "the healthy target got everything while the other was still failing ({:?})",
        started.elapsed()
    );
    flaky
        .wait_for("30 events after recovery", Duration::from_secs(20), |got| {
            got.iter()
                .map(Received::resource_id)
                .collect::<BTreeSet<_>>()
                .len()
                >= 30
        })
        .await;
    let received = flaky.received();
    assert!(
        received.iter().any(|r| r.answered == 500),
        "it did fail first"
    );
    let delivered: BTreeSet<String> = flaky
        .accepted()
        .iter()
        .map(|r| r.resource_id().to_string())
        .collect();
    assert_eq!(delivered, ids);
    // A retry keeps its webhook-id and is signed afresh.
    let first = &received[0];
    let again: Vec<&Received> = received
        .iter()
        .filter(|r| r.webhook_id == first.webhook_id)
        .collect();
    assert!(again.len() >= 2, "the first delivery was retried");
    for r in again {
        assert_signed(r, &s1);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_respected() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::scripted(
        Arc::new(|n| {
            if n == 0 {
                (429, vec![("retry-after", "1".to_string())])
            } else {
                (204, Vec::new())
            }
        }),
        Duration::ZERO,
    )
    .await;
    let secret = new_secret();
    let s = TestServer::start_with(&format!(
        "{}{FAST_RETRY}",
        webhook_connector(secrets.path(), "throttled", &receiver.url, &secret, "")
    ))
    .await;
    s.create_user("slow@example.com").await;
    receiver
        .wait_for("the retried delivery", Duration::from_secs(10), |got| {
            !got.is_empty()
        })
        .await;
    let all = receiver.received();
    assert_eq!(all[0].answered, 429);
    let waited = all[1].at.duration_since(all[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before Retry-After's second (backoff alone is 20 ms)"
    );
    assert_eq!(all[0].webhook_id, all[1].webhook_id);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_delivery_is_dead_lettered_and_replayed_from_the_cli() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::scripted(
        Arc::new(|n| {
            if n == 0 {
                (400, Vec::new())
            } else {
                (204, Vec::new())
            }
        }),
        Duration::ZERO,
    )
    .await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "strict",
        &receiver.url,
        &secret,
        "",
    ))
    .await;
    s.create_user("dead@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let cli = |args: &[&str]| {
        common::relay_bin()
            .arg("--config")
            .arg(s.config_path())
            .args(args)
            .output()
            .expect("run scim-relay")
    };
    let dead: Vec<serde_json::Value> = loop {
        let out = cli(&["deliveries", "list", "--status", "dead", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["last_status"], 400);
    assert_eq!(dead[0]["attempts"], 1, "a 400 is not retried");
    assert_eq!(receiver.received().len(), 1);

    // The provisioning log explains it, found by the user's userName.
    let deadline = Instant::now() + Duration::from_secs(10);
    let explained = loop {
        let out = cli(&["log", "--user", "DEAD@example.com", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
        if let Some(row) = rows.iter().find(|r| r["direction"] == "out").cloned() {
            break row;
        }
        assert!(Instant::now() < deadline, "no outbound log entry: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(explained["actor"], "strict");
    assert_eq!(explained["status"], 400);
    assert_eq!(explained["outcome"], "dead");

    let status = cli(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(rows[0]["connector"], "strict");
    assert_eq!(rows[0]["dead"], 1);

    let out = cli(&["deliveries", "retry", "--all-dead", "--connector", "strict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receiver
        .wait_for("the replayed delivery", Duration::from_secs(10), |got| {
            got.len() == 1
        })
        .await;
    let replayed = &receiver.accepted()[0];
    assert_eq!(replayed.webhook_id, dead[0]["id"].as_str().unwrap_or(""));
    assert_signed(replayed, &secret);

    let shown = cli(&["deliveries", "show", &replayed.webhook_id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown["status"], "done");
    assert_eq!(shown["payload"]["type"], "user.created");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spaces_deliveries_out() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "limited",
        &receiver.url,
        &secret,
        "rate_limit = 20",
    ))
    .await;
    for i in 0..30 {
        s.create_user(&format!("r{i}@example.com")).await;
    }
    receiver
        .wait_for("30 events", Duration::from_secs(20), |got| got.len() >= 30)
        .await;
    let got = receiver.accepted();
    let span = got[29].at.duration_since(got[0].at);
    // A bucket of 20 allows a burst of 20; the other 10 need half a second at 20/s.
    assert!(
        span >= Duration::from_millis(400),
        "30 deliveries within {span:?} at 20/s"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_endpoint_pauses_its_connector() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::scripted(Arc::new(|_| (410, Vec::new())), Duration::ZERO).await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "gone",
        &receiver.url,
        &secret,
        "",
    ))
    .await;
    s.create_user("first@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        s.create_user(&format!("later{i}@example.com")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing more is sent to an endpoint that is gone"
    );
    let out = common::relay_bin()
        .arg("--config")
        .arg(s.config_path())
        .args(["status", "--json"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status[0]["switches"]["paused"], true);
    assert_eq!(status[0]["dead"], 1);
    assert_eq!(status[0]["pending"], 5, "later events wait in the outbox");
    s.stop().await;
}
