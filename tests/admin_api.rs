//! The admin listener: every route refuses a missing, wrong or SCIM token and serves the
//! admin token (Bearer or Basic); the SCIM API refuses the admin token; the event log is
//! read in order with a cursor.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::Receiver;
use common::{new_secret, webhook_connector, TestServer, ADMIN_TOKEN, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn admin(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = s.client.request(method, format!("{}{path}", s.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_the_admin_token() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::scripted(Arc::new(|_| (400, Vec::new())), Duration::ZERO).await;
    let s = TestServer::start_with(&webhook_connector(
        secrets.path(),
        "hooks",
        &receiver.url,
        &new_secret(),
        "",
    ))
    .await;
    s.create_user("a@example.com").await;
    // Let the one delivery fail (400 → dead) so the routes have something to show.
    let mut dead = Vec::new();
    for _ in 0..100 {
        let (_, body) = admin(
            &s,
            Method::GET,
            "/api/deliveries?status=dead",
            Some(ADMIN_TOKEN),
        )
        .await;
        dead = body.as_array().cloned().unwrap_or_default();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "one dead delivery");
    let id = dead[0]["id"].as_str().unwrap_or("").to_string();

    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/status".into()),
        (Method::GET, "/api/deliveries".into()),
        (Method::GET, format!("/api/deliveries/{id}")),
        (Method::POST, format!("/api/deliveries/{id}/discard")),
        (Method::POST, format!("/api/deliveries/{id}/retry")),
        (Method::POST, "/api/connectors/hooks/retry-dead".into()),
        (Method::POST, "/api/connectors/hooks/pause".into()),
        (Method::POST, "/api/connectors/hooks/resume".into()),
        (Method::GET, "/api/tokens".into()),
        (Method::GET, "/api/log?user=a@example.com".into()),
        (Method::GET, "/events".into()),
        (Method::GET, "/metrics".into()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some(TOKEN)] {
            let (status, body) = admin(&s, method.clone(), path, token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(body["status"], "401");
        }
        let (status, body) = admin(&s, method.clone(), path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
    }
    // The status page and reconciliation answer only the admin token too.
    for token in [None, Some(TOKEN)] {
        let mut req = s.client.get(format!("{}/", s.admin));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(
            req.send().await.expect("page").status(),
            StatusCode::UNAUTHORIZED
        );
        let (status, _) = admin(&s, Method::POST, "/api/connectors/hooks/reconcile", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let page = s
        .client
        .get(format!("{}/?q=a@example.com", s.admin))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("hooks") && html.contains("HTTP 400"),
        "the page shows the connector and its failure"
    );
    let (status, body) = admin(
        &s,
        Method::POST,
        "/api/connectors/hooks/reconcile",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a webhook has no users to reconcile: {body}"
    );
    // The admin token opens nothing on the SCIM API.
    let r = s
        .raw(s.client.get(s.url("/Users")).bearer_auth(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Browsers send it as the Basic password.
    let resp = s
        .client
        .get(format!("{}/api/status", s.admin))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .expect("basic");
    assert_eq!(resp.status(), StatusCode::OK);
    let status: Value = resp.json().await.expect("json");
    assert_eq!(status[0]["connector"], "hooks");
    assert_eq!(status[0]["kind"], "webhook");
    let health = s
        .client
        .get(format!("{}/healthz", s.admin))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_managed_over_the_admin_api() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .post(format!("{}/api/tokens", s.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "okta"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.expect("json");
    let token = created["token"]
        .as_str()
        .expect("token shown once")
        .to_string();
    assert!(token.starts_with("scr_"));
    let r = s
        .raw(s.client.get(s.url("/Users")).bearer_auth(&token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "the new SCIM token works");
    let (_, list) = admin(&s, Method::GET, "/api/tokens", Some(ADMIN_TOKEN)).await;
    assert!(
        !list.to_string().contains(&token),
        "a listing never shows tokens"
    );
    let (status, _) = admin(&s, Method::DELETE, "/api/tokens/okta", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let r = s
        .raw(s.client.get(s.url("/Users")).bearer_auth(&token))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "revoked at once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_is_read_in_order_with_a_cursor() {
    let s = TestServer::start().await;
    let a = s.create_user("one@example.com").await;
    let b = s.create_user("two@example.com").await;
    let g = s.create_group("Team").await;
    let (_, page) = admin(&s, Method::GET, "/events?limit=2", Some(ADMIN_TOKEN)).await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "user.created");
    assert_eq!(events[0]["data"]["id"], a.as_str());
    assert_eq!(events[1]["data"]["id"], b.as_str());
    let next = page["next"].as_i64().expect("cursor");
    let (_, page) = admin(
        &s,
        Method::GET,
        &format!("/events?after={next}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "group.created");
    assert_eq!(events[0]["data"]["id"], g.as_str());
    let last = page["next"].as_i64().expect("cursor");

    // A long-poll returns as soon as the next event is committed.
    let waiter = {
        let url = format!("{}/events?after={last}&wait=10", s.admin);
        let client = s.client.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("long-poll")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.create_user("three@example.com").await;
    let page = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("answered before its wait ran out")
        .expect("task");
    assert_eq!(
        page["events"][0]["data"]["resource"]["userName"],
        "three@example.com"
    );
    s.stop().await;
}
