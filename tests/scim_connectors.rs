//! Outbound SCIM connectors against a real third-party SCIM server (scim2-server from PyPI,
//! on loopback), driven through scim-relay's own SCIM API as Entra ID would.

mod common;

use std::time::{Duration, Instant};

use common::scim2::Scim2Server;
use common::{scim_connector, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The user as Entra ID provisions it into scim-relay.
fn entra_user(user_name: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": user_name,
        "externalId": format!("ext-{user_name}"),
        "active": true,
        "displayName": format!("{given} {family}"),
        "title": "Advisor",
        "name": {"givenName": given, "familyName": family, "formatted": format!("{given} {family}")},
        "emails": [{"type": "work", "value": user_name, "primary": true}],
        "phoneNumbers": [{"type": "work", "value": "+45 1234"}],
        "addresses": [{"type": "work", "formatted": "Main St 1, Copenhagen"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales", "employeeNumber": "7"}
    })
}

async fn create(s: &TestServer, body: Value) -> String {
    let r = s.post("/Users", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

async fn patch(s: &TestServer, path: &str, ops: Value) {
    let r = s
        .patch(path, json!({"schemas": [PATCH], "Operations": ops}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
}

/// Polls a downstream server until `check` passes on its users (bounded).
async fn converge(
    what: &str,
    target: &Scim2Server,
    check: impl Fn(&[Value]) -> Result<(), String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let users = target.users().await;
        match check(&users) {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => {
                panic!("{what} did not converge: {why}\nusers: {users:#?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn by_name<'a>(users: &'a [Value], user_name: &str) -> Option<&'a Value> {
    users.iter().find(|u| u["userName"] == user_name)
}

/// The attributes a downstream user carries besides what every SCIM server adds.
fn attributes(user: &Value) -> Vec<String> {
    let mut keys: Vec<String> = user
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.retain(|k| !matches!(k.as_str(), "id" | "meta" | "schemas"));
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn andmoney_advisors_and_rooms_follow_group_membership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let advisors = Scim2Server::start();
    let rooms = Scim2Server::start();
    let config = format!(
        "{}{}",
        scim_connector(
            dir.path(),
            "advisors",
            "andmoney-advisors",
            &advisors,
            "scope = 'groups[display eq \"Advisors\"]'"
        ),
        scim_connector(
            dir.path(),
            "rooms",
            "andmoney-rooms",
            &rooms,
            "scope = 'groups[display eq \"Meeting Rooms\"]'"
        ),
    );
    let s = TestServer::start_with(&config).await;

    let ann = create(&s, entra_user("ann@andmoney.dk", "Ann", "Lee")).await;
    let bob = create(&s, entra_user("bob@andmoney.dk", "Bob", "Berg")).await;
    let carl = create(&s, entra_user("carl@andmoney.dk", "Carl", "Dahl")).await;
    let room = create(&s, entra_user("room.north@andmoney.dk", "Room", "North")).await;
    let _nobody = create(&s, entra_user("dave@andmoney.dk", "Dave", "Ek")).await;
    let adv_group = s.create_group("Advisors").await;
    let rooms_group = s.create_group("Meeting Rooms").await;
    // Entra adds members in later PATCHes, in batches.
    patch(
        &s,
        &format!("/Groups/{adv_group}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": ann}, {"value": bob}]}]),
    )
    .await;
    patch(
        &s,
        &format!("/Groups/{rooms_group}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": room}, {"value": carl}]}]),
    )
    .await;
    converge("first provisioning", &advisors, |users| {
        (users.len() == 2)
            .then_some(())
            .ok_or(format!("{} users", users.len()))
    })
    .await;

    // An update, a move from rooms to advisors, a deactivation and reactivation, a delete.
    patch(
        &s,
        &format!("/Users/{ann}"),
        json!([{"op": "Replace", "path": "name.familyName", "value": "Lee-Holm"},
               {"op": "Replace", "path": "displayName", "value": "Ann Lee-Holm"}]),
    )
    .await;
    patch(
        &s,
        &format!("/Groups/{rooms_group}"),
        json!([{"op": "Remove", "path": format!("members[value eq \"{carl}\"]")}]),
    )
    .await;
    patch(
        &s,
        &format!("/Groups/{adv_group}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": carl}]}]),
    )
    .await;
    patch(
        &s,
        &format!("/Users/{bob}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    patch(
        &s,
        &format!("/Users/{bob}"),
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;
    patch(
        &s,
        &format!("/Users/{ann}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    assert_eq!(
        s.delete(&format!("/Users/{room}")).await.status,
        StatusCode::NO_CONTENT
    );

    converge("advisors", &advisors, |users| {
        let names: Vec<&str> = users
            .iter()
            .filter_map(|u| u["userName"].as_str())
            .collect();
        if users.len() != 3 {
            return Err(format!("want ann, bob, carl; have {names:?}"));
        }
        let ann = by_name(users, "ann@andmoney.dk").ok_or("ann missing")?;
        if ann["name"]["familyName"] != "Lee-Holm" || ann["active"] != false {
            return Err(format!("ann not updated and deactivated: {ann}"));
        }
        let bob = by_name(users, "bob@andmoney.dk").ok_or("bob missing")?;
        if bob["active"] != true {
            return Err("bob not reactivated".into());
        }
        let carl = by_name(users, "carl@andmoney.dk").ok_or("carl missing")?;
        (carl["active"] == true)
            .then_some(())
            .ok_or("carl not active".into())
    })
    .await;
    let users = advisors.users().await;
    let ann = by_name(&users, "ann@andmoney.dk").expect("ann");
    // Exactly the advisors endpoint's attributes, with exactly the mapped values.
    assert_eq!(
        attributes(ann),
        [
            "active",
            "addresses",
            "displayName",
            "externalId",
            "name",
            "userName"
        ]
    );
    assert_eq!(ann["displayName"], "Ann Lee-Holm");
    assert_eq!(ann["externalId"], "ext-ann@andmoney.dk");
    assert_eq!(
        ann["name"],
        json!({"givenName": "Ann", "familyName": "Lee-Holm"})
    );
    assert_eq!(
        ann["addresses"],
        json!([{"type": "work", "formatted": "Main St 1, Copenhagen"}])
    );

    converge("rooms", &rooms, |users| {
        let names: Vec<&str> = users
            .iter()
            .filter_map(|u| u["userName"].as_str())
            .collect();
        // The room was deleted in the gateway (deleted downstream); Carl moved out (deactivated).
        if names != ["carl@andmoney.dk"] {
            return Err(format!("want only carl; have {names:?}"));
        }
        (users[0]["active"] == false)
            .then_some(())
            .ok_or("carl still active in rooms".into())
    })
    .await;
    let carl_room = rooms.users().await;
    assert_eq!(
        attributes(&carl_room[0]),
        [
            "active",
            "addresses",
            "displayName",
            "externalId",
            "userName"
        ],
        "the rooms endpoint gets no name"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bruno_gets_its_attributes_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bruno = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(dir.path(), "bruno", "bruno", &bruno, "")).await;
    create(&s, entra_user("eve@example.com", "Eve", "Fox")).await;
    converge("bruno", &bruno, |users| {
        (users.len() == 1)
            .then_some(())
            .ok_or(format!("{} users", users.len()))
    })
    .await;
    let users = bruno.users().await;
    assert_eq!(
        attributes(&users[0]),
        ["active", "displayName", "emails", "name", "userName"]
    );
    assert_eq!(
        users[0]["emails"],
        json!([{"type": "work", "value": "eve@example.com"}])
    );
    assert!(users[0].get("title").is_none() && users[0].get("phoneNumbers").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brellium_refuses_an_invalid_user_type_without_sending_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brellium = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(
        dir.path(),
        "brellium",
        "brellium",
        &brellium,
        "",
    ))
    .await;
    let mut bad = entra_user("contractor@example.com", "Con", "Tractor");
    bad["userType"] = json!("Contractor");
    create(&s, bad).await;
    let mut good = entra_user("manager@example.com", "Man", "Ager");
    good["userType"] = json!("Manager");
    create(&s, good).await;
    converge("brellium", &brellium, |users| {
        (users.len() == 1)
            .then_some(())
            .ok_or(format!("{} users", users.len()))
    })
    .await;
    let users = brellium.users().await;
    assert_eq!(users[0]["userName"], "manager@example.com");
    assert_eq!(users[0]["userType"], "manager");

    let out = common::relay_bin()
        .arg("--config")
        .arg(s.config_path())
        .args(["deliveries", "list", "--status", "dead", "--json"])
        .output()
        .expect("cli");
    let dead: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("userType") && error.contains("contractor"),
        "the dead letter says why: {error}"
    );
    assert!(brellium
        .user_by_name("contractor@example.com")
        .await
        .is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_remote_user_is_adopted_not_duplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let existing = target
        .create_user(
            json!({"userName": "gus@example.com", "displayName": "Old Name", "active": true}),
        )
        .await;
    let s =
        TestServer::start_with(&scim_connector(dir.path(), "bruno", "bruno", &target, "")).await;
    create(&s, entra_user("GUS@example.com", "Gus", "Holm")).await;
    converge("adoption", &target, |users| {
        let gus = users.first().ok_or("no user")?;
        (users.len() == 1 && gus["displayName"] == "Gus Holm")
            .then_some(())
            .ok_or(format!("{users:?}"))
    })
    .await;
    let users = target.users().await;
    assert_eq!(
        users[0]["id"], existing["id"],
        "the remote account was adopted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_was_down_converges_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut target = Scim2Server::start();
    let s =
        TestServer::start_with(&scim_connector(dir.path(), "bruno", "bruno", &target, "")).await;
    target.stop();
    let a = create(&s, entra_user("ida@example.com", "Ida", "Jul")).await;
    create(&s, entra_user("jon@example.com", "Jon", "Kas")).await;
    patch(
        &s,
        &format!("/Users/{a}"),
        json!([{"op": "replace", "path": "displayName", "value": "Ida J"}]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.restart();
    converge("after the outage", &target, |users| {
        let ida = by_name(users, "ida@example.com").ok_or("ida missing")?;
        (users.len() == 2 && ida["displayName"] == "Ida J")
            .then_some(())
            .ok_or(format!("{users:?}"))
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_provisions_a_new_connector_once() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let s = TestServer::start().await;
    let sales = s.create_group("Sales").await;
    let mut members = Vec::new();
    for name in ["kim", "lea"] {
        members.push(json!({"value": create(&s, entra_user(&format!("{name}@example.com"), name, "X")).await}));
    }
    create(&s, entra_user("max@example.com", "Max", "Y")).await;
    patch(
        &s,
        &format!("/Groups/{sales}"),
        json!([{"op": "add", "path": "members", "value": members}]),
    )
    .await;
    // Add the connector later: it has seen none of these changes.
    let dir = s.stop_keeping().await;
    let connector = scim_connector(
        secrets.path(),
        "late",
        "bruno",
        &target,
        "scope = 'groups[display eq \"Sales\"]'",
    );
    let s = TestServer::start_in(dir, &connector).await;
    let resync = || {
        common::relay_bin()
            .arg("--config")
            .arg(s.config_path())
            .args(["resync", "--connector", "late"])
            .output()
            .expect("cli")
    };
    let out = resync();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converge("resync", &target, |users| {
        let mut names: Vec<&str> = users
            .iter()
            .filter_map(|u| u["userName"].as_str())
            .collect();
        names.sort();
        (names == ["kim@example.com", "lea@example.com"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;
    let before = target.users().await;
    // Repeating it sends nothing: the target already holds this state.
    assert!(resync().status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = common::relay_bin()
            .arg("--config")
            .arg(s.config_path())
            .args(["status", "--json"])
            .output()
            .expect("status");
        let status: Value = serde_json::from_slice(&out.stdout).expect("json");
        if status[0]["pending"] == 0 && status[0]["in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second resync did not drain: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = target.users().await;
    assert_eq!(
        before, after,
        "a repeated resync changed nothing downstream"
    );
    s.stop().await;
}

fn cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    let out = common::relay_bin()
        .arg("--config")
        .arg(s.config_path())
        .args(args)
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn active_count(users: &[Value]) -> usize {
    users.iter().filter(|u| u["active"] == true).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_safety_holds_a_mass_deprovision_until_an_operator_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(
        dir.path(),
        "guarded",
        "bruno",
        &target,
        "scope = 'groups[display eq \"Staff\"]'\nleaver_threshold = 0.3\nleaver_min_count = 2",
    ))
    .await;
    let staff = s.create_group("Staff").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            create(
                &s,
                entra_user(&format!("s{i}@example.com"), "S", &i.to_string()),
            )
            .await,
        );
    }
    let all: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    patch(
        &s,
        &format!("/Groups/{staff}"),
        json!([{"op": "add", "path": "members", "value": all}]),
    )
    .await;
    converge("six provisioned", &target, |users| {
        (active_count(users) == 6)
            .then_some(())
            .ok_or(format!("{} active", active_count(users)))
    })
    .await;

    // An IdP mistake: four of six leave the scope at once.
    let leaving: Vec<Value> = ids[..4].iter().map(|id| json!({"value": id})).collect();
    patch(
        &s,
        &format!("/Groups/{staff}"),
        json!([{"op": "remove", "path": "members", "value": leaving}]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Value =
            serde_json::from_slice(&cli(&s, &["status", "--json"]).stdout).expect("json");
        if status[0]["switches"]["deprovisions_paused"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaver safety did not trip: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = active_count(&target.users().await);
    assert!(
        held >= 5,
        "at most the first leaver went through before the stop ({held} active)"
    );

    cli(&s, &["connectors", "resume", "guarded"]);
    converge("confirmed deprovisions", &target, |users| {
        (active_count(users) == 2)
            .then_some(())
            .ok_or(format!("{} active", active_count(users)))
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_holds_all_work_and_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(
        dir.path(),
        "stoppable",
        "bruno",
        &target,
        "",
    ))
    .await;
    cli(&s, &["connectors", "pause", "stoppable"]);
    create(&s, entra_user("paused@example.com", "Pa", "Used")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        target.users().await.is_empty(),
        "nothing is sent while paused"
    );
    cli(&s, &["connectors", "resume", "stoppable"]);
    converge("after resume", &target, |users| {
        (users.len() == 1)
            .then_some(())
            .ok_or(format!("{} users", users.len()))
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_provisioned_with_members_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Scim2Server::start();
    let s = TestServer::start_with(&scim_connector(
        dir.path(),
        "bifrost",
        "bifrost",
        &target,
        "member_batch = 2",
    ))
    .await;
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(json!({"value": create(&s, entra_user(&format!("g{i}@example.com"), "G", &i.to_string())).await}));
    }
    let team = s.create_group("Platform").await;
    patch(
        &s,
        &format!("/Groups/{team}"),
        json!([{"op": "add", "path": "members", "value": members}]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let remote_users = loop {
        let users = target.users().await;
        let group = target.group_by_name("Platform").await;
        let count = group
            .as_ref()
            .and_then(|g| g["members"].as_array().map(Vec::len))
            .unwrap_or(0);
        if users.len() == 5 && count == 5 {
            break users;
        }
        assert!(Instant::now() < deadline, "group not converged: {group:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let group = target.group_by_name("Platform").await.expect("group");
    let mut member_ids: Vec<&str> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    member_ids.sort();
    let mut user_ids: Vec<&str> = remote_users
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    user_ids.sort();
    assert_eq!(
        member_ids, user_ids,
        "members are the target's own user ids"
    );

    // A rename and a removal reach the target too.
    patch(&s, &format!("/Groups/{team}"), json!([
        {"op": "replace", "path": "displayName", "value": "Platform Team"},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", members[0]["value"].as_str().unwrap_or(""))}
    ])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let renamed = target.group_by_name("Platform Team").await;
        let count = renamed
            .as_ref()
            .and_then(|g| g["members"].as_array().map(Vec::len));
        if count == Some(4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rename/removal not converged: {renamed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
