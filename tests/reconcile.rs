//! `scim-relay reconcile` against a real third-party SCIM server (scim2-server from PyPI, on
//! loopback): drift made directly at the target is reported exactly, `--fix` repairs it
//! through the running server's outbox, and extra remote users are reported, never deleted.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::scim2::{patch_op, Scim2Server, ENTERPRISE_USER_SCHEMA as ENT};
use common::{scim_connector, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn person(user_name: &str, given: &str, family: &str, manager: Option<&str>) -> Value {
    let mut enterprise = json!({"department": "Sales", "employeeNumber": "7"});
    if let Some(m) = manager {
        enterprise["manager"] = json!({"value": m});
    }
    json!({
        "schemas": [USER, ENT],
        "userName": user_name,
        "active": true,
        "displayName": format!("{given} {family}"),
        "title": "Advisor",
        "name": {"givenName": given, "familyName": family},
        "emails": [{"type": "work", "value": user_name, "primary": true}],
        ENT: enterprise
    })
}

async fn create(s: &TestServer, body: Value) -> String {
    let r = s.post("/Users", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

/// Polls the target until `check` passes on its users (bounded).
async fn converge(
    what: &str,
    target: &Scim2Server,
    check: impl Fn(&[Value]) -> Result<(), String>,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let users = target.users().await;
        match check(&users) {
            Ok(()) => return users,
            Err(why) if Instant::now() > deadline => {
                panic!("{what} did not converge: {why}\nusers: {users:#?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn by_name<'a>(users: &'a [Value], user_name: &str) -> Result<&'a Value, String> {
    users
        .iter()
        .find(|u| u["userName"] == user_name)
        .ok_or(format!("{user_name} missing"))
}

/// Runs the binary (bounded: 60 s) and returns its exit status, stdout and stderr.
async fn run(
    config: &std::path::Path,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut child = common::relay_bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scim-relay");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scim-relay {args:?} did not finish within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// Runs the binary and returns its stdout; panics unless it exits 0.
async fn relay(config: &std::path::Path, args: &[&str]) -> String {
    let (status, out, err) = run(config, args).await;
    assert!(
        status.success(),
        "scim-relay {args:?}: {status}\n{err}\n{out}"
    );
    out
}

async fn reconcile_json(s: &TestServer, args: &[&str]) -> Value {
    let config = s.config_path();
    let mut all = vec!["reconcile", "--connector", "bifrost", "--json"];
    all.extend_from_slice(args);
    let out = relay(&config, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["user_name"].as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_drift_exactly_and_fix_repairs_it_without_touching_extras() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    // Bifrost's preset plus the manager, which the connector translates to the target's id.
    let connector = scim_connector(
        dir.path(),
        "bifrost",
        "bifrost",
        &target,
        &format!(
            "groups = false\nscope = 'userName ew \"@example.com\"'\n\
             [connectors.mapping]\n\"{ENT}:manager.value\" = \"{ENT}:manager.value\"\n"
        ),
    );
    let s = TestServer::start_with(&connector).await;

    // The boss first, so that the reports' manager is linked when they are synced.
    let boss = create(&s, person("boss@example.com", "Bo", "Boss", None)).await;
    converge("the boss", &target, |users| {
        by_name(users, "boss@example.com").map(|_| ())
    })
    .await;
    let ann = create(&s, person("ann@example.com", "Ann", "Lee", Some(&boss))).await;
    let bob = create(&s, person("bob@example.com", "Bob", "Berg", Some(&boss))).await;
    let carl = create(&s, person("carl@example.com", "Carl", "Dahl", None)).await;
    // Out of scope: never provisioned, never reported.
    create(&s, person("outsider@elsewhere.org", "Out", "Sider", None)).await;

    let users = converge("provisioning", &target, |users| {
        if users.len() != 4 {
            return Err(format!("{} users", users.len()));
        }
        let boss = by_name(users, "boss@example.com")?;
        for name in ["ann@example.com", "bob@example.com"] {
            if by_name(users, name)?[ENT]["manager"]["value"] != boss["id"] {
                return Err(format!("{name} lacks the translated manager"));
            }
        }
        Ok(())
    })
    .await;
    let remote_id = |name: &str| {
        by_name(&users, name).expect("provisioned")["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let (ann_remote, bob_remote, carl_remote) = (
        remote_id("ann@example.com"),
        remote_id("bob@example.com"),
        remote_id("carl@example.com"),
    );

    // In sync: no drift, the manager translation and the target's echo included.
    let report = reconcile_json(&s, &[]).await;
    assert_eq!(report["counts"]["in_scope"], 4, "{report:#}");
    assert_eq!(report["counts"]["in_sync"], 4, "{report:#}");
    for list in ["missing", "extra", "different", "wrong_active", "errors"] {
        assert_eq!(report[list], json!([]), "{list}: {report:#}");
    }

    // Drift made at the target behind the gateway's back.
    let r = target
        .request(
            Method::PATCH,
            &format!("/Users/{ann_remote}"),
            Some(&patch_op(json!([
                {"op": "replace", "path": "displayName", "value": "Changed There"},
                // Not mapped: the target's own business, not drift.
                {"op": "replace", "path": "title", "value": "Chief"}
            ]))),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = target
        .request(
            Method::PATCH,
            &format!("/Users/{bob_remote}"),
            Some(&patch_op(
                json!([{"op": "replace", "path": "active", "value": false}]),
            )),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = target
        .request(Method::DELETE, &format!("/Users/{carl_remote}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let intruder = target
        .create_user(json!({"userName": "intruder@example.com", "active": true}))
        .await;
    let intruder_id = intruder["id"].as_str().expect("id").to_string();

    let report = reconcile_json(&s, &[]).await;
    let counts = &report["counts"];
    assert_eq!(counts["remote_users"], 4, "{report:#}");
    assert_eq!(counts["in_scope"], 4, "{report:#}");
    assert_eq!(counts["in_sync"], 1, "{report:#}");
    assert_eq!(counts["queued"], 0, "{report:#}");
    assert_eq!(
        report["missing"],
        json!([{"local_id": carl, "user_name": "carl@example.com", "reason": "remote_not_found",
                "remote_id": carl_remote, "adopts": null}]),
        "{report:#}"
    );
    assert_eq!(
        report["extra"],
        json!([{"remote_id": intruder_id, "user_name": "intruder@example.com", "active": true,
                "linked_to": null}]),
        "{report:#}"
    );
    assert_eq!(
        report["different"],
        json!([{"local_id": ann, "remote_id": ann_remote, "user_name": "ann@example.com",
                "attributes": [{"path": "displayName", "desired": "Ann Lee", "remote": "Changed There"}]}]),
        "{report:#}"
    );
    assert_eq!(
        report["wrong_active"],
        json!([{"local_id": bob, "remote_id": bob_remote, "user_name": "bob@example.com",
                "desired": true, "remote": false, "in_scope": true}]),
        "{report:#}"
    );
    assert_eq!(report["errors"], json!([]), "{report:#}");

    // The text report says the same in words.
    let text = relay(&s.config_path(), &["reconcile", "--connector", "bifrost"]).await;
    eprintln!("{text}");
    for line in [
        "missing (1)",
        "carl@example.com",
        "displayName: target has \"Changed There\", should be \"Ann Lee\"",
        "bob@example.com",
        "active is false at the target, should be true",
        "intruder@example.com",
        "--fix",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }

    // Without --fix nothing changed at the target.
    let untouched = target.user(&ann_remote).await.expect("ann");
    assert_eq!(untouched["displayName"], "Changed There");

    let fixed = reconcile_json(&s, &["--fix"]).await;
    assert_eq!(fixed["fix"], true);
    assert_eq!(fixed["counts"]["queued"], 3, "{fixed:#}");
    assert_eq!(names(&fixed["missing"]), ["carl@example.com"]);
    assert_eq!(names(&fixed["extra"]), ["intruder@example.com"]);

    let users = converge("the repair", &target, |users| {
        let ann = by_name(users, "ann@example.com")?;
        if ann["displayName"] != "Ann Lee" {
            return Err(format!("ann's displayName is {}", ann["displayName"]));
        }
        if by_name(users, "bob@example.com")?["active"] != true {
            return Err("bob is still inactive".into());
        }
        let carl = by_name(users, "carl@example.com")?;
        if carl["name"]["familyName"] != "Dahl" || carl["active"] != true {
            return Err(format!("carl is recreated incompletely: {carl}"));
        }
        by_name(users, "intruder@example.com")?;
        Ok(())
    })
    .await;
    assert_eq!(users.len(), 5, "{users:#?}");
    let ann_now = by_name(&users, "ann@example.com").expect("ann");
    assert_eq!(ann_now["id"], ann_remote.as_str());
    assert_eq!(
        ann_now["title"], "Chief",
        "an unmapped attribute is left alone"
    );
    let carl_now = by_name(&users, "carl@example.com").expect("carl");
    assert_ne!(
        carl_now["id"],
        carl_remote.as_str(),
        "carl was created anew"
    );

    // Only the extra user remains, and it is still there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let report = reconcile_json(&s, &[]).await;
        let settled = report["counts"]["in_sync"] == 4;
        if settled || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last["counts"]["in_sync"], 4, "{last:#}");
    for list in ["missing", "different", "wrong_active", "errors"] {
        assert_eq!(last[list], json!([]), "{list}: {last:#}");
    }
    assert_eq!(names(&last["extra"]), ["intruder@example.com"], "{last:#}");
    assert!(target.user(&intruder_id).await.is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_webhooks_and_unknown_connectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::webhook_connector(
        dir.path(),
        "hook",
        "http://127.0.0.1:9/never",
        &common::new_secret(),
        "",
    );
    let s = TestServer::start_with(&config).await;
    for (name, says) in [
        ("hook", "webhook connector"),
        ("nope", "no connector named"),
    ] {
        let (status, _, err) = run(&s.config_path(), &["reconcile", "--connector", name]).await;
        assert!(!status.success(), "{name}");
        assert!(err.contains(says), "{name}: {err}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioned_users_are_held_to_the_deprovision_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    // Bifrost: leaving the scope deactivates, deleting in the gateway deletes.
    let connector = scim_connector(
        dir.path(),
        "bifrost",
        "bifrost",
        &target,
        "groups = false\nscope = 'userName ew \"@example.com\"'\n",
    );
    let s = TestServer::start_with(&connector).await;
    let dora = create(&s, person("dora@example.com", "Dora", "Dahl", None)).await;
    let eve = create(&s, person("eve@example.com", "Eve", "Ek", None)).await;
    create(&s, person("fay@example.com", "Fay", "Fog", None)).await;
    converge("provisioning", &target, |users| {
        (users.len() == 3)
            .then_some(())
            .ok_or(format!("{} users", users.len()))
    })
    .await;

    // Dora leaves the scope (deactivated there), Eve is deleted (deleted there).
    let r = s
        .patch(
            &format!("/Users/{dora}"),
            patch_op(json!([{"op": "replace", "path": "userName", "value": "dora@elsewhere.org"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        s.delete(&format!("/Users/{eve}")).await.status,
        StatusCode::NO_CONTENT
    );
    let users = converge("deprovisioning", &target, |users| {
        if by_name(users, "eve@example.com").is_ok() {
            return Err("eve is still there".into());
        }
        match by_name(users, "dora@example.com")?["active"].as_bool() {
            Some(false) => Ok(()),
            other => Err(format!("dora's active is {other:?}")),
        }
    })
    .await;
    let dora_remote = by_name(&users, "dora@example.com").expect("dora")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let report = reconcile_json(&s, &[]).await;
    assert_eq!(report["counts"]["deprovisioned"], 2, "{report:#}");
    assert_eq!(report["counts"]["in_sync"], 1, "{report:#}");
    assert!(!has_drift(&report), "{report:#}");

    // Someone re-enables Dora at the target: the connector itself would never notice.
    let r = target
        .request(
            Method::PATCH,
            &format!("/Users/{dora_remote}"),
            Some(&patch_op(
                json!([{"op": "replace", "path": "active", "value": true}]),
            )),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let report = reconcile_json(&s, &[]).await;
    assert_eq!(
        report["wrong_active"],
        json!([{"local_id": dora, "remote_id": dora_remote, "user_name": "dora@example.com",
                "desired": false, "remote": true, "in_scope": false}]),
        "{report:#}"
    );
    assert_eq!(report["extra"], json!([]), "{report:#}");

    let fixed = reconcile_json(&s, &["--fix"]).await;
    assert_eq!(fixed["counts"]["queued"], 1, "{fixed:#}");
    converge("the repair", &target, |users| {
        match by_name(users, "dora@example.com")?["active"].as_bool() {
            Some(false) => Ok(()),
            other => Err(format!("dora's active is {other:?}")),
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = reconcile_json(&s, &[]).await;
        if !has_drift(&report) && report["counts"]["deprovisioned"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "still drifting: {report:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The kill switch stops reads too.
    relay(&s.config_path(), &["connectors", "pause", "bifrost"]).await;
    let (status, _, err) = run(&s.config_path(), &["reconcile", "--connector", "bifrost"]).await;
    assert!(!status.success());
    assert!(err.contains("paused"), "{err}");
    s.stop().await;
}

fn has_drift(report: &Value) -> bool {
    ["missing", "extra", "different", "wrong_active"]
        .iter()
        .any(|list| report[*list] != json!([]))
}

/// The library API the admin route and the server's periodic runs use: connectors built by
/// `connector::from_config`, the SCIM one found by name, `reconcile` and `run_periodically`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_reconciliation_repairs_drift_until_stopped() {
    use scim_relay::connector::{self, reconcile};

    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(
        dir.path(),
        "bifrost",
        "bifrost",
        &target,
        "groups = false\n",
    ))
    .await;
    create(&s, person("gus@example.com", "Gus", "Gray", None)).await;
    let users = converge("provisioning", &target, |users| {
        by_name(users, "gus@example.com").map(|_| ())
    })
    .await;
    let gus_remote = by_name(&users, "gus@example.com").expect("gus")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let config = scim_relay::config::Config::load(&s.config_path()).expect("config");
    let store = scim_relay::store::Store::open(
        &config.database_path(),
        1,
        std::sync::Arc::new(scim_relay::outbox::Fanout::none()),
    )
    .expect("store");
    let connectors = connector::from_config(&config, &store).expect("connectors");
    assert!(matches!(
        reconcile::find_scim(&connectors, "nope"),
        Err(reconcile::ReconcileError::NoSuchConnector(_))
    ));
    let scim = reconcile::find_scim(&connectors, "bifrost").expect("a SCIM connector");
    let report = reconcile::reconcile(scim, &store, false)
        .await
        .expect("reconcile");
    assert!(!report.has_drift(), "{report:#?}");
    assert_eq!(report.counts.in_sync, 1);

    let r = target
        .request(
            Method::PATCH,
            &format!("/Users/{gus_remote}"),
            Some(&patch_op(json!([
                {"op": "replace", "path": "name.familyName", "value": "Changed"},
                {"op": "remove", "path": format!("{ENT}:department")}
            ]))),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let report = reconcile::reconcile(scim, &store, false)
        .await
        .expect("reconcile");
    let paths: Vec<&str> = report.different[0]
        .attributes
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(paths, ["name", format!("{ENT}:department").as_str()]);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(reconcile::run_periodically(
        std::sync::Arc::new(connectors.into_iter().next().expect("one connector")),
        store.clone(),
        Duration::from_secs(1),
        true,
        stopped,
    ));
    converge("the periodic repair", &target, |users| {
        let gus = by_name(users, "gus@example.com")?;
        if gus["name"]["familyName"] != "Gray" || gus[ENT]["department"] != "Sales" {
            return Err(format!("not repaired yet: {gus}"));
        }
        Ok(())
    })
    .await;
    stop.send(true).expect("the runner listens");
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .expect("the runner stops")
        .expect("the runner does not panic");
    s.stop().await;
}
