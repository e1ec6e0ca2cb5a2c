//! The `scim-relay` binary as operators use it: config errors, token lifecycle against a
//! running server (revocation from another process takes effect at once).

mod common;

use common::{free_port, KillOnDrop};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    common::relay_bin()
}

fn serve(config: &Path, port: u16) -> KillOnDrop {
    let mut child = bin()
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("server reports that it listens");
    KillOnDrop(child)
}

fn get_users(port: u16, token: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok(buf)
        });
        if let Ok(resp) = out {
            if let Some(code) = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
                return code;
            }
        }
        assert!(Instant::now() < deadline, "server did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn token_create_prints_only_the_token_and_revoke_takes_effect_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[storage]\npath = \"state/relay.db\"\n").expect("config");

    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--name", "entra"])
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is the token alone: {stdout:?}");
    let token = lines[0].to_string();
    assert!(token.starts_with("scr_") && token.len() > 40);
    assert!(
        dir.path().join("state/relay.db").exists(),
        "storage.path is relative to the config file"
    );

    // A second token for rotation; the first keeps working until revoked.
    let out = bin()
        .env("SCIM_RELAY_CONFIG", &config)
        .args(["token", "create", "--name", "entra-next"])
        .output()
        .expect("token create via env config");
    assert!(out.status.success());
    let next = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();

    let port = free_port();
    let _server = serve(&config, port);
    assert_eq!(get_users(port, &token), 200);
    assert_eq!(get_users(port, &next), 200);
    assert_eq!(get_users(port, "scr_guess"), 401);

    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["token", "revoke", "entra"])
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get_users(port, &token),
        401,
        "revoked token refused at once"
    );
    assert_eq!(get_users(port, &next), 200);

    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["token", "list"])
        .output()
        .expect("list");
    let listing = String::from_utf8(out.stdout).expect("utf8");
    assert!(listing.contains("entra-next") && listing.contains("revoked"));
    assert!(!listing.contains(&next), "list never shows a token");
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:8080\"\nbase_pth = \"/scim\"\n",
    )
    .expect("config");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay.toml:3:"), "{err}");
    assert!(err.contains("server.base_pth"), "{err}");

    let out = bin()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn shipped_config_is_valid() {
    let out = bin()
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
            "check-config",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn admin_and_scim_tokens_never_open_each_others_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let port = free_port();
    let admin_port = free_port();
    std::fs::write(
        &config,
        format!("[storage]\npath = \"relay.db\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"),
    )
    .expect("config");
    let token = |admin: bool| {
        let mut cmd = bin();
        cmd.arg("--config")
            .arg(&config)
            .args(["token", "create", "--name"]);
        cmd.arg(if admin { "ops" } else { "idp" });
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output().expect("token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    };
    let (scim, admin) = (token(false), token(true));
    assert!(scim.starts_with("scr_") && admin.starts_with("sca_"));
    let _server = serve(&config, port);
    assert_eq!(get_users(port, &scim), 200);
    assert_eq!(
        get_users(port, &admin),
        401,
        "an admin token opens no SCIM route"
    );
    let status = |token: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    };
    assert_eq!(status(&admin), 200);
    assert_eq!(status(&scim), 401, "a SCIM token opens no admin route");
}
