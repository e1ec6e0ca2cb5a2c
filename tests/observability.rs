//! Observability end to end on the real server: Prometheus metrics that move with traffic,
//! `X-Request-Id` echoed or made and carried into the events a write records, and the
//! provisioning log explaining a dead-lettered webhook by the user's userName — with no
//! token or secret in any row.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{new_secret, webhook_connector, TestServer, TOKEN};
use reqwest::StatusCode;
use scim_relay::metrics::metrics;
use scim_relay::provlog::{Direction, LogEntry, LogOutcome, LogQuery};
use scim_relay::store::{Store, TokenScope};
use serde_json::json;

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The value of one series in the text exposition (0 when absent).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A second handle on the server's database, as the CLI would open it.
fn open_store(s: &TestServer) -> Store {
    Store::open(
        &s.db_path(),
        1,
        Arc::new(scim_relay::outbox::Fanout::none()),
    )
    .expect("store opens beside the server")
}

fn user(user_name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "active": true,
    })
}

/// Polls the log until `pred` holds for the entries `q` finds.
async fn wait_for_log(
    store: &Store,
    q: LogQuery,
    what: &str,
    pred: impl Fn(&[LogEntry]) -> bool,
) -> Vec<LogEntry> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = store.query_log(q.clone()).await.expect("query_log");
        if pred(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log has {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_label_routes_by_template() {
    let s = TestServer::start().await;
    let before = metrics().render(&[]);
    let get_one = r#"scim_requests_total{route="/scim/v2/Users/{id}",method="GET",status="200"}"#;
    let created = r#"scim_requests_total{route="/scim/v2/Users",method="POST",status="201"}"#;
    let missing = r#"scim_requests_total{route="/scim/v2/Users/{id}",method="GET",status="404"}"#;
    let unauthorized = r#"scim_requests_total{route="/scim/v2/Users",method="GET",status="401"}"#;

    let id = s.create_user("metrics.one@example.com").await;
    for _ in 0..3 {
        assert_eq!(s.get(&format!("/Users/{id}")).await.status, StatusCode::OK);
    }
    assert_eq!(
        s.get("/Users/no-such-user").await.status,
        StatusCode::NOT_FOUND
    );
    let anonymous = s.raw(s.client.get(s.url("/Users"))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let nowhere = s.get("/NoSuchEndpoint/xyz").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert!(nowhere.headers.contains_key("x-request-id"));

    let after = metrics().render(&[]);
    // Other tests in this process add traffic too: counters only ever grow by at least ours.
    assert!(
        series(&after, get_one) >= series(&before, get_one) + 3.0,
        "{after}"
    );
    assert!(series(&after, created) >= series(&before, created) + 1.0);
    assert!(series(&after, missing) >= series(&before, missing) + 1.0);
    assert!(series(&after, unauthorized) >= series(&before, unauthorized) + 1.0);
    let duration =
        r#"scim_request_duration_seconds_count{route="/scim/v2/Users/{id}",method="GET"}"#;
    assert!(series(&after, duration) >= series(&before, duration) + 3.0);
    assert!(
        series(&after, "store_writes_committed_total")
            >= series(&before, "store_writes_committed_total") + 1.0
    );
    assert!(series(&after, "store_commit_batch_size_count") >= 1.0);
    let unmatched = r#"scim_requests_total{route="unmatched",method="GET",status="404"}"#;
    assert!(series(&after, unmatched) >= series(&before, unmatched) + 1.0);
    // Route labels are templates: no id or junk path ever becomes a series.
    assert!(!after.contains(&id), "a raw id leaked into a label");
    assert!(!after.contains("no-such-user"));
    assert!(!after.contains("NoSuchEndpoint"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made_and_reach_the_events() {
    let s = TestServer::start().await;

    // A sane id is kept and echoed.
    let r = s
        .raw(
            s.client
                .post(s.url("/Users"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json")
                .header("x-request-id", "idp-req.0001_a-b")
                .body(user("rid.ann@example.com").to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], "idp-req.0001_a-b");
    let id = r.body["id"].as_str().expect("id").to_string();

    // None sent: one is made (a UUIDv7 in simple form), on errors too.
    let made = s.raw(s.client.get(s.url("/Users"))).await;
    assert_eq!(made.status, StatusCode::UNAUTHORIZED);
    let generated = made.headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));

    // An unsafe or oversized id is replaced, never echoed.
    for bad in ["has space", "semi;colon", &"x".repeat(65)] {
        let r = s
            .raw(
                s.client
                    .get(s.url("/Users"))
                    .bearer_auth(TOKEN)
                    .header("x-request-id", bad),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let echoed = r.headers["x-request-id"].to_str().expect("ascii");
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 32);
    }

    // The PATCH's event carries the PATCH's id; the create's event the create's.
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Pilot"}]});
    let r = s
        .raw(
            s.client
                .patch(s.url(&format!("/Users/{id}")))
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json")
                .header("x-request-id", "idp-patch-7")
                .body(patch.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], "idp-patch-7");

    let db = rusqlite::Connection::open(s.db_path()).expect("open db");
    let events: Vec<(String, Option<String>)> = db
        .prepare("SELECT type, request_id FROM events WHERE resource_id = ?1 ORDER BY seq")
        .expect("prepare")
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        events,
        vec![
            (
                "user.created".to_string(),
                Some("idp-req.0001_a-b".to_string())
            ),
            ("user.updated".to_string(), Some("idp-patch-7".to_string())),
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_log_explains_a_dead_letter_by_user_name() {
    let secrets = tempfile::tempdir().expect("tempdir");
    // The target refuses everything with 400: permanent, so dead at the first attempt.
    let receiver = Receiver::scripted(Arc::new(|_| (400, Vec::new())), Duration::ZERO).await;
    let secret = new_secret();
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "hooks",
        &receiver.url,
        &secret,
        "events = [\"user.*\"]",
    ))
    .await;
    let store = open_store(&s);
    // A named token, as an IdP would hold (the test's configured token has no name).
    let (_, entra) = store
        .create_token("entra", TokenScope::Scim)
        .await
        .expect("token");
    let dead_before = series(
        &metrics().render(&[]),
        r#"delivery_attempts_total{connector="hooks",outcome="dead"}"#,
    );

    let r = s
        .raw(
            s.client
                .post(s.url("/Users"))
                .bearer_auth(&entra)
                .header("content-type", "application/scim+json")
                .header("x-request-id", "entra-create-dana")
                .body(user("Dana.Dead@example.com").to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    // A refused request and a failed one are logged too.
    let refused = s
        .raw(
            s.client
                .get(s.url(&format!("/Users/{id}")))
                .bearer_auth("not-a-token")
                .header("x-request-id", "intruder-1"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let dup = s
        .raw(
            s.client
                .post(s.url("/Users"))
                .bearer_auth(&entra)
                .header("content-type", "application/scim+json")
                .header("x-request-id", "entra-dup-dana")
                .body(user("DANA.DEAD@example.com").to_string()),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    // "Why is Dana missing downstream?" — asked by userName, in another case.
    let rows = wait_for_log(
        &store,
        LogQuery {
            user: Some("dana.dead@EXAMPLE.com".into()),
            ..LogQuery::default()
        },
        "the inbound create and the dead outbound attempt",
        |rows| {
            rows.iter().any(|e| e.direction == Direction::Out)
                && rows.iter().any(|e| e.direction == Direction::In)
        },
    )
    .await;
    let inbound = rows
        .iter()
        .find(|e| e.direction == Direction::In && e.operation == "POST /Users")
        .expect("inbound create logged");
    assert_eq!(inbound.actor.as_deref(), Some("entra"));
    assert_eq!(inbound.status, Some(201));
    assert_eq!(inbound.outcome, LogOutcome::Ok);
    assert_eq!(inbound.resource_type.as_deref(), Some("User"));
    assert_eq!(inbound.resource_id.as_deref(), Some(id.as_str()));
    assert_eq!(inbound.user_name.as_deref(), Some("Dana.Dead@example.com"));
    assert_eq!(inbound.request_id.as_deref(), Some("entra-create-dana"));
    assert!(inbound.latency_ms.is_some());

    let outbound = rows
        .iter()
        .find(|e| e.direction == Direction::Out)
        .expect("outbound attempt logged");
    assert_eq!(outbound.actor.as_deref(), Some("hooks"));
    assert_eq!(outbound.operation, "deliver user.created");
    assert_eq!(outbound.status, Some(400));
    assert_eq!(outbound.outcome, LogOutcome::Dead);
    assert_eq!(outbound.resource_id.as_deref(), Some(id.as_str()));
    assert_eq!(outbound.user_name.as_deref(), Some("Dana.Dead@example.com"));
    // One id follows the change from the SCIM request to the delivery it caused.
    assert_eq!(outbound.request_id.as_deref(), Some("entra-create-dana"));
    let delivery = outbound.delivery_id.as_deref().expect("delivery id");
    assert!(delivery.starts_with("msg_"), "{delivery}");
    assert_eq!(receiver.received()[0].webhook_id, delivery);
    assert!(
        outbound.detail.as_deref().unwrap_or("").contains("400"),
        "{outbound:?}"
    );
    // Newest first.
    assert!(rows.windows(2).all(|w| w[0].at >= w[1].at));

    // The same dead letter by connector and outcome.
    let dead = store
        .query_log(LogQuery {
            connector: Some("hooks".into()),
            outcome: Some("dead".into()),
            ..LogQuery::default()
        })
        .await
        .expect("query");
    assert!(dead
        .iter()
        .any(|e| e.delivery_id.as_deref() == Some(delivery)));

    // Refused and failed requests: logged as errors, the refused one without an actor.
    let all = wait_for_log(&store, LogQuery::default(), "the refused request", |rows| {
        rows.iter()
            .any(|e| e.request_id.as_deref() == Some("intruder-1"))
            && rows
                .iter()
                .any(|e| e.request_id.as_deref() == Some("entra-dup-dana"))
    })
    .await;
    let intruder = all
        .iter()
        .find(|e| e.request_id.as_deref() == Some("intruder-1"))
        .expect("refused request logged");
    assert_eq!(intruder.actor, None);
    assert_eq!(intruder.status, Some(401));
    assert_eq!(intruder.outcome, LogOutcome::Error);
    assert_eq!(intruder.operation, "GET /Users/{id}");
    let duplicate = all
        .iter()
        .find(|e| e.request_id.as_deref() == Some("entra-dup-dana"))
        .expect("conflict logged");
    assert_eq!(duplicate.status, Some(409));
    assert_eq!(duplicate.outcome, LogOutcome::Error);
    assert!(
        duplicate
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("userName"),
        "{duplicate:?}"
    );

    assert!(
        series(
            &metrics().render(&[]),
            r#"delivery_attempts_total{connector="hooks",outcome="dead"}"#
        ) >= dead_before + 1.0
    );

    // No token or secret in any column of any row.
    let db = rusqlite::Connection::open(s.db_path()).expect("open db");
    let mut stmt = db
        .prepare("SELECT * FROM provisioning_log")
        .expect("prepare");
    let columns = stmt.column_count();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            let mut text = String::new();
            for i in 0..columns {
                let v: rusqlite::types::Value = r.get(i)?;
                text.push_str(&format!("{v:?}|"));
            }
            Ok(text)
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(rows.len() >= 4, "{rows:#?}");
    let secret_key = secret.trim_start_matches("whsec_");
    for row in &rows {
        for needle in [
            TOKEN,
            entra.as_str(),
            secret.as_str(),
            secret_key,
            "not-a-token",
        ] {
            assert!(!row.contains(needle), "a secret leaked into the log: {row}");
        }
    }
    s.stop().await;
}
