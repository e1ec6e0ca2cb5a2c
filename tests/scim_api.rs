//! The SCIM API end to end: the real server on loopback, real HTTP, a temp database.

mod common;

use common::assert_scim_error;

use common::{q, TestServer, TOKEN};
use reqwest::StatusCode;
use serde_json::json;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scim_route_requires_a_valid_bearer_token() {
    let s = TestServer::start().await;
    for path in [
        "/Users",
        "/Groups",
        "/ServiceProviderConfig",
        "/Schemas",
        "/Users/x",
    ] {
        let r = s.raw(s.client.get(s.url(path))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_scim_error(&r.body, "401", None);
        assert!(r.headers.get("www-authenticate").is_some());
        let r = s.raw(s.client.get(s.url(path)).bearer_auth("wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = s
        .raw(
            s.client
                .get(s.url("/Users"))
                .header("authorization", format!("bearer {TOKEN}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "scheme is case-insensitive");
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
async fn create_read_replace_delete_a_user() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "Ann.Lee@example.com",
                "externalId": "ext-1",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
                "active": true,
                "password": "never-stored",
                ENTERPRISE: {"department": "Ops"}
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["userName"], "Ann.Lee@example.com");
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(
        r.body["meta"]["location"],
        format!("{}/Users/{id}", s.base).as_str()
    );
    assert!(
        r.body.get("password").is_none(),
        "password is never returned"
    );
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{}/Users/{id}", s.base).as_str())
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/scim+json")
    );
    let etag = r.body["meta"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert_eq!(
        r.headers.get("etag").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );

    // The password is not in the stored row either.
    let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
    let doc: String = conn
        .query_row("SELECT doc FROM users WHERE id = ?1", [&id], |r| r.get(0))
        .expect("row");
    assert!(!doc.contains("never-stored"));

    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body[ENTERPRISE]["department"], "Ops");

    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER], "id": id, "userName": "ann.lee@example.com", "active": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["active"], false);
    assert!(
        r.body.get("name").is_none(),
        "PUT replaces the whole resource"
    );
    assert_ne!(r.body["meta"]["version"], etag.as_str());

    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_scim_error(&r.body, "404", None);
    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_is_unique_case_insensitively() {
    let s = TestServer::start().await;
    s.create_user("bjensen@example.com").await;
    let r = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "BJensen@Example.COM"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_scim_error(&r.body, "409", Some("uniqueness"));
    // Renaming another user onto the taken name is refused too.
    let other = s.create_user("other@example.com").await;
    let r = s
        .patch(
            &format!("/Users/{other}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "BJENSEN@example.com"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pagination_and_projection() {
    let s = TestServer::start().await;
    for i in 0..25 {
        let r = s
            .post(
                "/Users",
                json!({
                    "schemas": [USER],
                    "userName": format!("user{i:02}@example.com"),
                    "externalId": format!("ext{i}"),
                    "title": if i % 2 == 0 { "Engineer" } else { "Manager" },
                    "emails": [{"type": "work", "value": format!("u{i}@work.example.com")}],
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = s
        .get(&format!(
            "/Users?filter={}",
            q("userName eq \"USER07@example.com\"")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["userName"], "user07@example.com");
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );

    let r = s
        .get(&format!(
            "/Users?filter={}",
            q("userName eq \"nobody-4f1c@example.com\"")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["Resources"], json!([]));

    let r = s
        .get(&format!(
            "/Users?filter={}&startIndex=3&count=4&sortBy=userName&sortOrder=descending",
            q("title eq \"engineer\" and emails[type eq \"work\" and value co \"@work.\"]")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["totalResults"], 13);
    assert_eq!(r.body["startIndex"], 3);
    assert_eq!(r.body["itemsPerPage"], 4);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["userName"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "user20@example.com",
            "user18@example.com",
            "user16@example.com",
            "user14@example.com"
        ]
    );

    let r = s
        .get(&format!(
            "/Users?filter={}&attributes=userName",
            q("externalId eq \"ext3\"")
        ))
        .await;
    let u = &r.body["Resources"][0];
    assert_eq!(u["userName"], "user03@example.com");
    assert!(u.get("emails").is_none() && u.get("title").is_none());
    assert!(u.get("id").is_some());

    // A prefix filter is answered from the userName index as a range, case-insensitively.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            q("userName sw \"USER1\" and title pr")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 10, "{}", r.body);
    assert_eq!(r.body["Resources"][0]["userName"], "user10@example.com");

    let r = s.get("/Users?count=10").await;
    assert_eq!(r.body["totalResults"], 25);
    assert_eq!(r.body["itemsPerPage"], 10);

    let r = s.get(&format!("/Users?filter={}", q("userName eq"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidFilter"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_members_and_derived_user_groups() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let g = s.create_group("Sales").await;

    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "Add", "path": "members", "value": [{"value": a}, {"value": b}]}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["members"].as_array().map(Vec::len), Some(2));

    let r = s.get(&format!("/Users/{a}")).await;
    assert_eq!(r.body["groups"][0]["value"], g.as_str());
    assert_eq!(r.body["groups"][0]["display"], "Sales");

    let r = s
        .get(&format!(
            "/Users?filter={}",
            q("groups[display eq \"sales\"]")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 2, "{}", r.body);

    let r = s
        .get(&format!(
            "/Groups?filter={}&excludedAttributes=members",
            q("displayName eq \"SALES\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());

    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "Remove", "path": format!("members[value eq \"{a}\"]")}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["members"],
        json!([{"value": b, "type": "User", "$ref": format!("{}/Users/{b}", s.base)}])
    );

    // Deleting a user removes its memberships.
    assert_eq!(
        s.delete(&format!("/Users/{b}")).await.status,
        StatusCode::NO_CONTENT
    );
    let r = s.get(&format!("/Groups/{g}")).await;
    assert!(
        r.body.get("members").is_none_or(|m| m == &json!([])),
        "{}",
        r.body
    );

    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidValue"));

    assert_eq!(
        s.delete(&format!("/Groups/{g}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&format!("/Groups/{g}")).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_writes() {
    let s = TestServer::start().await;
    let id = s.create_user("etag@example.com").await;
    let r = s
        .raw(
            s.client
                .patch(s.url(&format!("/Users/{id}")))
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json")
                .header("if-match", "W/\"999\"")
                .body(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_scim_error(&r.body, "412", None);
    let r = s
        .raw(
            s.client
                .patch(s.url(&format!("/Users/{id}")))
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json")
                .header("if-match", "W/\"1\"")
                .body(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_scim_errors() {
    let s = TestServer::start_with("").await;
    let post = |body: Vec<u8>, ct: &str| {
        s.client
            .post(s.url("/Users"))
            .bearer_auth(TOKEN)
            .header("content-type", ct.to_string())
            .body(body)
    };
    let r = s
        .raw(post(b"{not json".to_vec(), "application/scim+json"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidSyntax"));

    let r = s.raw(post(b"{}".to_vec(), "text/plain")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_scim_error(&r.body, "415", None);

    // A body over the limit is refused from its declared length, before it is sent: the
    // client reads the answer instead of pushing 2 MiB into a closed connection.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
            2 * 1024 * 1024
        );
        conn.write_all(head.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut buf),
        )
        .await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_scim_error(&serde_json::from_str(body).unwrap_or_default(), "413", None);

    let r = s
        .raw(post(
            json!({"schemas": [USER], "userName": 42})
                .to_string()
                .into_bytes(),
            "application/json; charset=utf-8",
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&r.body, "400", Some("invalidValue"));

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = s
        .raw(post(deep.into_bytes(), "application/scim+json"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let id = s.create_user("patchme@example.com").await;
    for (ops, scim_type) in [
        (
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": [PATCH], "Operations": [{"op": "remove"}]}),
            "noTarget",
        ),
        (
            json!({"schemas": [PATCH], "Operations": [{"op": "jump", "path": "title"}]}),
            "invalidSyntax",
        ),
    ] {
        let r = s.patch(&format!("/Users/{id}"), ops.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ops}: {}", r.body);
        assert_scim_error(&r.body, "400", Some(scim_type));
    }
    // Nothing of the failed requests was stored.
    let r = s.get("/Users").await;
    assert_eq!(r.body["totalResults"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_describes_what_is_supported() {
    let s = TestServer::start().await;
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["bulk"]["supported"], false);
    assert_eq!(r.body["filter"]["maxResults"], 1000);
    let r = s.get("/ResourceTypes").await;
    assert_eq!(r.body["totalResults"], 2);
    let r = s.get("/Schemas").await;
    let ids: Vec<&str> = r.body["Resources"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert!(ids.contains(&USER) && ids.contains(&GROUP) && ids.contains(&ENTERPRISE));
    let r = s.get(&format!("/Schemas/{ENTERPRISE}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.get("/Schemas/urn:nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/Nope").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_durable() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.create_user(&format!("c{t}-{i}@example.com")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let conn = rusqlite::Connection::open(s.db_path()).expect("open");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 400);
}
