//! Request limits end to end: failed-auth lockout, members per request, and what
//! ServiceProviderConfig advertises. The real server on loopback; every request comes from
//! 127.0.0.1. (The concurrency cap is tested in `src/http/limits.rs`, where a handler can be
//! held open deterministically.)

mod common;

use common::assert_scim_error;

use common::{TestServer, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The real server with extra `[server]` keys, which `TestServer::start_with` cannot add (its
/// config already has a `[server]` table). The token comes from `auth.token_file`.
struct Lockout {
    base: String,
    addr: std::net::SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Lockout {
    async fn start(server_keys: &str) -> Lockout {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n[storage]\npath = \"db/test.db\"\n[auth]\ntoken_file = \"token\"\n"
            ),
        )
        .expect("config file");
        let config = scim_relay::config::Config::load(&path).expect("valid config");
        let running = scim_relay::server::start(&config).await.expect("starts");
        let addr = running.addr;
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = running
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Lockout {
            base: format!("http://{addr}/scim/v2"),
            addr,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            _dir: dir,
            shutdown,
            task,
        }
    }

    /// `GET /Users` with this token (or none).
    async fn users(&self, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
        let mut req = self.client.get(format!("{}/Users", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, retry, body)
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tokens_lock_the_address_out_good_token_included() {
    let s = Lockout::start("auth_failures_per_minute = 3").await;
    // Missing tokens guess nothing and are not counted.
    for _ in 0..5 {
        assert_eq!(s.users(None).await.0, StatusCode::UNAUTHORIZED);
    }
    // A success does not count either.
    assert_eq!(s.users(Some(TOKEN)).await.0, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(s.users(Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    }
    // The lockout is checked before the token, so the right token is refused too until the
    // minute is over.
    for token in ["wrong", TOKEN] {
        let (status, retry, body) = s.users(Some(token)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_scim_error(&body, "429", None);
        let retry: u64 = retry
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Health checks are outside the SCIM routes and unaffected.
    let health = s
        .client
        .get(format!("http://{}/healthz", s.addr))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_lockout_off() {
    let s = Lockout::start("auth_failures_per_minute = 0").await;
    for _ in 0..30 {
        assert_eq!(s.users(Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.users(Some(TOKEN)).await.0, StatusCode::OK);
    s.stop().await;
}

fn members(n: usize, id: &str) -> Value {
    Value::Array((0..n).map(|_| json!({"value": id})).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_over_the_limit_are_refused_and_nothing_is_stored() {
    let s = TestServer::start_with("[scim]\nmax_members_per_request = 2\n").await;
    let user = s.create_user("ann@example.com").await;

    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "big", "members": members(3, &user)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_scim_error(&r.body, "400", Some("invalidValue"));
    let list = s.get("/Groups").await;
    assert_eq!(list.body["totalResults"], 0, "{}", list.body);

    let group = s.create_group("team").await;
    let r = s
        .put(
            &format!("/Groups/{group}"),
            json!({"schemas": [GROUP], "displayName": "team", "members": members(3, &user)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_scim_error(&r.body, "400", Some("invalidValue"));

    let r = s
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "add", "path": "members", "value": members(2, &user)},
                {"op": "add", "value": {"members": members(1, &user)}},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_scim_error(&r.body, "400", Some("invalidValue"));

    let stored = s.get(&format!("/Groups/{group}")).await;
    assert_eq!(stored.status, StatusCode::OK);
    assert!(
        stored.body["members"]
            .as_array()
            .is_none_or(|m| m.is_empty()),
        "{}",
        stored.body
    );

    // At the limit is fine.
    let r = s
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "add", "path": "members", "value": members(1, &user)},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_provider_config_advertises_the_configured_limits() {
    let s = TestServer::start_with("[scim]\nmax_results = 25\n").await;
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["filter"]["supported"], true);
    assert_eq!(r.body["filter"]["maxResults"], 25);
    assert_eq!(r.body["bulk"]["supported"], false);
    s.stop().await;
}
