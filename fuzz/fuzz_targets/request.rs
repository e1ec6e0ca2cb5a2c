//! The whole SCIM front end: the real router, middleware and store (SQLite in a temporary
//! folder, opened once per process), driven in-process with one request per input.
//!
//! An input is a request written like HTTP/1.1 so that seeds stay readable:
//!
//! ```text
//! PATCH /scim/v2/Users/{user}?attributes=userName
//! Content-Type: application/scim+json
//!
//! {"schemas": [...], "Operations": [...]}
//! ```
//!
//! The first line is the method and target, then headers up to an empty line, then the body.
//! An input may hold up to four requests, each after a line `===`, sent in order (so one
//! input can create a resource and then query it). Without an `Authorization` header a
//! request carries the valid token. `{user}` and
//! `{group}` in the target or body become the ids of a user and a group (with that user as a
//! member) created for this input and deleted after it, so PATCH, PUT and DELETE reach real
//! resources however earlier inputs left the database.
//!
//! Checked: no panic, the body can be read, no 500 (the store is healthy, so an internal error
//! is a bug), every error under the SCIM base path is a SCIM Error (`application/scim+json`)
//! whose `status` matches the HTTP status, and a filtered list counts the same rows whether
//! an index answers it or every row is evaluated.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::Router;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use scim_relay::config::Config;
use scim_relay::http::{router, AppState};
use scim_relay::outbox::{Fanout, Route, RouteKind};
use scim_relay::scim::error::ERROR_SCHEMA;
use scim_relay::scim::filter::parse_filter;
use scim_relay::store::Store;
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const BASE: &str = "/scim/v2";
const TOKEN: &str = "fuzz-token-0123456789abcdef";
/// Headers beyond this many are ignored: the interesting ones are few.
const MAX_HEADERS: usize = 16;
/// A line of its own between the requests of one input.
const SEPARATOR: &[u8] = b"\n===\n";
/// Requests beyond this many in one input are ignored.
const MAX_REQUESTS: usize = 4;

struct Harness {
    rt: Runtime,
    app: Router,
    /// Keeps the database folder for the process's lifetime.
    _dir: tempfile::TempDir,
}

/// Where the database goes: `SCIM_FUZZ_SCRATCH` if set (.ci/fuzz.sh points it at a folder
/// it removes afterwards), else shared memory when there is some, so SQLite's fsyncs are
/// free and the fuzzer runs at the speed of the code rather than of the disk.
fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCIM_FUZZ_SCRATCH") {
        return PathBuf::from(dir);
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// libFuzzer ends the process with `exit`, so no destructor removes the folder: remove the
/// ones whose process is gone at start-up instead.
fn remove_stale_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("scim-relay-fuzz-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let root = scratch_root();
        remove_stale_dirs(&root);
        let dir = tempfile::Builder::new()
            .prefix(&format!("scim-relay-fuzz-{}-", std::process::id()))
            .tempdir_in(&root)
            .expect("temporary folder");
        std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nbase_path = \"{BASE}\"\nmax_body_bytes = 65536\n\
             [storage]\npath = \"db/fuzz.db\"\nreaders = 1\n\
             [auth]\ntoken_file = \"token\"\n\
             [scim]\nmax_results = 20\nmax_patch_operations = 50\nmax_members_per_request = 50\n"
        );
        let config = Config::parse(&text, "fuzz.toml", dir.path().to_path_buf()).expect("config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // A webhook with a scope and a SCIM target syncing groups: writes then evaluate
        // scopes and fan group changes out to members, as in production.
        let scope = parse_filter(r#"groups[display eq "Sales"] or title co "sales""#).ok();
        let routes = vec![
            Route::new("hooks".into(), RouteKind::Events, vec!["*".into()], scope),
            Route::new(
                "app".into(),
                RouteKind::State { groups: true },
                vec!["*".into()],
                None,
            ),
        ];
        let bound = SocketAddr::from(([127, 0, 0, 1], 8080));
        let fanout = Arc::new(Fanout::new(routes, config.public_url(bound)));
        let app = rt.block_on(async {
            let store = Store::open(&config.database_path(), config.storage.readers, fanout)
                .expect("store");
            // Refused requests are written to the provisioning log, which reads their bodies.
            scim_relay::provlog::start(store.clone(), std::time::Duration::from_secs(86_400));
            let state = AppState::new(&config, store, bound).expect("state");
            router(state, &config.server.base_path)
        });
        Harness { rt, app, _dir: dir }
    })
}

struct Parsed<'a> {
    method: Method,
    target: &'a str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: &'a [u8],
}

/// Splits an input into request line, headers and body; `None` for inputs no HTTP client
/// could send (those are the HTTP library's business, not ours).
fn parse(data: &[u8]) -> Option<Parsed<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.trim_end_matches('\r').split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let headers = lines
        .take(MAX_HEADERS)
        .filter_map(|line| {
            let (name, value) = line.trim_end_matches('\r').split_once(':')?;
            Some((
                HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
                HeaderValue::from_str(value.trim()).ok()?,
            ))
        })
        .collect();
    Some(Parsed {
        method,
        target,
        headers,
        body,
    })
}

/// A distinct client address per input, so one input's failed logins cannot lock the next
/// ones out (which would hide everything behind a 429), yet the same input always gets the
/// same answer.
fn client_addr(data: &[u8]) -> SocketAddr {
    let hash = data.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(hash)), 40000)
}

async fn send(
    app: &Router,
    request: Request<Body>,
) -> (StatusCode, Vec<(HeaderName, HeaderValue)>, Vec<u8>) {
    use tower::ServiceExt;
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the response body can be read")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn authorized(method: Method, uri: &str, body: Value) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from(body.to_string()))
        .expect("fixture request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    req
}

/// Creates what `{user}` and `{group}` stand for; returns their ids.
async fn fixtures(app: &Router, want_group: bool) -> (String, Option<String>) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": format!("fixture-{}-{n}@example.com", std::process::id()),
        "externalId": format!("ext-{n}"),
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "active": true,
        "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}
    });
    let (status, _, body) = send(
        app,
        authorized(Method::POST, &format!("{BASE}/Users"), user),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let id = |body: &[u8]| -> String {
        let v: Value = serde_json::from_slice(body).expect("created resource is JSON");
        v["id"]
            .as_str()
            .expect("created resource has an id")
            .to_string()
    };
    let user_id = id(&body);
    let group_id = if want_group {
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("Sales {}-{n}", std::process::id()),
            "members": [{"value": user_id}]
        });
        let (status, _, body) = send(
            app,
            authorized(Method::POST, &format!("{BASE}/Groups"), group),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        Some(id(&body))
    } else {
        None
    };
    (user_id, group_id)
}

fn check_response(
    method: &Method,
    target: &str,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) {
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: {}",
        String::from_utf8_lossy(body)
    );
    let under_base = target == BASE
        || target.starts_with(&format!("{BASE}/"))
        || target.starts_with(&format!("{BASE}?"));
    if !under_base || status.as_u16() < 400 {
        return;
    }
    // A HEAD answer has no body to check.
    if body.is_empty() && *method == Method::HEAD {
        return;
    }
    let json = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json,
        Err(_) => panic!(
            "{status} under the SCIM base path without a SCIM error body: {:?}",
            String::from_utf8_lossy(body)
        ),
    };
    assert_eq!(
        json["schemas"],
        json!([ERROR_SCHEMA]),
        "{status} without a SCIM error body: {json}"
    );
    assert_eq!(
        json["status"],
        json!(status.as_u16().to_string()),
        "the error body's status disagrees with {status}: {json}"
    );
    let content_type = headers
        .iter()
        .find(|(k, _)| k == header::CONTENT_TYPE)
        .and_then(|(_, v)| v.to_str().ok());
    assert_eq!(
        content_type,
        Some("application/scim+json"),
        "{status} {json}"
    );
}

/// `totalResults` of a list request, asking for no resources (only the count matters).
async fn total(app: &Router, path: &str, filter: &str) -> Option<u64> {
    let query = serde_urlencoded::to_string([("filter", filter), ("count", "0")]).ok()?;
    let (status, _, body) = send(
        app,
        authorized(Method::GET, &format!("{path}?{query}"), Value::Null),
    )
    .await;
    if status != StatusCode::OK {
        return None;
    }
    serde_json::from_slice::<Value>(&body).ok()?["totalResults"].as_u64()
}

/// A filtered list is answered from an index when the filter has an indexable conjunct, and
/// by evaluating the filter on every row otherwise. `not (not (…))` hides every conjunct
/// from the index helpers without changing the meaning, so both must count the same rows.
async fn check_index_agrees_with_scan(app: &Router, target: &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != format!("{BASE}/Users") && path != format!("{BASE}/Groups") {
        return;
    }
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let Some(filter) = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
        .map(|(_, v)| v.as_str())
    else {
        return;
    };
    let Ok(parsed) = parse_filter(filter) else {
        return;
    };
    let scan = format!("not (not ({parsed}))");
    let (Some(indexed), Some(scanned)) = (
        total(app, path, filter).await,
        total(app, path, &scan).await,
    ) else {
        return;
    };
    assert_eq!(
        indexed, scanned,
        "{path}: filter {filter:?} counts {indexed} rows through the index but {scanned} by evaluating {scan:?}"
    );
}

/// What POST, PUT and PATCH answer with is what was stored: a GET right after returns the
/// same representation, and the `ETag` header is its `meta.version`.
async fn check_written_resource_reads_back(
    app: &Router,
    method: &Method,
    target: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) {
    if ![Method::POST, Method::PUT, Method::PATCH].contains(method) {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(rest) = path.strip_prefix(BASE) else {
        return;
    };
    let endpoint = if rest.starts_with("/Users") {
        "Users"
    } else if rest.starts_with("/Groups") {
        "Groups"
    } else {
        return;
    };
    // A projection cuts the answer, so it is no longer the whole resource.
    if query.to_ascii_lowercase().contains("attributes") {
        return;
    }
    let Ok(written) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(id) = written["id"].as_str() else {
        return;
    };
    let etag = headers
        .iter()
        .find(|(k, _)| k == header::ETAG)
        .and_then(|(_, v)| v.to_str().ok());
    assert_eq!(
        etag,
        written["meta"]["version"].as_str(),
        "{method} {target}: ETag and meta.version differ"
    );
    let (status, _, again) = send(
        app,
        authorized(Method::GET, &format!("{BASE}/{endpoint}/{id}"), Value::Null),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{method} {target}: the resource it wrote is gone"
    );
    let again: Value = serde_json::from_slice(&again).expect("a resource is JSON");
    assert_eq!(
        again, written,
        "{method} {target}: answered one representation, stored another"
    );
}

/// Sends one request of an input (placeholders replaced) and checks its answer.
async fn run_one(
    app: &Router,
    parsed: &Parsed<'_>,
    ids: Option<&(String, Option<String>)>,
    peer: SocketAddr,
) {
    let (target, body) = match ids {
        Some((user, group)) => {
            let group = group.as_deref().unwrap_or("");
            let target = parsed
                .target
                .replace("{user}", user)
                .replace("{group}", group);
            let body = String::from_utf8_lossy(parsed.body)
                .replace("{user}", user)
                .replace("{group}", group)
                .into_bytes();
            (target, body)
        }
        None => (parsed.target.to_string(), parsed.body.to_vec()),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    // Only origin-form targets reach a server's router.
    if uri.scheme().is_some() || !target.starts_with('/') {
        return;
    }
    let mut builder = Request::builder().method(parsed.method.clone()).uri(uri);
    let mut has_auth = false;
    for (name, value) in &parsed.headers {
        has_auth |= *name == header::AUTHORIZATION;
        builder = builder.header(name, value);
    }
    if !has_auth {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    let Ok(mut request) = builder.body(Body::from(body)) else {
        return;
    };
    request.extensions_mut().insert(ConnectInfo(peer));
    let (status, headers, body) = send(app, request).await;
    // For checking what seeds reach: `SCIM_FUZZ_DEBUG=1 …/request corpus/request/*`.
    if std::env::var_os("SCIM_FUZZ_DEBUG").is_some() {
        eprintln!(
            "{} {target} -> {status} {}",
            parsed.method,
            String::from_utf8_lossy(&body)
        );
    }
    check_response(&parsed.method, &target, status, &headers, &body);
    if parsed.method == Method::GET && status == StatusCode::OK {
        check_index_agrees_with_scan(app, &target).await;
    }
    if status.is_success() {
        check_written_resource_reads_back(app, &parsed.method, &target, &headers, &body).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let requests: Vec<Parsed<'_>> = split(data, SEPARATOR)
        .take(MAX_REQUESTS)
        .filter_map(parse)
        .collect();
    if requests.is_empty() {
        return;
    }
    let mentions = |needle: &str| {
        requests
            .iter()
            .any(|r| r.target.contains(needle) || contains(r.body, needle.as_bytes()))
    };
    let (wants_user, wants_group) = (mentions("{user}"), mentions("{group}"));
    let h = harness();
    h.rt.block_on(async {
        let ids = if wants_user || wants_group {
            Some(fixtures(&h.app, wants_group).await)
        } else {
            None
        };
        let peer = client_addr(data);
        for parsed in &requests {
            run_one(&h.app, parsed, ids.as_ref(), peer).await;
        }
        if let Some((user, group)) = ids {
            if let Some(group) = group {
                let _ = send(
                    &h.app,
                    authorized(
                        Method::DELETE,
                        &format!("{BASE}/Groups/{group}"),
                        Value::Null,
                    ),
                )
                .await;
            }
            let _ = send(
                &h.app,
                authorized(Method::DELETE, &format!("{BASE}/Users/{user}"), Value::Null),
            )
            .await;
        }
    });
});

/// `data` cut at every `separator`.
fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(separator.len())
            .position(|w| w == separator)
        {
            Some(i) => {
                rest = Some(&current[i + separator.len()..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
