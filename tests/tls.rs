//! HTTPS on the SCIM listener with the real binary: the IdP's view (a SCIM call over TLS
//! with `https` locations), certificate rotation on SIGHUP while a connection stays open,
//! a botched renewal that keeps the old certificate, and start-up errors naming the file.

mod common;

use common::{free_port, KillOnDrop};

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for 127.0.0.1 and localhost: (PEM cert, PEM key, DER cert).
fn certificate(name: &str) -> (String, String, CertificateDer<'static>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    // The key's base64 body is a secret like any token: the full-run log grep looks for it.
    let body: String = key
        .serialize_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    common::logs::record_secret(&format!("tls-key-{name}"), &body);
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    common::logs::record_secret("TOKEN", common::TOKEN);
    std::fs::write(dir.join("token"), common::TOKEN).expect("token");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n\
             [storage]\npath = \"relay.db\"\n[auth]\ntoken_file = \"token\"\n[logging]\nlevel = \"info\"\n"
        ),
    )
    .expect("config");
    path
}

fn install(dir: &Path, cert: &str, key: &str) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    std::fs::write(tls.join("cert.pem"), cert).expect("cert");
    std::fs::write(tls.join("key.pem"), key).expect("key");
}

fn serve(config: &Path, stderr: &Path) -> KillOnDrop {
    let log = std::fs::File::create(stderr).expect("log file");
    KillOnDrop(
        common::relay_bin()
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn serve"),
    )
}

fn connector(trusted: &[&CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("trust");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection and the certificate the server presented on it.
async fn connect(
    tls: &tokio_rustls::TlsConnector,
    port: u16,
) -> std::io::Result<(TlsStream<TcpStream>, CertificateDer<'static>)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let stream = tls.connect(name, tcp).await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| std::io::Error::other("no peer certificate"))?;
    Ok((stream, presented))
}

/// One keep-alive `GET /healthz` on an open connection; returns the status line.
async fn healthz(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The body is "ok\n"; read until it is in.
    while !got.ends_with(b"ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn wait_for_tls(tls: &tokio_rustls::TlsConnector, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while connect(tls, port).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(server: &KillOnDrop) {
    let status = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Polls new connections until the server presents `want`.
async fn wait_for_cert(
    tls: &tokio_rustls::TlsConnector,
    port: u16,
    want: &CertificateDer<'static>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, presented) = connect(tls, port).await.expect("connect");
        if &presented == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_certificate_without_dropping_open_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_a, key_a, der_a) = certificate("relay-a");
    let (cert_b, key_b, der_b) = certificate("relay-b");
    install(dir.path(), &cert_a, &key_a);
    let port = free_port();
    let config = write_config(dir.path(), port);
    let stderr = dir.path().join("stderr.log");
    let server = serve(&config, &stderr);
    let tls = connector(&[&der_a, &der_b]);
    wait_for_tls(&tls, port).await;

    // The IdP's view: a SCIM call over HTTPS, locations in https.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_a.as_bytes()).expect("pem")])
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let created = client
        .post(format!("https://127.0.0.1:{port}/scim/v2/Users"))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"tls@example.com"}"#)
        .send()
        .await
        .expect("https request");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let body: serde_json::Value = created.json().await.expect("json");
    let location = body["meta"]["location"].as_str().unwrap_or_default();
    assert!(
        location.starts_with(&format!("https://127.0.0.1:{port}/scim/v2/Users/")),
        "{location}"
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));

    let (mut open, presented) = connect(&tls, port).await.expect("connect");
    assert_eq!(presented, der_a);
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK");

    install(dir.path(), &cert_b, &key_b);
    sighup(&server);
    wait_for_cert(&tls, port, &der_b).await;
    // The connection opened before the rotation is still served.
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK");

    // A botched renewal (a truncated certificate) keeps the certificate in use.
    let tls_dir = dir.path().join("tls");
    std::fs::write(tls_dir.join("cert.pem"), &cert_a[..cert_a.len() / 2]).expect("write");
    sighup(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        if log.contains("TLS reload failed") {
            assert!(log.contains("cert.pem"), "the error names the file: {log}");
            break;
        }
        assert!(Instant::now() < deadline, "no reload error logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut fresh, presented) = connect(&tls, port).await.expect("connect");
    assert_eq!(presented, der_b);
    assert_eq!(healthz(&mut fresh).await, "HTTP/1.1 200 OK");
    // Nothing of the key reaches the log.
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    for line in key_b.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "key material in the log");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_missing_or_mismatched_certificates_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), free_port());
    let run = || {
        common::relay_bin()
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .output()
            .expect("run")
    };

    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A key that belongs to another certificate.
    let (cert_a, _, _) = certificate("relay-a");
    let (_, key_b, _) = certificate("relay-b");
    install(dir.path(), &cert_a, &key_b);
    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key.pem") && stderr.contains("do not form a usable pair"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
