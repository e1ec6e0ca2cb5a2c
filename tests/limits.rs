//! Request limits end to end: failed-auth lockout, members per request, slow clients
//! (header, idle and body timeouts), the connection cap, JSON nesting, and what
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
struct Limited {
    base: String,
    addr: std::net::SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Limited {
    async fn start(server_keys: &str) -> Limited {
        common::logs::record_secret("TOKEN", TOKEN);
        common::logs::install_subscriber();
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
        Limited {
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
    let s = Limited::start("auth_failures_per_minute = 3").await;
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
    let s = Limited::start("auth_failures_per_minute = 0").await;
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
    // The defaults, as the README's Security section states them.
    assert_eq!(r.body["bulk"]["maxPayloadSize"], 1024 * 1024);
    s.stop().await;

    let s = Limited::start("max_body_bytes = 4096").await;
    let r = s
        .client
        .get(format!("{}/ServiceProviderConfig", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["bulk"]["maxPayloadSize"], 4096);
    s.stop().await;
}

/// Reads until the server closes the connection; `None` if it is still open at `within`.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dribbling_its_headers_is_cut_off_at_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let s = Limited::start("header_timeout_secs = 1").await;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    // Half a request head, then nothing: the classic slowloris.
    slow.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut slow, std::time::Duration::from_secs(10))
        .await
        .expect("the server closes the connection");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "closed after {waited:?}, before the timeout"
    );
    // No request was ever read, so no response is owed.
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{got:?}"
    );

    // A connection that never sends a byte goes the same way.
    let mut silent = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    assert!(
        read_until_closed(&mut silent, std::time::Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection is closed"
    );

    // Meanwhile well-behaved clients are served.
    let (status, _, _) = s.users(Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let s = Limited::start("header_timeout_secs = 1").await;
    let mut conn = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut conn, std::time::Duration::from_secs(10))
        .await
        .expect("closed once idle");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    use tokio::io::AsyncWriteExt;
    let s = Limited::start("body_timeout_secs = 1").await;
    let mut conn = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{{\"userName\":"
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let got = read_until_closed(&mut conn, std::time::Duration::from_secs(10))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .expect("a JSON body");
    assert_scim_error(&body, "408", None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_clients_wait_until_a_connection_closes() {
    use tokio::io::AsyncWriteExt;
    let s = Limited::start("max_connections = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut c, &mut buf),
        )
        .await
        .expect("served")
        .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    // The third client connects (the kernel queues it) but is not served while two are open.
    let third = tokio::spawn({
        let url = format!("http://{}/healthz", s.addr);
        async move { reqwest::get(url).await.map(|r| r.status()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "served beyond the connection cap");
    drop(held.pop());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), third)
        .await
        .expect("served once a slot frees")
        .expect("task")
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nested_deeper_than_the_limit_is_refused_before_parsing() {
    let s = Limited::start("max_json_depth = 8").await;
    let post = |body: String| {
        s.client
            .post(format!("{}/Users", s.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
    };
    let deep = format!(
        "{{\"userName\":\"deep\",\"x\":{}1{}}}",
        "[".repeat(10),
        "]".repeat(10)
    );
    let r = post(deep).await.expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert_scim_error(&body, "400", Some("invalidSyntax"));
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("8 levels")),
        "{body}"
    );
    // Far past serde_json's own recursion limit: still the same clear error, no crash.
    let r = post("[".repeat(100_000)).await.expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A user within the limit (brackets inside strings do not count) is created.
    let ok = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"[[[[[[[[[[[[","emails":[{"value":"a@example.com"}]}"#;
    let r = post(ok.to_string()).await.expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_beyond_the_configured_depth_or_terms_are_refused() {
    let s = TestServer::start_with("[scim]\nmax_filter_depth = 2\nmax_filter_terms = 3\n").await;
    let srv = &s;
    let list = |filter: &str| {
        let path = format!("/Users?filter={}", common::q(filter));
        async move { srv.get(&path).await }
    };
    let r = list(r#"userName eq "a" or userName eq "b" or userName eq "c""#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r =
        list(r#"userName eq "a" or userName eq "b" or userName eq "c" or userName eq "d""#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidFilter"));
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than 3")),
        "{}",
        r.body
    );

    let r = list(r#"not (not (userName eq "a"))"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = list(r#"not (not (not (userName eq "a")))"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidFilter"));
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("deeper than 2")),
        "{}",
        r.body
    );

    // /.search takes the same limits.
    let r = s
        .post(
            "/.search",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": r#"not (not (not (userName eq "a")))"#,
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidFilter"));
    s.stop().await;
}
