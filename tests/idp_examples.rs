//! The requests Microsoft Entra ID and Okta really send, replayed in the order the IdPs send
//! them, against the real server on loopback (fixtures: `tests/fixtures/idp_examples.md`).
//!
//! Request bodies are copied from the vendors' documents, quirks included; only the ids the
//! documents invent are replaced by the ids the server handed out earlier in the same test.
//! Each test names the fixture (ENTRA-xx, OKTA-xx, OKTA-RS-xx) it replays.
//!
//! Deliberate deviations from the fixtures' expected responses (our design decisions, see
//! `design.md`, "SCIM front end"):
//! * a successful PATCH (users and groups) answers 200 with the full resource, where Entra's
//!   group examples show 204 (RFC 7644 allows both; Entra and Okta accept both);
//! * Entra's non-RFC forms are accepted: the ADSCIM schema URN on group create, remove of
//!   members by a `value` array, a bare `manager` path with a string or one-element array,
//!   top-level `null` attributes (treated as unassigned), booleans as strings.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{q, Reply, TestServer, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ADSCIM_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every SCIM response carries `Content-Type: application/scim+json` (MS-LEARN general rules).
#[track_caller]
fn assert_scim_content_type(r: &Reply) {
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/scim+json"),
        "content-type {ct:?} for {} {}",
        r.status,
        r.body
    );
}

#[track_caller]
fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_scim_content_type(r);
    assert_eq!(r.body["schemas"], json!([ERROR]), "{}", r.body);
    // RFC 7644 §3.12: `status` is a string (Okta's doc prints an integer; that is a doc quirk).
    assert_eq!(r.body["status"], json!(status.as_str()), "{}", r.body);
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{}", r.body);
    }
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "Okta's spec test requires detail: {}",
        r.body
    );
}

/// A ListResponse as both IdPs read it: 200, the ListResponse schema, integer
/// `totalResults`/`startIndex`/`itemsPerPage`, and `Resources` always present.
#[track_caller]
fn assert_list(r: &Reply, total: u64) -> &Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_scim_content_type(r);
    assert_eq!(r.body["schemas"], json!([LIST]), "{}", r.body);
    assert_eq!(r.body["totalResults"].as_u64(), Some(total), "{}", r.body);
    assert!(r.body["startIndex"].is_u64(), "{}", r.body);
    assert!(r.body["itemsPerPage"].is_u64(), "{}", r.body);
    // RFC 7644 §3.4.2: itemsPerPage is the number of resources in this page (Entra's doc
    // example prints its page size, 20, for a one-element page; Entra does not rely on it).
    let resources = r.body["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("Resources must be an array, even when empty: {}", r.body));
    assert_eq!(
        r.body["itemsPerPage"].as_u64(),
        Some(resources.len() as u64),
        "{}",
        r.body
    );
    resources
}

/// The id of a freshly created resource, with the checks every create shares.
#[track_caller]
fn created_id(r: &Reply, s: &TestServer, resource_type: &str) -> String {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_scim_content_type(r);
    let id = r.body["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("created resource has no id: {}", r.body))
        .to_string();
    assert_resource_meta(&r.body, s, resource_type, &id);
    let location = r.headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(
        location,
        r.body["meta"]["location"].as_str(),
        "Location header names the new resource"
    );
    id
}

#[track_caller]
fn assert_resource_meta(body: &Value, s: &TestServer, resource_type: &str, id: &str) {
    assert_eq!(body["id"], id, "{body}");
    let core = if resource_type == "User" { USER } else { GROUP };
    assert!(
        body["schemas"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == core)),
        "schemas must contain {core}: {body}"
    );
    assert_eq!(body["meta"]["resourceType"], resource_type, "{body}");
    assert_eq!(
        body["meta"]["location"],
        format!("{}/{resource_type}s/{id}", s.base).as_str(),
        "{body}"
    );
    assert!(body["meta"]["created"].is_string(), "{body}");
    assert!(body["meta"]["lastModified"].is_string(), "{body}");
}

/// A GET of one resource that must exist.
async fn get_ok(s: &TestServer, path: &str) -> Value {
    let r = s.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
    assert_scim_content_type(&r);
    r.body
}

/// A PATCH that must succeed: 200 with the full resource (our decision; 204 is also RFC).
async fn patch_ok(s: &TestServer, path: &str, body: Value) -> Value {
    let r = s.patch(path, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "PATCH {path} {body}: {}", r.body);
    assert_scim_content_type(&r);
    assert!(
        r.body["id"].is_string(),
        "PATCH answers the full resource: {}",
        r.body
    );
    r.body
}

#[track_caller]
fn work_email(user: &Value) -> &Value {
    user["emails"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "work"))
        .unwrap_or_else(|| panic!("no work email: {user}"))
}

/// Member ids of a group, sorted, failing on duplicates.
#[track_caller]
fn member_ids(group: &Value) -> Vec<String> {
    let list = match group.get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => panic!("members is not an array: {other}"),
    };
    let mut ids: Vec<String> = list
        .iter()
        .map(|m| m["value"].as_str().expect("member value").to_string())
        .collect();
    ids.sort();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate members: {group}");
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn user_filter(attr: &str, value: &str) -> String {
    format!("/Users?filter={}", q(&format!("{attr} eq \"{value}\"")))
}

/// Fails if `needle` appears in any text or blob cell of any table in the database.
#[track_caller]
fn assert_not_stored(s: &TestServer, needle: &str) {
    let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("table names");
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                let text = match row.get_ref(i).expect("cell") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => continue,
                };
                assert!(
                    !text.contains(needle),
                    "{needle:?} is stored in table {table}"
                );
            }
        }
    }
}

/// Fails if the JSON holds a `null` anywhere ("If a value isn't present, don't send null").
fn assert_no_nulls(v: &Value, at: &str) {
    match v {
        Value::Null => panic!("null value at {at}"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_no_nulls(x, &format!("{at}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| assert_no_nulls(x, &format!("{at}.{k}"))),
        _ => {}
    }
}

/// ENTRA-01's request body with the given userName/externalId/work email.
fn entra_user(user_name: &str, external_id: &str, email: &str) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails": [{
            "primary": true,
            "type": "work",
            "value": email
        }],
        "meta": {
            "resourceType": "User"
        },
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName"
        },
        "roles": []
    })
}

async fn create_entra_user(s: &TestServer, user_name: &str) -> String {
    let r = s
        .post(
            "/Users",
            entra_user(
                user_name,
                &format!("ext-{user_name}"),
                &format!("{user_name}@testuser.com"),
            ),
        )
        .await;
    created_id(&r, s, "User")
}

/// A request as Okta's provisioning client sends it (User-Agent, SCIM media types).
async fn okta(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut req = s
        .client
        .request(method, s.url(path))
        .bearer_auth(TOKEN)
        .header("user-agent", "Okta SCIM Client 1.0.0")
        .header("accept", "application/scim+json");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json; charset=utf-8")
            .body(b.to_string());
    }
    s.raw(req).await
}

/// Either the server supports a lenient/complex filter and answers it correctly (`check`),
/// or it refuses it clearly with 400 `invalidFilter` (fixtures ENTRA-04 variant, ENTRA-19).
/// A wrong match, a 404 or a 500 fails.
#[track_caller]
fn assert_supported_or_invalid_filter(r: &Reply, check: impl FnOnce(&Reply)) {
    match r.status {
        StatusCode::OK => check(r),
        StatusCode::BAD_REQUEST => {
            assert_scim_error(r, StatusCode::BAD_REQUEST, Some("invalidFilter"))
        }
        other => panic!("expected 200 or 400 invalidFilter, got {other}: {}", r.body),
    }
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID
// ---------------------------------------------------------------------------------------------

/// ENTRA-17 probe → 01 create → 02 get → 04 query → 05 zero results → 06/07 updates →
/// 20 add manager → 08 disable → 09 delete → 03 get-not-found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_user_lifecycle() {
    let s = TestServer::start().await;
    const NAME: &str = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee";
    const EXT: &str = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef";
    const EMAIL: &str = "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com";

    // ENTRA-17 Test Connection: a random GUID on the matching attribute → 200, empty list.
    let probe = uuid::Uuid::new_v4().to_string();
    for attr in ["userName", "externalId"] {
        let r = s.get(&user_filter(attr, &probe)).await;
        assert_eq!(assert_list(&r, 0), &Vec::<Value>::new());
    }
    // ...and with a wrong token it is 401, not an empty list.
    let r = s
        .raw(
            s.client
                .get(s.url(&user_filter("userName", &probe)))
                .bearer_auth("not-the-token"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // The manager Entra will link in ENTRA-20 is provisioned first.
    let manager = create_entra_user(&s, "manager.user").await;

    // ENTRA-01 Create User (read-only meta, empty roles and a bare enterprise URN accepted).
    let r = s.post("/Users", entra_user(NAME, EXT, EMAIL)).await;
    let id = created_id(&r, &s, "User");
    assert_eq!(r.body["externalId"], EXT);
    assert_eq!(r.body["userName"], NAME);
    assert_eq!(r.body["active"], true);
    assert_eq!(
        r.body["name"],
        json!({"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"})
    );
    assert_eq!(
        r.body["emails"],
        json!([{"value": EMAIL, "type": "work", "primary": true}])
    );
    assert!(r.body.get("password").is_none());
    let created = r.body["meta"]["created"].clone();

    // A second create with the same userName is a 409 (cf. OKTA-RS-07).
    let r = s.post("/Users", entra_user(NAME, "other-ext", EMAIL)).await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));

    // ENTRA-02 Get User.
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_resource_meta(&u, &s, "User", &id);
    assert_eq!(u["userName"], NAME);
    assert_eq!(u["externalId"], EXT);
    assert_eq!(u["active"], true);
    assert_eq!(u["name"]["familyName"], "familyName");
    assert_eq!(u["name"]["givenName"], "givenName");
    assert_eq!(
        u["emails"],
        json!([{"value": EMAIL, "type": "work", "primary": true}])
    );
    assert_eq!(u["meta"]["created"], created);

    // ENTRA-04 Get User by query (percent-encoded, and with '+' for spaces).
    let r = s.get(&user_filter("userName", NAME)).await;
    let res = assert_list(&r, 1);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(res[0]["id"], id.as_str());
    assert_eq!(res[0]["userName"], NAME);
    assert_eq!(res[0]["meta"]["resourceType"], "User");
    let r = s
        .get(&format!("/Users?filter=userName+eq+%22{NAME}%22"))
        .await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id.as_str());
    // ENTRA-04 variant: Entra's default matching attribute is externalId.
    let r = s.get(&user_filter("externalId", EXT)).await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id.as_str());

    // ENTRA-05 zero results: 200 (never 404), totalResults 0, Resources [].
    let r = s.get(&user_filter("userName", "non-existent user")).await;
    assert!(assert_list(&r, 0).is_empty());
    assert_eq!(r.body["startIndex"], 1);

    // ENTRA-06 Update User [multi-valued]: value-path filter + sub-attribute, "Replace".
    let body = patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                    {
                    "op": "Replace",
                    "path": "emails[type eq \"work\"].value",
                    "value": "updatedEmail@microsoft.com"
                    },
                    {
                    "op": "Replace",
                    "path": "name.familyName",
                    "value": "updatedFamilyName"
                    }
            ]
        }),
    )
    .await;
    assert_eq!(body["name"]["familyName"], "updatedFamilyName");
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    // Only the work email's value changes; type and primary stay; no element is added.
    assert_eq!(
        u["emails"],
        json!([{"value": "updatedEmail@microsoft.com", "type": "work", "primary": true}])
    );
    assert_eq!(u["name"]["familyName"], "updatedFamilyName");
    assert_eq!(u["name"]["givenName"], "givenName");
    assert_eq!(u["userName"], NAME);

    // ENTRA-07 Update User [single-valued]: rename.
    const NEW_NAME: &str = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com";
    let body = patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Replace",
                "path": "userName",
                "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
            }]
        }),
    )
    .await;
    assert_eq!(body["userName"], NEW_NAME);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["externalId"], EXT);
    assert_eq!(body["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(body["meta"]["created"], created);
    let r = s.get(&user_filter("userName", NEW_NAME)).await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id.as_str());
    let r = s.get(&user_filter("userName", NAME)).await;
    assert_list(&r, 0);
    // Renaming onto a taken userName is 409 uniqueness.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "Replace", "path": "userName", "value": "manager.user"}
            ]}),
        )
        .await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));

    // ENTRA-20 Add manager: bare `manager` path, value an array of one {$ref, value}.
    patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
            "schemas":
            [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":
            [
              {
                "op":"Add",
                "path":"manager",
                "value":
                  [
                    {
                      "$ref": format!("http://.../scim/Users/{manager}"),
                      "value": manager}]}]}),
    )
    .await;
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_eq!(u[ENTERPRISE]["manager"]["value"], manager.as_str(), "{u}");
    assert!(
        u.get("manager").is_none(),
        "no stray top-level manager: {u}"
    );

    // ENTRA-08 Disable User (Operations before schemas, boolean value).
    let body = patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
            "Operations": [
                {
                    "op": "Replace",
                    "path": "active",
                    "value": false
                }
            ],
            "schemas": [
                "urn:ietf:params:scim:api:messages:2.0:PatchOp"
            ]
        }),
    )
    .await;
    assert_eq!(body["active"], false);
    assert_eq!(body["meta"]["resourceType"], "User");
    // Soft-deleted: still readable by id and by filter.
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_eq!(u["active"], false);
    assert_eq!(u[ENTERPRISE]["manager"]["value"], manager.as_str());
    let r = s.get(&user_filter("userName", NEW_NAME)).await;
    let res = assert_list(&r, 1);
    assert_eq!(res[0]["id"], id.as_str());
    assert_eq!(res[0]["active"], false);
    // Re-enabling works.
    let body = patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": true}]}),
    )
    .await;
    assert_eq!(body["active"], true);

    // ENTRA-09 Delete User: 204 with an empty body.
    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null, "204 has no body");

    // ENTRA-03 Get User (not found): 404 SCIM error with the string status.
    let r = s.get(&format!("/Users/{id}")).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let r = s.delete(&format!("/Users/{id}")).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let r = s.get(&user_filter("userName", NEW_NAME)).await;
    assert_list(&r, 0);
    // The doc's literal id never existed either.
    let r = s.get("/Users/5171a35d82074e068ce2").await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    // The manager is untouched.
    get_ok(&s, &format!("/Users/{manager}")).await;
    s.stop().await;
}

/// ENTRA-20 and the other manager forms Entra sends (bare path with an array, a bare id
/// string, the RFC object form), the URN-qualified manager filter, and removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_manager_forms() {
    let s = TestServer::start().await;
    let m1 = create_entra_user(&s, "boss.one").await;
    let m2 = create_entra_user(&s, "boss.two").await;
    let u = create_entra_user(&s, "report").await;
    let path = format!("/Users/{u}");
    let manager_of = |v: &Value| v[ENTERPRISE]["manager"]["value"].clone();

    // ENTRA-20 exactly as printed: Add, bare path, one-element array.
    let body = patch_ok(
        &s,
        &path,
        json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "manager", "value": [
            {"$ref": format!("http://.../scim/Users/{m1}"), "value": m1}
        ]}]}),
    )
    .await;
    assert_eq!(manager_of(&body), json!(m1), "{body}");
    assert_eq!(manager_of(&get_ok(&s, &path).await), json!(m1));

    // Bare id string as the value (design: "manager replaced with a bare id string").
    patch_ok(
        &s,
        &path,
        json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "manager", "value": m2}]}),
    )
    .await;
    let got = get_ok(&s, &path).await;
    assert_eq!(manager_of(&got), json!(m2), "{got}");
    assert!(got.get("manager").is_none(), "{got}");

    // {"value": id} object on the URN-qualified path (the RFC form).
    patch_ok(
        &s,
        &path,
        json!({"schemas": [PATCH], "Operations": [{"op": "replace",
            "path": format!("{ENTERPRISE}:manager"), "value": {"value": m1}}]}),
    )
    .await;
    assert_eq!(manager_of(&get_ok(&s, &path).await), json!(m1));

    // The URN-qualified sub-attribute filter is part of the supported grammar.
    let f = format!("id eq \"{u}\" and {ENTERPRISE}:manager.value eq \"{m1}\"");
    let r = s
        .get(&format!("/Users?filter={}&attributes=id", q(&f)))
        .await;
    let res = assert_list(&r, 1);
    assert_eq!(res[0]["id"], u.as_str());
    assert!(
        res[0].get("userName").is_none(),
        "attributes=id: {}",
        res[0]
    );
    let f = format!("id eq \"{u}\" and {ENTERPRISE}:manager.value eq \"{m2}\"");
    let r = s
        .get(&format!("/Users?filter={}&attributes=id", q(&f)))
        .await;
    assert_list(&r, 0);

    // Remove manager. NOT from Entra documentation (no source shows it): RFC 7644 form.
    patch_ok(
        &s,
        &path,
        json!({"schemas": [PATCH], "Operations": [{"op": "Remove",
            "path": format!("{ENTERPRISE}:manager")}]}),
    )
    .await;
    let got = get_ok(&s, &path).await;
    assert!(
        got.get(ENTERPRISE)
            .and_then(|e| e.get("manager"))
            .is_none_or(Value::is_null),
        "manager removed: {got}"
    );
    assert!(got.get(ENTERPRISE).is_none_or(|e| !e.is_null()), "{got}");
    s.stop().await;
}

/// ENTRA-19 (MS-LEARN-2018 Example 4): Entra checks a manager link with
/// `id eq … and manager eq …&attributes=id`. The manager is set the way Entra sets it
/// (ENTRA-20, a second request after the create).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_manager_reference_query() {
    let s = TestServer::start().await;
    let m1 = create_entra_user(&s, "boss.one").await;
    let m2 = create_entra_user(&s, "boss.two").await;
    let u = create_entra_user(&s, "report").await;
    let body = patch_ok(
        &s,
        &format!("/Users/{u}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "manager", "value": [
            {"$ref": format!("http://.../scim/Users/{m1}"), "value": m1}
        ]}]}),
    )
    .await;
    assert_eq!(body[ENTERPRISE]["manager"]["value"], m1.as_str(), "{body}");

    // A bare `manager` compares on manager.value (as PATCH resolves a bare `manager` path).
    // Supported → exactly the user carrying only its id; else a clear 400 invalidFilter.
    for (quoted, manager, expect) in [
        (true, &m1, 1u64),
        (true, &m2, 0),
        (false, &m1, 1),
        (false, &m2, 0),
    ] {
        let f = if quoted {
            format!("id eq \"{u}\" and manager eq \"{manager}\"")
        } else {
            // As printed in the source: unquoted values (not RFC 7644).
            format!("id eq {u} and manager eq {manager}")
        };
        let r = s
            .get(&format!("/Users?filter={}&attributes=id", q(&f)))
            .await;
        assert_supported_or_invalid_filter(&r, |r| {
            let res = assert_list(r, expect);
            if expect == 1 {
                assert_eq!(res[0]["id"], u.as_str(), "{f}");
                assert!(res[0].get("userName").is_none(), "{}", res[0]);
            }
        });
    }

    s.stop().await;
}

/// ENTRA-21: the old-style provisioning payload with nulls, the malformed enterprise URN and
/// top-level enterprise attributes; then the ENTRA-04 variant's unquoted externalId query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_provision_with_nulls() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users",
            json!({
               "schemas":
               [
                 "urn:ietf:params:scim:schemas:core:2.0:User",
                 "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
               "externalId":"jyoung",
               "userName":"jyoung@testuser.com",
               "active":true,
               "addresses":null,
               "displayName":"Joy Young",
               "emails": [
                 {
                   "type":"work",
                   "value":"jyoung@Contoso.com",
                   "primary":true}],
               "meta": {
                 "resourceType":"User"},
                "name":{
                 "familyName":"Young",
                 "givenName":"Joy"},
               "phoneNumbers":null,
               "preferredLanguage":null,
               "title":null,
               "department":null,
               "manager":null}),
        )
        .await;
    // Decision: top-level nulls are unassigned, the unknown (malformed) URN is ignored → 201.
    let id = created_id(&r, &s, "User");
    for body in [r.body.clone(), get_ok(&s, &format!("/Users/{id}")).await] {
        assert_eq!(body["userName"], "jyoung@testuser.com");
        assert_eq!(body["externalId"], "jyoung");
        assert_eq!(body["displayName"], "Joy Young");
        assert_eq!(body["active"], true);
        assert_eq!(
            body["name"],
            json!({"familyName": "Young", "givenName": "Joy"})
        );
        // Stored as sent, no case folding of the email.
        assert_eq!(
            body["emails"],
            json!([{"type": "work", "value": "jyoung@Contoso.com", "primary": true}])
        );
        for unassigned in [
            "addresses",
            "phoneNumbers",
            "preferredLanguage",
            "title",
            "department",
            "manager",
        ] {
            assert!(
                body.get(unassigned).is_none(),
                "{unassigned} must be unassigned, not stored: {body}"
            );
        }
        assert_no_nulls(&body, "$");
    }

    // ENTRA-04 quoted externalId query, and the unquoted form MS-LEARN prints.
    let r = s.get(&user_filter("externalId", "jyoung")).await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id.as_str());
    let r = s
        .get(&format!("/Users?filter={}", q("externalId eq jyoung")))
        .await;
    assert_supported_or_invalid_filter(&r, |r| {
        assert_eq!(assert_list(r, 1)[0]["id"], id.as_str());
    });
    s.stop().await;
}

/// ENTRA-10..16 with real members: create (ADSCIM URN) → get without members → query by
/// displayName → rename → add members → remove by value array → delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_group_lifecycle() {
    let s = TestServer::start().await;
    let a = create_entra_user(&s, "member.a").await;
    let b = create_entra_user(&s, "member.b").await;

    // ENTRA-10 Create Group with the ADSCIM schema URN and no members.
    let r = s
        .post(
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
                "meta": {
                    "resourceType": "Group"
                }
            }),
        )
        .await;
    let g = created_id(&r, &s, "Group");
    assert_eq!(r.body["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    assert_eq!(r.body["displayName"], "displayName");
    assert!(member_ids(&r.body).is_empty(), "created empty: {}", r.body);
    // The 2018 copy of this example also sent "id" and "members": []: a client id is ignored.
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP, ADSCIM_GROUP], "id": "client-chosen-id",
                   "displayName": "second group", "members": []}),
        )
        .await;
    let g2 = created_id(&r, &s, "Group");
    assert_ne!(g2, "client-chosen-id");
    // Not asserted: a second POST with the same displayName → 409. The fixture derives it
    // from Entra matching groups on displayName, but RFC 7643 §4.2 gives Group displayName
    // uniqueness "none" and the design does not make it unique (open question for the lead).

    // ENTRA-11 Get Group with excludedAttributes=members (before any members).
    let r = s
        .get(&format!("/Groups/{g}?excludedAttributes=members"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_resource_meta(&r.body, &s, "Group", &g);
    assert_eq!(r.body["displayName"], "displayName");
    assert!(r.body.get("members").is_none(), "{}", r.body);

    // ENTRA-12 Get Group by displayName.
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            q("displayName eq \"displayName\"")
        ))
        .await;
    let res = assert_list(&r, 1);
    assert_eq!(res[0]["id"], g.as_str());
    assert_eq!(res[0]["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    assert!(res[0].get("members").is_none());
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            q("displayName eq \"no such group\"")
        ))
        .await;
    assert_list(&r, 0);

    // ENTRA-13 Update Group [non-member attributes]. Doc: 204; our decision: 200 + resource.
    const RENAMED: &str = "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName";
    let body = patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Replace",
                "path": "displayName",
                "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
            }]
        }),
    )
    .await;
    assert_eq!(body["displayName"], RENAMED);
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(got["displayName"], RENAMED);
    assert_eq!(got["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            q(&format!("displayName eq \"{RENAMED}\""))
        ))
        .await;
    assert_eq!(assert_list(&r, 1)[0]["id"], g.as_str());
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            q("displayName eq \"displayName\"")
        ))
        .await;
    assert_list(&r, 0);

    // ENTRA-14 Update Group [add members] with "$ref": null. Doc: 204; ours: 200.
    let add = |id: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Add",
                "path": "members",
                "value": [{
                    "$ref": null,
                    "value": id
                }]
            }]
        })
    };
    patch_ok(&s, &format!("/Groups/{g}"), add(&a)).await;
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(member_ids(&got), vec![a.clone()]);
    // Idempotent: the same add again keeps one entry.
    patch_ok(&s, &format!("/Groups/{g}"), add(&a)).await;
    patch_ok(&s, &format!("/Groups/{g}"), add(&b)).await;
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(member_ids(&got), sorted(&[&a, &b]));
    // The member's derived groups name the group.
    let ua = get_ok(&s, &format!("/Users/{a}")).await;
    assert!(
        ua["groups"]
            .as_array()
            .is_some_and(|gs| gs.iter().any(|x| x["value"] == g.as_str())),
        "{ua}"
    );

    // ENTRA-11 again, now that the group has members: they stay excluded.
    let r = s
        .get(&format!("/Groups/{g}?excludedAttributes=members"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["displayName"], RENAMED);
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            q(&format!("displayName eq \"{RENAMED}\""))
        ))
        .await;
    assert!(assert_list(&r, 1)[0].get("members").is_none());

    // ENTRA-15 Update Group [remove members] with a value array (legacy form): only the
    // listed member goes. Doc: 204; ours: 200.
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Remove",
                "path": "members",
                "value": [{
                    "$ref": null,
                    "value": a
                }]
            }]
        }),
    )
    .await;
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(member_ids(&got), vec![b.clone()]);
    assert_eq!(got["displayName"], RENAMED);

    // ENTRA-16 Delete Group: 204, then 404; the member users remain.
    let r = s.delete(&format!("/Groups/{g}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    let r = s.get(&format!("/Groups/{g}")).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    for user in [&a, &b] {
        let u = get_ok(&s, &format!("/Users/{user}")).await;
        assert!(
            u.get("groups")
                .and_then(Value::as_array)
                .is_none_or(|gs| gs.iter().all(|x| x["value"] != g.as_str())),
            "deleted group still listed: {u}"
        );
    }
    get_ok(&s, &format!("/Groups/{g2}")).await;
    s.stop().await;
}

/// ENTRA-C1: disable with the string "False" (default client) and with a boolean (flagged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_compat_c1_active_as_string_or_boolean() {
    let s = TestServer::start().await;
    let id = create_entra_user(&s, "c1.user").await;
    let path = format!("/Users/{id}");

    let body = patch_ok(
        &s,
        &path,
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "Replace",
                  "path": "active",
                  "value": "False"
              }
          ]
        }),
    )
    .await;
    // A boolean attribute stays a JSON boolean, not the string "False".
    assert_eq!(body["active"], json!(false), "{body}");
    assert_eq!(get_ok(&s, &path).await["active"], json!(false));

    // The same quirk the other way round ("True").
    patch_ok(
        &s,
        &path,
        json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}),
    )
    .await;
    assert_eq!(get_ok(&s, &path).await["active"], json!(true));

    // With the aadOptscim062020 flag: lowercase op, boolean value.
    patch_ok(
        &s,
        &path,
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "replace",
                  "path": "active",
                  "value": false
              }
          ]
        }),
    )
    .await;
    assert_eq!(get_ok(&s, &path).await["active"], json!(false));
    // A disabled user is still found by filter, with active false.
    let r = s.get(&user_filter("userName", "c1.user")).await;
    assert_eq!(assert_list(&r, 1)[0]["active"], json!(false));
    s.stop().await;
}

/// ENTRA-C2 (add on a single-valued attribute) and ENTRA-C3 (several attributes, including
/// the flagged form's no-path value with dotted and URN-qualified keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_compat_c2_c3_attribute_updates() {
    let s = TestServer::start().await;

    // C2 without the flag ("Add") and with it ("add"), each on its own user.
    for (user, op) in [("c2.unflagged", "Add"), ("c2.flagged", "add")] {
        let id = create_entra_user(&s, user).await;
        patch_ok(
            &s,
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": op, "path": "nickName", "value": "Babs"}]}),
        )
        .await;
        assert_eq!(
            get_ok(&s, &format!("/Users/{id}")).await["nickName"],
            "Babs"
        );
        // add on a single-valued attribute replaces it.
        patch_ok(
            &s,
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": op, "path": "nickName", "value": "Barbara"}]}),
        )
        .await;
        assert_eq!(
            get_ok(&s, &format!("/Users/{id}")).await["nickName"],
            "Barbara"
        );
    }

    // C3 without the flag.
    let id = create_entra_user(&s, "c3.unflagged").await;
    patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "Replace",
                  "path": "displayName",
                  "value": "Pvlo"
              },
              {
                  "op": "Replace",
                  "path": "emails[type eq \"work\"].value",
                  "value": "TestBcwqnm@test.microsoft.com"
              },
              {
                  "op": "Replace",
                  "path": "name.givenName",
                  "value": "Gtfd"
              },
              {
                  "op": "Replace",
                  "path": "name.familyName",
                  "value": "Pkqf"
              },
              {
                  "op": "Replace",
                  "path": "externalId",
                  "value": "Eqpj"
              },
              {
                  "op": "Replace",
                  "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                  "value": "Eqpj"
              }
          ]
        }),
    )
    .await;
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_eq!(u["displayName"], "Pvlo");
    assert_eq!(
        u["emails"],
        json!([{"value": "TestBcwqnm@test.microsoft.com", "type": "work", "primary": true}])
    );
    assert_eq!(u["name"]["givenName"], "Gtfd");
    assert_eq!(u["name"]["familyName"], "Pkqf");
    assert_eq!(
        u["name"]["formatted"], "givenName familyName",
        "not recomputed"
    );
    assert_eq!(u["externalId"], "Eqpj");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "Eqpj");
    let r = s.get(&user_filter("externalId", "Eqpj")).await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id.as_str());

    // C3 with the flag: the second op has no path; its keys are attribute paths.
    let id = create_entra_user(&s, "c3.flagged").await;
    patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "replace",
                  "path": "emails[type eq \"work\"].value",
                  "value": "TestMhvaes@test.microsoft.com"
              },
              {
                  "op": "replace",
                  "value": {
                      "displayName": "Bjfe",
                      "name.givenName": "Kkom",
                      "name.familyName": "Unua",
                      "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"
                  }
              }
          ]
        }),
    )
    .await;
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_eq!(u["displayName"], "Bjfe");
    assert_eq!(work_email(&u)["value"], "TestMhvaes@test.microsoft.com");
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(1), "{u}");
    assert_eq!(u["name"]["givenName"], "Kkom");
    assert_eq!(u["name"]["familyName"], "Unua");
    // The dotted key sets a sub-attribute; the rest of `name` is kept.
    assert_eq!(u["name"]["formatted"], "givenName familyName", "{u}");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "Aklq");
    assert!(
        u.get("name.givenName").is_none(),
        "dotted key stored verbatim: {u}"
    );
    assert!(u.get("name.familyName").is_none(), "{u}");
    assert!(
        u.get(format!("{ENTERPRISE}:employeeNumber")).is_none(),
        "URN-qualified key stored verbatim: {u}"
    );
    assert!(
        u["schemas"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == ENTERPRISE)),
        "an enterprise attribute is set, so its schema is listed: {u}"
    );

    // Design: a value-path into a multi-valued attribute that has no match yet creates the
    // element with that type (Entra adds a work email / work address this way).
    let id = s.create_user("no.email@example.com").await;
    patch_ok(
        &s,
        &format!("/Users/{id}"),
        json!({"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "first@work.example.com"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"}
        ]}),
    )
    .await;
    let u = get_ok(&s, &format!("/Users/{id}")).await;
    assert_eq!(
        u["emails"],
        json!([{"type": "work", "value": "first@work.example.com"}])
    );
    assert_eq!(
        u["addresses"],
        json!([{"type": "work", "formatted": "1 Main St"}])
    );
    s.stop().await;
}

/// ENTRA-C4: remove one member, by a value array (default client) and by the RFC filter path
/// (flagged client). Only that member goes, each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_compat_c4_remove_member_both_forms() {
    let s = TestServer::start().await;
    let u1 = create_entra_user(&s, "c4.one").await;
    let u2 = create_entra_user(&s, "c4.two").await;
    let u3 = create_entra_user(&s, "c4.three").await;
    let g = s.create_group("C4 group").await;
    // Entra adds members in batches.
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members",
            "value": [{"value": u1}, {"value": u2}, {"value": u3}]}]}),
    )
    .await;
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&u1, &u2, &u3])
    );

    // Without the flag.
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "Remove",
                  "path": "members",
                  "value": [
                      {
                          "value": u1
                      }
                  ]
              }
          ]
        }),
    )
    .await;
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&u2, &u3])
    );

    // With the flag.
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({
          "schemas": [
              "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
              {
                  "op": "remove",
                  "path": format!("members[value eq \"{u2}\"]")
              }
          ]
        }),
    )
    .await;
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        vec![u3.clone()]
    );
    // The removed users are untouched.
    get_ok(&s, &format!("/Users/{u1}")).await;
    get_ok(&s, &format!("/Users/{u2}")).await;
    s.stop().await;
}

/// ENTRA-18 and the MS Postman discovery checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_schema_discovery() {
    let s = TestServer::start().await;
    let r = s.get("/Schemas").await;
    let res = assert_list(&r, 3).clone();
    let ids: BTreeSet<&str> = res.iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([USER, GROUP, ENTERPRISE]));
    assert!(
        r.body.to_string().contains("User Account"),
        "MS Postman looks for \"User Account\""
    );
    assert_no_nulls(&r.body, "$");
    for schema in &res {
        assert_eq!(schema["meta"]["resourceType"], "Schema", "{schema}");
        let attrs = schema["attributes"].as_array().expect("attributes");
        assert!(!attrs.is_empty());
        for a in attrs {
            for key in ["name", "type", "multiValued", "mutability", "returned"] {
                assert!(a.get(key).is_some(), "{key} missing in {a}");
            }
        }
    }
    let r = s.get("/ResourceTypes").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["Resources"][0]["endpoint"], "/Users", "{}", r.body);
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["patch"]["supported"], true);
    s.stop().await;
}

/// The Microsoft Postman collection's extras (MS-POSTMAN): capitalised attribute names, a
/// dangling manager id, projections, the `"name": "addMember"` op field, remove-all, PUT group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_postman_collection_extras() {
    let s = TestServer::start().await;
    // Attribute names are case-insensitive (RFC 7643 §2.1).
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "UserName": "UserName123",
                "Active": true,
                "DisplayName": "BobIsAmazing",
                "emails": [{"Primary": true, "type": "work", "value": "bob@example.com"}],
            }),
        )
        .await;
    let id1 = created_id(&r, &s, "User");
    let r = s.get(&user_filter("userName", "UserName123")).await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id1.as_str());
    let r = s
        .get(&format!(
            "/Users?filter={}",
            q("DisplayName eq \"BobIsAmazing\"")
        ))
        .await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id1.as_str());
    let r = s
        .get(&format!("/Users?filter={}", q("active eq true")))
        .await;
    assert_eq!(
        assert_list(&r, 1)[0]["id"],
        id1.as_str(),
        "\"Active\" was stored as active"
    );

    // Enterprise user with capitalised sub-attributes and a manager id that doesn't exist.
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "UserName222",
                "active": true,
                ENTERPRISE: {"Department": "bob", "Manager": {"Value": "SuzzyQ"}},
            }),
        )
        .await;
    let id2 = created_id(&r, &s, "User");
    let r = s
        .get(&format!(
            "/Users?filter={}",
            q(&format!("{ENTERPRISE}:department eq \"bob\""))
        ))
        .await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id2.as_str());

    // attributes=userName,emails: the body still carries the ids.
    let r = s.get("/Users?attributes=userName,emails").await;
    let res = assert_list(&r, 2);
    assert!(res.iter().any(|u| u["id"] == id1.as_str()));
    assert!(res.iter().all(|u| u.get("displayName").is_none()));

    // PATCH replace userName.
    patch_ok(
        &s,
        &format!("/Users/{id1}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "ryan3"}]}),
    )
    .await;
    assert_eq!(
        get_ok(&s, &format!("/Users/{id1}")).await["userName"],
        "ryan3"
    );

    // PUT a full user, including its id.
    let r = s
        .put(
            &format!("/Users/{id2}"),
            json!({"schemas": [USER], "id": id2, "userName": "UserNameReplaced",
                   "active": true, "displayName": "Replaced"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["userName"], "UserNameReplaced");

    // Groups: create with a member; PUT with two; add with "name": "addMember"; remove all.
    let id3 = s.create_user("id3@example.com").await;
    let id4 = s.create_user("id4@example.com").await;
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Group1DisplayName",
                   "members": [{"value": id3, "display": "VP"}]}),
        )
        .await;
    let g = created_id(&r, &s, "Group");
    assert_eq!(member_ids(&r.body), vec![id3.clone()]);
    let r = s
        .put(
            &format!("/Groups/{g}"),
            json!({"schemas": [GROUP], "displayName": "Group1DisplayName",
                   "members": [{"value": id1}, {"value": id2}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&id1, &id2])
    );
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({"schemas": [PATCH], "Operations": [{"name": "addMember", "op": "add",
            "path": "members", "value": [{"displayName": "new User", "value": id4}]}]}),
    )
    .await;
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&id1, &id2, &id4])
    );
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "remove",
            "path": format!("members[value eq \"{id4}\"]")}]}),
    )
    .await;
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&id1, &id2])
    );
    patch_ok(
        &s,
        &format!("/Groups/{g}"),
        json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]}),
    )
    .await;
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert!(member_ids(&got).is_empty(), "{got}");
    assert!(!got.to_string().contains("new User"));

    for path in [
        format!("/Users/{id1}"),
        format!("/Users/{id2}"),
        format!("/Groups/{g}"),
    ] {
        assert_eq!(
            s.delete(&path).await.status,
            StatusCode::NO_CONTENT,
            "{path}"
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Okta
// ---------------------------------------------------------------------------------------------

/// OKTA-02's request body.
fn okta_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "name": {
            "givenName": "Test",
            "familyName": "User"
        },
        "emails": [{
            "primary": true,
            "value": "test.user@okta.local",
            "type": "work"
        }],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// OKTA-01 exists? → 02 create → 03 duplicate → 04 import pages → 05 get → 06 PUT →
/// 07 deactivate (and reactivate, password sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_lifecycle() {
    let s = TestServer::start().await;

    // OKTA-01 Determine if the user exists: 200 with an empty list.
    let r = okta(
        &s,
        Method::GET,
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert!(assert_list(&r, 0).is_empty());
    assert_eq!(r.body["startIndex"], 1);

    // OKTA-02 Create the user, with password and groups: [].
    let r = okta(&s, Method::POST, "/Users", Some(okta_user())).await;
    let id = created_id(&r, &s, "User");
    assert_eq!(r.body["userName"], "test.user@okta.local");
    assert_eq!(r.body["name"]["givenName"], "Test");
    assert_eq!(r.body["name"]["familyName"], "User");
    assert_eq!(r.body["emails"][0]["value"], "test.user@okta.local");
    assert_eq!(r.body["displayName"], "Test User");
    assert_eq!(r.body["locale"], "en-US");
    assert_eq!(r.body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_eq!(r.body["active"], true);
    assert!(
        r.body.get("password").is_none(),
        "password echoed: {}",
        r.body
    );
    assert!(
        r.body.get("groups").is_none_or(|g| g == &json!([])),
        "{}",
        r.body
    );
    assert_not_stored(&s, "1mz050nq");

    // OKTA-03 Create the same user again: 409 uniqueness.
    let r = okta(&s, Method::POST, "/Users", Some(okta_user())).await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));

    // OKTA-04 Import, paged. Two more users first.
    let other1 = s.create_user("import.one@okta.local").await;
    let other2 = s.create_user("import.two@okta.local").await;
    let r = okta(&s, Method::GET, "/Users?startIndex=1&count=100", None).await;
    let all: Vec<String> = assert_list(&r, 3)
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(
        all.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([id.clone(), other1.clone(), other2.clone()])
    );
    let r = okta(&s, Method::GET, "/Users?startIndex=1&count=2", None).await;
    let page1: Vec<Value> = assert_list(&r, 3).clone();
    assert_eq!(page1.len(), 2);
    assert_eq!(r.body["startIndex"], 1);
    let r = okta(&s, Method::GET, "/Users?startIndex=3&count=2", None).await;
    let page2: Vec<Value> = assert_list(&r, 3).clone();
    assert_eq!(page2.len(), 1);
    assert_eq!(r.body["startIndex"], 3);
    let paged: Vec<String> = page1
        .iter()
        .chain(page2.iter())
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(paged, all, "pages follow the same stable order, no overlap");
    let r = okta(&s, Method::GET, "/Users?startIndex=1&count=100", None).await;
    let again: Vec<&str> = assert_list(&r, 3)
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(again, all, "order is stable across calls");

    // OKTA-05 Retrieve the user.
    let r = okta(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_scim_content_type(&r);
    assert_resource_meta(&r.body, &s, "User", &id);
    assert!(r.body.get("groups").is_none_or(Value::is_array));
    assert!(r.body.get("password").is_none());
    let created = r.body["meta"]["created"].clone();

    // OKTA-06 Update (PUT): Okta GETs, edits and PUTs the whole object with id/groups/meta.
    let r = okta(
        &s,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id,
            "userName": "test.user@okta.local",
            "name": {
                "givenName": "Another",
                "middleName": "Excited",
                "familyName": "User"
            },
            "emails": [{
                "primary": true,
                "value": "test.user@okta.local",
                "type": "work",
                "display": "test.user@okta.local"
            }],
            "active": true,
            "groups": [],
            "meta": {
                "resourceType": "User"
            }
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for body in [r.body.clone(), get_ok(&s, &format!("/Users/{id}")).await] {
        assert_resource_meta(&body, &s, "User", &id);
        assert_eq!(
            body["name"],
            json!({"givenName": "Another", "middleName": "Excited", "familyName": "User"})
        );
        assert_eq!(body["emails"][0]["display"], "test.user@okta.local");
        assert_eq!(body["active"], true);
        assert_eq!(body["meta"]["created"], created, "PUT keeps meta.created");
        // PUT replaces: what was left out is cleared.
        for cleared in ["locale", "displayName", "externalId", "password"] {
            assert!(
                body.get(cleared).is_none(),
                "{cleared} survived PUT: {body}"
            );
        }
    }
    // A PUT whose body names another id is refused (id is immutable).
    let r = okta(
        &s,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [USER], "id": other1, "userName": "test.user@okta.local"})),
    )
    .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("mutability"));

    // OKTA-07 Deactivate: replace with no path.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "replace",
                "value": {
                    "active": false
                }
            }]
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["name"]["givenName"], "Another");
    // Deactivated users stay readable by id and by filter.
    assert_eq!(get_ok(&s, &format!("/Users/{id}")).await["active"], false);
    let r = okta(
        &s,
        Method::GET,
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        None,
    )
    .await;
    let res = assert_list(&r, 1);
    assert_eq!(res[0]["id"], id.as_str());
    assert_eq!(res[0]["active"], false);
    // Reactivation, same shape.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": true}}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(get_ok(&s, &format!("/Users/{id}")).await["active"], true);
    // Password sync, same shape: accepted, never returned, never stored.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"password": "n3wSecret!x9"}}]})),
    )
    .await;
    assert!(
        r.status.is_success(),
        "password sync refused: {} {}",
        r.status,
        r.body
    );
    assert!(r.body.get("password").is_none(), "{}", r.body);
    assert!(get_ok(&s, &format!("/Users/{id}"))
        .await
        .get("password")
        .is_none());
    assert_not_stored(&s, "n3wSecret!x9");
    assert_not_stored(&s, "1mz050nq");
    s.stop().await;
}

/// OKTA-08 create → 09 list/get → 10 rename (replace {id, displayName}) → 11 remove+add in
/// one PATCH → 12 replace all members → 13 delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_group_push() {
    let s = TestServer::start().await;
    let a = s.create_user("user.a@okta.local").await;
    let b = s.create_user("test.user@okta.local").await;

    // OKTA-08 Create a group.
    let r = okta(
        &s,
        Method::POST,
        "/Groups",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Test SCIMv2",
            "members": []
        })),
    )
    .await;
    let g = created_id(&r, &s, "Group");
    assert_eq!(r.body["displayName"], "Test SCIMv2");
    assert!(member_ids(&r.body).is_empty());
    // The body is what a GET of the group returns.
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(r.body, got);

    // OKTA-09 Retrieve groups (paged) and the group.
    let r = okta(&s, Method::GET, "/Groups?startIndex=1&count=100", None).await;
    let res = assert_list(&r, 1);
    assert_eq!(res[0]["id"], g.as_str());
    assert_eq!(res[0]["displayName"], "Test SCIMv2");
    let r = okta(&s, Method::GET, &format!("/Groups/{g}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_resource_meta(&r.body, &s, "Group", &g);

    // Okta pushes a membership change as replace {id, displayName} + add members.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"id": g, "displayName": "Test SCIMv2"}},
            {"op": "add", "path": "members", "value": [{"value": a, "display": "user.a@okta.local"}]}
        ]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(member_ids(&got), vec![a.clone()]);
    assert_eq!(got["displayName"], "Test SCIMv2");

    // OKTA-10 Rename: replace, no path, the value carries the group's own id.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "replace",
                "value": {
                    "id": g,
                    "displayName": "Test SCIMv20"
                }
            }]
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], g.as_str());
    assert_eq!(r.body["displayName"], "Test SCIMv20");
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(got["displayName"], "Test SCIMv20");
    assert_eq!(member_ids(&got), vec![a.clone()], "rename keeps members");
    // Unchanged name (Okta sends it with every membership change): still a success.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"id": g, "displayName": "Test SCIMv20"}}
        ]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // OKTA-11 remove A and add B in one PATCH, applied in order.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                  "op": "remove",
                  "path": format!("members[value eq \"{a}\"]")
                },
                {
                  "op": "add",
                  "path": "members",
                  "value": [{
                      "value": b,
                      "display": "test.user@okta.local"
                }]
            }]
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        vec![b.clone()]
    );
    // The whole PATCH is atomic: a bad op at the end leaves the earlier ones unapplied.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"id": g, "displayName": "Half Applied"}},
            {"op": "remove", "path": format!("members[value eq \"{b}\"]")},
            {"op": "add", "path": "members", "value": [{"value": "no-such-user-id"}]}
        ]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(member_ids(&got), vec![b.clone()]);
    assert_eq!(got["displayName"], "Test SCIMv20");

    // OKTA-12 replace all members.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({
          "schemas": [
            "urn:ietf:params:scim:api:messages:2.0:PatchOp"
          ],
          "Operations": [
            {
              "op": "replace",
              "path": "members",
              "value": [
                {
                  "value": b,
                  "display": "test.user@okta.local"
                },
                {
                  "value": a,
                  "display": "test.user@okta.local"
                }
              ]
            }
          ]
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        sorted(&[&a, &b])
    );
    // Replace with one member drops the other.
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "members", "value": [{"value": a}]}
        ]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        member_ids(&get_ok(&s, &format!("/Groups/{g}")).await),
        vec![a.clone()]
    );
    let ua = get_ok(&s, &format!("/Users/{a}")).await;
    assert_eq!(ua["groups"][0]["value"], g.as_str(), "{ua}");
    assert_eq!(ua["groups"][0]["display"], "Test SCIMv20", "{ua}");

    // OKTA-10 (derived): an id in the value that names another resource is 400 mutability
    // and nothing changes (patch.rs documents the same rule; PUT already answers it so).
    let r = okta(
        &s,
        Method::PATCH,
        &format!("/Groups/{g}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Hijacked"}}
        ]})),
    )
    .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("mutability"));
    let got = get_ok(&s, &format!("/Groups/{g}")).await;
    assert_eq!(got["id"], g.as_str());
    assert_eq!(got["displayName"], "Test SCIMv20");
    assert_eq!(member_ids(&got), vec![a.clone()]);

    // OKTA-13 Delete the group: 204, then 404; the users remain.
    let r = okta(&s, Method::DELETE, &format!("/Groups/{g}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = okta(&s, Method::GET, &format!("/Groups/{g}"), None).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let ua = get_ok(&s, &format!("/Users/{a}")).await;
    assert!(ua.get("groups").is_none_or(|x| x == &json!([])), "{ua}");
    get_ok(&s, &format!("/Users/{b}")).await;
    s.stop().await;
}

/// Okta's Runscope "Okta SCIM 2.0 Spec Test" (OKTA-RS-00..10), as the scim2-server replay runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_spec_test() {
    let s = TestServer::start().await;
    const RANDOM_EMAIL: &str = "Runscope300Hfluaklab151@example.com";
    const RANDOM_CAPS: &str = "RUNSCOPE300HFLUAKLAB151@example.com";
    const MISSING: &str = "010101001010101011001010101011";
    let spec = |method: Method, path: &str, body: Option<Value>, ct: &str| {
        let mut req = s
            .client
            .request(method, s.url(path))
            .bearer_auth(TOKEN)
            .header("accept-charset", "utf-8")
            .header("accept", "application/scim+json")
            .header("user-agent", "OKTA SCIM Integration");
        if let Some(b) = body {
            req = req
                .header("content-type", ct.to_string())
                .body(b.to_string());
        }
        req
    };
    const SCIM_CT: &str = "application/scim+json; charset=utf-8";
    let user_fields = |u: &Value| {
        assert!(u["id"].as_str().is_some_and(|x| !x.is_empty()), "{u}");
        assert!(u["name"]["familyName"].is_string(), "{u}");
        assert!(u["name"]["givenName"].is_string(), "{u}");
        assert!(u["userName"].is_string(), "{u}");
        assert!(u["active"].is_boolean(), "{u}");
        assert!(u["emails"][0]["value"].is_string(), "{u}");
    };

    // OKTA-RS-00 setup: at least one user (design: the spec test POSTs application/json).
    let r = s
        .raw(spec(
            Method::POST,
            "/Users",
            Some(json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen@example.com","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"primary":true,"value":"bjensen@example.com","type":"work"}],"displayName":"Barbara Jensen","active":true})),
            "application/json",
        ))
        .await;
    let bjensen = created_id(&r, &s, "User");

    // OKTA-RS-01
    let r = s
        .raw(spec(
            Method::GET,
            "/Users?count=1&startIndex=1",
            None,
            SCIM_CT,
        ))
        .await;
    let res = assert_list(&r, 1);
    assert_eq!(res.len(), 1);
    user_fields(&res[0]);
    let first = res[0]["id"].as_str().expect("id").to_string();
    assert_eq!(first, bjensen);

    // OKTA-RS-02
    let r = s
        .raw(spec(Method::GET, &format!("/Users/{first}"), None, SCIM_CT))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    user_fields(&r.body);
    assert_eq!(r.body["id"], first.as_str());

    // OKTA-RS-03 (InvalidUserEmail) and OKTA-RS-05 (randomUsername): no match.
    for name in ["abcdefgh@example.com", RANDOM_EMAIL] {
        let r = s
            .raw(spec(
                Method::GET,
                &user_filter("userName", name),
                None,
                SCIM_CT,
            ))
            .await;
        assert_list(&r, 0);
    }

    // OKTA-RS-04
    let r = s
        .raw(spec(
            Method::GET,
            &format!("/Users/{MISSING}"),
            None,
            SCIM_CT,
        ))
        .await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);

    // OKTA-RS-06 create; OKTA-RS-06b read it back.
    let create = json!({
        "schemas": [USER],
        "userName": RANDOM_EMAIL,
        "name": {"givenName": "Runscope300", "familyName": "Hfluaklab151"},
        "emails": [{"primary": true, "value": RANDOM_EMAIL, "type": "work"}],
        "displayName": "Runscope300 Hfluaklab151",
        "active": true
    });
    let r = s
        .raw(spec(Method::POST, "/Users", Some(create.clone()), SCIM_CT))
        .await;
    let id_user_one = created_id(&r, &s, "User");
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["name"]["familyName"], "Hfluaklab151");
    assert_eq!(r.body["name"]["givenName"], "Runscope300");
    assert_eq!(r.body["userName"], RANDOM_EMAIL);
    assert_eq!(r.body["emails"][0]["value"], RANDOM_EMAIL);
    let r = s
        .raw(spec(
            Method::GET,
            &format!("/Users/{id_user_one}"),
            None,
            SCIM_CT,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["userName"], RANDOM_EMAIL);
    assert_eq!(r.body["name"]["familyName"], "Hfluaklab151");
    assert_eq!(r.body["name"]["givenName"], "Runscope300");

    // OKTA-RS-07 the same POST again.
    let r = s
        .raw(spec(Method::POST, "/Users", Some(create), SCIM_CT))
        .await;
    assert_scim_error(&r, StatusCode::CONFLICT, Some("uniqueness"));

    // OKTA-RS-08 userName is caseExact=false.
    let r = s
        .raw(spec(
            Method::GET,
            &user_filter("userName", RANDOM_CAPS),
            None,
            SCIM_CT,
        ))
        .await;
    assert_eq!(assert_list(&r, 1)[0]["id"], id_user_one.as_str());

    // OKTA-RS-09 GET /Groups, answered in under 0.6 s (as the replay requires).
    let started = Instant::now();
    let r = s.raw(spec(Method::GET, "/Groups", None, SCIM_CT)).await;
    let elapsed = started.elapsed();
    assert_list(&r, 0);
    assert!(
        elapsed < Duration::from_millis(600),
        "GET /Groups took {elapsed:?}"
    );

    // OKTA-RS-10 the 404 again, with the string status.
    let r = s
        .raw(spec(
            Method::GET,
            &format!("/Users/{MISSING}"),
            None,
            SCIM_CT,
        ))
        .await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    assert_eq!(r.body["status"], "404");
    s.stop().await;
}
