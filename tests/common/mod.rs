//! Test harness: the real server on an ephemeral loopback port with a temporary database,
//! and a small HTTP client for it.

#![allow(dead_code)]

use std::path::PathBuf;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "test-admin-token-fedcba9876543210";

pub struct TestServer {
    pub base: String,
    /// Base URL of the admin listener.
    pub admin: String,
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// Starts a server whose config is the defaults plus `extra` TOML (whole tables).
    pub async fn start_with(extra: &str) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra).await
    }

    /// Starts a server on the database already in `dir` (see [`TestServer::stop_keeping`]).
    pub async fn start_in(dir: tempfile::TempDir, extra: &str) -> TestServer {
        init_logs();
        std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("admin token file");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"db/test.db\"\n[auth]\ntoken_file = \"token\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n{extra}"
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("config file");
        let config = scim_relay::config::Config::load(&path).expect("test config is valid");
        let running = scim_relay::server::start(&config)
            .await
            .expect("server starts");
        let addr = running.addr;
        let admin = running
            .admin_addr
            .expect("the test config enables the admin listener");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = running
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            base: format!("http://{addr}/scim/v2"),
            addr,
            admin: format!("http://{admin}"),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("db/test.db")
    }

    /// Stops the server and hands back its folder, database included, for a restart.
    pub async fn stop_keeping(mut self) -> tempfile::TempDir {
        self.shutdown_now().await;
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    /// A request with the test token and `application/scim+json` body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Reply {
        Self::reply(req.send().await.expect("request")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a user with this userName and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "active": true,
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    pub async fn create_group(&self, display_name: &str) -> String {
        let r = self
            .post(
                "/Groups",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": display_name,
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }
}

/// A spawned process that is killed and reaped when dropped, so a failing test leaves no
/// server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that is free right now, for a spawned server to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Percent-encodes a filter for a query string.
pub fn q(filter: &str) -> String {
    let mut out = String::new();
    for b in filter.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub mod receiver;
pub mod scim2;

// Declared inside scim2 (which tests/scim2_harness.rs includes alone and which records its
// tokens) so that the file is compiled once per test binary.
pub use scim2::logs;

#[allow(unused_imports)] // not every test file spawns the binary
pub use logs::relay_bin;

/// Logs of the in-process servers go to the test log folder, and the harness's fixed tokens
/// to the secrets manifest (see [`logs`]).
fn init_logs() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        logs::record_secret("TOKEN", TOKEN);
        logs::record_secret("ADMIN_TOKEN", ADMIN_TOKEN);
        logs::install_subscriber();
    });
}

/// A fresh Standard Webhooks secret (`whsec_` + base64 of 32 bytes).
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    logs::record_secret("webhook-secret", &secret);
    secret
}

/// A `[[connectors]]` table for a webhook at `url`, its secret in a file under `dir`.
pub fn webhook_connector(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    secret: &str,
    extra: &str,
) -> String {
    let file = dir.join(format!("{name}.secret"));
    std::fs::write(&file, secret).expect("secret file");
    format!(
        "[[connectors]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{}\"\n{extra}\n",
        file.display()
    )
}

/// A `[[connectors]]` table for a preset pointed at a scim2-server, its token in a file
/// under `dir`, with fast retries.
pub fn scim_connector(
    dir: &std::path::Path,
    name: &str,
    preset: &str,
    target: &scim2::Scim2Server,
    extra: &str,
) -> String {
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, &target.token).expect("token file");
    format!(
        "[[connectors]]\nname = \"{name}\"\npreset = \"{preset}\"\nurl = \"{}\"\ntoken_file = \"{}\"\n{extra}\n\
         [connectors.retry]\ninitial_ms = 50\nmax_ms = 500\nmax_age_secs = 3600\ncircuit_after = 1000\n",
        target.base_url,
        token.display()
    )
}

/// Asserts a SCIM error body (RFC 7644 §3.12): the Error schema, `status` as a string, the
/// `scimType` (or none), and a non-empty `detail`.
#[track_caller]
pub fn assert_scim_error(body: &Value, status: &str, scim_type: Option<&str>) {
    assert_eq!(
        body["schemas"],
        serde_json::json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], t, "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}
