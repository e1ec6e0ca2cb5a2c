//! The scim2-server harness (tests/common/scim2.rs), and what the real scim2-server accepts:
//! each behaviour a SCIM client that provisions it relies on, asserted against a running
//! instance.

#[path = "common/scim2.rs"]
mod scim2;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use scim2::*;

const DEPT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn schemas_of(v: &Value) -> Vec<String> {
    v["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

async fn patch(s: &Scim2Server, path: &str, ops: Value) -> Scim2Reply {
    s.request(Method::PATCH, path, Some(&patch_op(ops))).await
}

#[test]
fn installs_the_pinned_scim2_server() {
    let bin = scim2_server_bin();
    assert!(bin.is_file(), "{}", bin.display());
    // Idempotent and cheap the second time.
    assert_eq!(scim2_server_bin(), bin);
    let out = std::process::Command::new(scim2_python())
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('scim2-server'))",
        ])
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        SCIM2_SERVER_VERSION
    );
    let help = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .expect("scim2-server --help");
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    assert!(help.contains("--hostname"), "{help}");
    // The command's own word: its storage is in memory, no option loads resources at start.
    assert!(help.contains("from memory"), "{help}");
    assert!(!help.contains("--load"), "{help}");
}

#[tokio::test]
async fn two_instances_with_their_own_port_and_token() {
    let a = Scim2Server::start();
    let b = Scim2Server::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.token, b.token);
    assert!(a.base_url.starts_with("http://127.0.0.1:") && a.base_url.ends_with("/v2"));

    a.create_user(json!({"userName": "only-on-a"})).await;
    assert!(a.user_by_name("only-on-a").await.is_some());
    assert!(b.user_by_name("only-on-a").await.is_none());

    // Auth: no token, or the other instance's token → 401.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client.get(a.url("/Users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .get(a.url("/Users"))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn discovery_user_with_enterprise_extension_and_group_only() {
    let s = Scim2Server::start();
    let spc = s
        .request(Method::GET, "/ServiceProviderConfig", None)
        .await
        .body;
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["filter"]["maxResults"], 1000);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");

    let types = s.request(Method::GET, "/ResourceTypes", None).await.body;
    let names: Vec<&str> = types["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["User", "Group"]);
    let user = &types["Resources"][0];
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER_SCHEMA);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
    );

    let schemas = s.request(Method::GET, "/Schemas", None).await.body;
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA]);
}

#[tokio::test]
async fn post_user_full_body_round_trips() {
    let s = Scim2Server::start();
    let body = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "userName": "alice",
        "externalId": "ext-1",
        "name": {"givenName": "Alice", "familyName": "Smith"},
        "displayName": "Alice Smith",
        "title": "Engineer",
        "active": true,
        "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
        "addresses": [{"streetAddress": "1 Main St", "locality": "Springfield",
                        "country": "US", "type": "work"}],
        ENTERPRISE_USER_SCHEMA: {"department": "Eng", "employeeNumber": "42",
                                  "manager": {"value": "boss-id"}},
    });
    let r = s.request(Method::POST, "/Users", Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.body;
    assert!(!id_of(&created).is_empty());
    assert_eq!(created["meta"]["resourceType"], "User");
    assert!(created["meta"]["version"]
        .as_str()
        .unwrap()
        .starts_with("W/"));
    for key in [
        "userName",
        "externalId",
        "name",
        "displayName",
        "title",
        "active",
        "emails",
        "phoneNumbers",
        "addresses",
        ENTERPRISE_USER_SCHEMA,
    ] {
        assert_eq!(created[key], body[key], "{key}");
    }
    let got = s.user(&id_of(&created)).await.expect("stored");
    assert_eq!(got[ENTERPRISE_USER_SCHEMA], body[ENTERPRISE_USER_SCHEMA]);
    assert_eq!(s.user_by_name("alice").await.unwrap()["id"], created["id"]);
    assert_eq!(s.users().await.len(), 1);
}

#[tokio::test]
async fn post_rules_schemas_optional_username_required_unknown_attributes_rejected() {
    let s = Scim2Server::start();
    // No `schemas`: accepted, filled in.
    let r = s
        .request(
            Method::POST,
            "/Users",
            Some(&json!({"userName": "noschemas"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(schemas_of(&r.body), [USER_SCHEMA]);

    // The enterprise extension's object without its URN in `schemas`: accepted, URN added.
    let r = s
        .request(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "ext-no-urn",
                         ENTERPRISE_USER_SCHEMA: {"department": "Ops"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body[ENTERPRISE_USER_SCHEMA]["department"], "Ops");
    assert!(schemas_of(&r.body).contains(&ENTERPRISE_USER_SCHEMA.to_string()));

    // No userName → 400 invalidValue.
    let r = s
        .request(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER_SCHEMA], "displayName": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidValue");

    // An attribute no schema declares → 400 invalidSyntax.
    let r = s
        .request(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "carol", "unknownAttr": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidSyntax");

    // An extension the server does not know → 400 invalidSyntax.
    let r = s
        .request(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "bob",
                         "urn:example:custom:1.0:User": {"foo": "bar"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidSyntax");

    // Content types: application/json accepted, text/plain → 415.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .post(s.url("/Users"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(r#"{"userName":"jsonct"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(s.url("/Users"))
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body(r#"{"userName":"textct"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut names: Vec<String> = s
        .users()
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["ext-no-urn", "jsonct", "noschemas"]);
}

#[tokio::test]
async fn duplicate_user_name_is_409_uniqueness_case_insensitive() {
    let s = Scim2Server::start();
    let alice = s.create_user(json!({"userName": "alice"})).await;
    let bob = s.create_user(json!({"userName": "bob"})).await;
    for name in ["alice", "ALICE"] {
        let r = s
            .request(
                Method::POST,
                "/Users",
                Some(&json!({"schemas": [USER_SCHEMA], "userName": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{name}: {}", r.body);
        assert_eq!(r.body["scimType"], "uniqueness");
    }
    // Renaming onto a taken name, by PUT or PATCH → 409 too.
    let r = s
        .request(
            Method::PUT,
            &format!("/Users/{}", id_of(&bob)),
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "Alice"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = patch(
        &s,
        &format!("/Users/{}", id_of(&bob)),
        json!([{"op": "replace", "path": "userName", "value": "alice"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(s.users().await.len(), 2);
    assert_eq!(s.user(&id_of(&alice)).await.unwrap()["userName"], "alice");
}

#[tokio::test]
async fn filters() {
    let s = Scim2Server::start();
    for i in 1..=3 {
        s.create_user(
            json!({"userName": format!("p{i}"), "externalId": format!("x{i}"),
                              "emails": [{"value": format!("p{i}@example.com"), "type": "work"}]}),
        )
        .await;
    }
    s.create_user(json!({"userName": "we\"ird\\name"})).await;

    assert_eq!(s.user_by_name("p2").await.unwrap()["externalId"], "x2");
    // userName eq is case-insensitive.
    assert_eq!(s.user_by_name("P2").await.unwrap()["userName"], "p2");
    assert!(s.user_by_name("nobody").await.is_none());
    assert!(s.user_by_name("we\"ird\\name").await.is_some());

    let count = |f: &'static str| {
        let s = &s;
        async move { s.list("/Users", Some(f)).await.len() }
    };
    assert_eq!(count(r#"externalId eq "x3""#).await, 1);
    assert_eq!(
        count(r#"externalId eq "X3""#).await,
        0,
        "externalId is caseExact"
    );
    assert_eq!(count(r#"emails[value eq "p1@example.com"]"#).await, 1);
    assert_eq!(count(r#"emails.value eq "p1@example.com""#).await, 1);
    assert_eq!(count(r#"userName sw "p""#).await, 3);
    assert_eq!(count(r#"userName eq "p1" or userName eq "p3""#).await, 2);

    for bad in [r#"bogus eq "x""#, "userName eq"] {
        let mut url = s.url("/Users");
        url.query_pairs_mut().append_pair("filter", bad);
        let r = s.send(Method::GET, url, None, &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(r.body["scimType"], "invalidFilter");
    }
}

#[tokio::test]
async fn paging() {
    let s = Scim2Server::start();
    for i in 0..5 {
        s.create_user(json!({"userName": format!("u{i}")})).await;
    }
    let r = s
        .request(Method::GET, "/Users?startIndex=3&count=2", None)
        .await;
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["startIndex"], 3);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 2);
    let r = s
        .request(Method::GET, "/Users?startIndex=0&count=2", None)
        .await;
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(s.users().await.len(), 5);
}

#[tokio::test]
async fn patch_replace_top_level_sub_and_extension_paths() {
    let s = Scim2Server::start();
    let u = s
        .create_user(json!({"userName": "alice", "active": true,
                             "name": {"givenName": "Alice", "familyName": "Smith"},
                             "emails": [{"value": "a@example.com", "type": "work"}]}))
        .await;
    let path = format!("/Users/{}", id_of(&u));
    let ops = [
        json!([{"op": "replace", "path": "active", "value": false}]),
        json!([{"op": "replace", "path": "emails",
                "value": [{"value": "a2@example.com", "type": "work", "primary": true}]}]),
        json!([{"op": "replace", "path": DEPT, "value": "Ops"}]),
        json!([{"op": "replace", "path": "name.familyName", "value": "Jones"}]),
        json!([{"op": "replace", "path": "displayName", "value": "AJ"}]),
        json!([{"op": "Replace", "path": "title", "value": "Boss"}]),
        json!([{"op": "replace", "value": {"nickName": "Al", "name.givenName": "Alicia"}}]),
    ];
    for op in ops {
        let r = patch(&s, &path, op.clone()).await;
        // 204, no body.
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{op}: {}", r.body);
        assert_eq!(r.body, Value::Null);
    }
    let got = s.user(&id_of(&u)).await.unwrap();
    assert_eq!(got["active"], false);
    assert_eq!(
        got["emails"],
        json!([{"value": "a2@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(got[ENTERPRISE_USER_SCHEMA]["department"], "Ops");
    assert!(schemas_of(&got).contains(&ENTERPRISE_USER_SCHEMA.to_string()));
    assert_eq!(
        got["name"],
        json!({"givenName": "Alicia", "familyName": "Jones"})
    );
    assert_eq!(got["displayName"], "AJ");
    assert_eq!(got["title"], "Boss");
    assert_eq!(got["nickName"], "Al");

    // Without the PatchOp `schemas`: accepted.
    let r = s
        .request(
            Method::PATCH,
            &path,
            Some(&json!({"Operations": [{"op": "replace", "path": "active", "value": true}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // With ?attributes= the reply is 200 with the (projected) resource.
    let r = patch(
        &s,
        &format!("{path}?attributes=userName"),
        json!([{"op": "replace", "path": "title", "value": "CEO"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["userName"], "alice");
    assert!(r.body.get("title").is_none());

    // add to a multi-valued attribute appends.
    let r = patch(
        &s,
        &path,
        json!([{"op": "add", "path": "emails", "value": [{"value": "h@example.com", "type": "home"}]}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        s.user(&id_of(&u)).await.unwrap()["emails"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn patch_remove_top_level_extension_and_filtered_paths() {
    let s = Scim2Server::start();
    let u = s
        .create_user(json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "alice", "displayName": "Alice", "title": "T",
            "emails": [{"value": "w@example.com", "type": "work"},
                       {"value": "h@example.com", "type": "home"}],
            "addresses": [{"locality": "X", "type": "work"}],
            ENTERPRISE_USER_SCHEMA: {"department": "Eng", "employeeNumber": "42"},
        }))
        .await;
    let id = id_of(&u);
    let path = format!("/Users/{id}");
    let r = patch(
        &s,
        &path,
        json!([
            {"op": "remove", "path": "addresses"},
            {"op": "remove", "path": "displayName"},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "remove",
             "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = s.user(&id).await.unwrap();
    assert!(got.get("addresses").is_none(), "{got}");
    assert!(got.get("displayName").is_none(), "{got}");
    assert_eq!(
        got["emails"],
        json!([{"value": "w@example.com", "type": "work"}])
    );
    assert_eq!(got[ENTERPRISE_USER_SCHEMA], json!({"department": "Eng"}));

    // Removing an attribute that is not there: accepted.
    let r = patch(&s, &path, json!([{"op": "remove", "path": "nickName"}])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Removing the whole extension (path = its URN).
    let r = patch(
        &s,
        &path,
        json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = s.user(&id).await.unwrap();
    assert!(got.get(ENTERPRISE_USER_SCHEMA).is_none(), "{got}");
    assert_eq!(schemas_of(&got), [USER_SCHEMA]);
}

#[tokio::test]
async fn patch_errors_and_atomicity() {
    let s = Scim2Server::start();
    let u = s
        .create_user(json!({"userName": "alice", "displayName": "Before"}))
        .await;
    let path = format!("/Users/{}", id_of(&u));

    let r = patch(
        &s,
        &path,
        json!([{"op": "replace", "path": "nosuch", "value": 1}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidPath");

    let r = patch(
        &s,
        &path,
        json!([{"op": "replace", "path": "id", "value": "x"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["scimType"], "mutability");

    let r = patch(
        &s,
        "/Users/does-not-exist",
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // A failing later operation leaves the earlier ones unapplied.
    let r = patch(
        &s,
        &path,
        json!([
            {"op": "replace", "path": "displayName", "value": "After"},
            {"op": "replace", "path": "nosuch", "value": 1},
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(s.user(&id_of(&u)).await.unwrap()["displayName"], "Before");
}

#[tokio::test]
async fn put_replaces_the_whole_resource() {
    let s = Scim2Server::start();
    let u = s
        .create_user(
            json!({"userName": "alice", "externalId": "e1", "title": "T",
                             "emails": [{"value": "a@example.com"}]}),
        )
        .await;
    let path = format!("/Users/{}", id_of(&u));
    let r = s
        .request(
            Method::PUT,
            &path,
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "alice",
                          "displayName": "Put", "active": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["displayName"], "Put");
    for gone in ["externalId", "title", "emails"] {
        assert!(r.body.get(gone).is_none(), "{gone}: {}", r.body);
    }
    // No schemas, and an id in the body (ignored): accepted.
    let r = s
        .request(
            Method::PUT,
            &path,
            Some(&json!({"id": "other", "userName": "alice2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], u["id"]);
    assert_eq!(r.body["userName"], "alice2");

    let r = s
        .request(
            Method::PUT,
            &path,
            Some(&json!({"schemas": [USER_SCHEMA], "displayName": "no userName"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = s
        .request(
            Method::PUT,
            "/Users/does-not-exist",
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "zz"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

#[tokio::test]
async fn delete_then_404() {
    let s = Scim2Server::start();
    let u = s.create_user(json!({"userName": "alice"})).await;
    let path = format!("/Users/{}", id_of(&u));
    let r = s.request(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(s.user(&id_of(&u)).await.is_none());
    let r = s.request(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // The userName is free again.
    s.create_user(json!({"userName": "alice"})).await;
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_412() {
    let s = Scim2Server::start();
    let u = s.create_user(json!({"userName": "alice"})).await;
    let path = format!("/Users/{}", id_of(&u));
    let version = u["meta"]["version"].as_str().unwrap().to_string();
    let body = patch_op(json!([{"op": "replace", "path": "title", "value": "A"}]));
    let r = s
        .send(
            Method::PATCH,
            s.url(&path),
            Some(&body),
            &[("If-Match", &version)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = s
        .send(
            Method::PATCH,
            s.url(&path),
            Some(&body),
            &[("If-Match", &version)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
}

#[tokio::test]
async fn groups_members_unchecked_and_display_name_not_unique() {
    let s = Scim2Server::start();
    let a = s.create_user(json!({"userName": "a"})).await;
    let b = s.create_user(json!({"userName": "b"})).await;
    let g = s
        .create_group(json!({"displayName": "eng", "members": [{"value": id_of(&a)}]}))
        .await;
    assert_eq!(g["members"], json!([{"value": id_of(&a)}]));
    // Same displayName again: accepted.
    s.create_group(json!({"displayName": "eng"})).await;
    // A member that does not exist: accepted.
    s.create_group(json!({"displayName": "dangling", "members": [{"value": "nope"}]}))
        .await;
    assert_eq!(s.groups().await.len(), 3);

    let path = format!("/Groups/{}", id_of(&g));
    let r = patch(
        &s,
        &path,
        json!([{"op": "add", "path": "members", "value": [{"value": id_of(&b)}]}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = patch(
        &s,
        &path,
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", id_of(&a))},
               {"op": "replace", "path": "displayName", "value": "eng2"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = s.group(&id_of(&g)).await.unwrap();
    assert_eq!(got["displayName"], "eng2");
    assert_eq!(got["members"], json!([{"value": id_of(&b)}]));
    assert_eq!(s.group_by_name("eng2").await.unwrap()["id"], got["id"]);

    // Deleting a member user leaves the membership; users carry no `groups`.
    let r = s
        .request(Method::DELETE, &format!("/Users/{}", id_of(&b)), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.group(&id_of(&g)).await.unwrap()["members"],
        json!([{"value": id_of(&b)}])
    );
    assert!(s.user(&id_of(&a)).await.unwrap().get("groups").is_none());
}

#[tokio::test]
async fn custom_user_extension_via_schema_files() {
    const URN: &str = "urn:example:params:scim:schemas:extension:relay:2.0:User";
    let s = Scim2Server::start_with(Scim2Options::default().with_user_extension(
        string_extension_schema(URN, "RelayUser", &["costCenter", "badge"]),
    ));
    let u = s
        .create_user(json!({"schemas": [USER_SCHEMA, URN], "userName": "alice",
                             URN: {"costCenter": "CC1"},
                             ENTERPRISE_USER_SCHEMA: {"department": "Eng"}}))
        .await;
    assert_eq!(u[URN]["costCenter"], "CC1");
    let r = patch(
        &s,
        &format!("/Users/{}", id_of(&u)),
        json!([{"op": "replace", "path": format!("{URN}:badge"), "value": "B7"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = s.user(&id_of(&u)).await.unwrap();
    assert_eq!(got[URN], json!({"costCenter": "CC1", "badge": "B7"}));
    assert_eq!(got[ENTERPRISE_USER_SCHEMA]["department"], "Eng");
}

#[tokio::test]
async fn stop_refuses_connections_and_in_memory_restart_loses_data() {
    let mut s = Scim2Server::start_in_memory();
    let port = s.port();
    s.create_user(json!({"userName": "alice"})).await;
    s.stop();
    assert!(!s.is_running());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let err = client
        .get(s.url("/Users"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect_err("the target is down");
    assert!(err.is_connect(), "{err}");
    s.restart();
    assert!(s.is_running());
    assert_eq!(s.port(), port);
    assert!(
        s.users().await.is_empty(),
        "scim2-server keeps nothing across a restart"
    );
}

#[tokio::test]
async fn persistent_restart_keeps_ids_versions_and_uniqueness() {
    let mut s = Scim2Server::start();
    let (port, token) = (s.port(), s.token.clone());
    let alice = s
        .create_user(json!({"userName": "alice",
                             ENTERPRISE_USER_SCHEMA: {"department": "Eng"}}))
        .await;
    let gone = s.create_user(json!({"userName": "gone"})).await;
    let g = s
        .create_group(json!({"displayName": "eng", "members": [{"value": id_of(&alice)}]}))
        .await;
    let r = patch(
        &s,
        &format!("/Users/{}", id_of(&alice)),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .request(Method::DELETE, &format!("/Users/{}", id_of(&gone)), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let before_users = s.users().await;
    let before_groups = s.groups().await;

    // Killed (SIGKILL), then started again.
    s.stop();
    s.restart();
    assert_eq!((s.port(), s.token.clone()), (port, token));
    assert_eq!(s.users().await, before_users);
    assert_eq!(s.groups().await, before_groups);
    assert_eq!(s.user(&id_of(&alice)).await.unwrap()["active"], false);
    assert!(s.user(&id_of(&gone)).await.is_none());
    assert_eq!(
        s.group(&id_of(&g)).await.unwrap()["members"][0]["value"],
        alice["id"]
    );

    // Uniqueness still enforced, versions keep increasing.
    let r = s
        .request(Method::POST, "/Users", Some(&json!({"userName": "Alice"})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let version = |v: &Value| -> u64 {
        v["meta"]["version"]
            .as_str()
            .unwrap()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .unwrap()
    };
    let newest = before_users
        .iter()
        .chain(&before_groups)
        .map(version)
        .max()
        .unwrap();
    let bob = s.create_user(json!({"userName": "bob"})).await;
    assert!(version(&bob) > newest, "{bob}");

    // restart() of a running server, twice.
    s.restart();
    s.restart();
    assert_eq!(s.users().await.len(), 2);
}
