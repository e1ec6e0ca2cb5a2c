//! Inputs the fuzzers (`fuzz/`, run by `.ci/fuzz.sh`) found to break an invariant, each
//! pinned to the behaviour a client or operator sees once fixed. The same inputs are in
//! `fuzz/corpus/<target>/` under the names given here, so the fuzzers start from them too.

mod common;

use common::{q, TestServer};
use reqwest::{Method, StatusCode};
use scim_relay::scim::filter::{parse_filter, Filter};
use scim_relay::scim::{schema, ResourceKind};
use serde_json::json;

/// fuzz/corpus/filter/regression-float-roundtrip: serde_json's default float parser can be
/// off by one unit in the last place, so the canonical text of a filter (which prints the
/// shortest digits that round-trip) parsed to a different number than the filter held.
/// With serde_json's `float_roundtrip` feature every decimal is parsed correctly rounded.
#[test]
fn filter_decimal_literals_are_parsed_exactly_and_print_back() {
    let filter = parse_filter("emaWyiplst[e eq 7777777.77777775777]").expect("parses");
    let Filter::ValuePath(_, inner) = &filter else {
        panic!("a value filter: {filter:?}");
    };
    let Filter::Compare(_, _, literal) = inner.as_ref() else {
        panic!("a comparison: {inner:?}");
    };
    // std's parser is correctly rounded: the number the text denotes.
    assert_eq!(literal.as_f64(), "7777777.77777775777".parse::<f64>().ok());
    let printed = filter.to_string();
    assert_eq!(printed, "emaWyiplst[e eq 7777777.7777777575]");
    assert_eq!(parse_filter(&printed), Ok(filter));
}

async fn create_user(server: &TestServer, user_name: &str) -> String {
    let reply = server
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_string()
}

/// The ids a filtered list returns (page size well above what these tests create).
async fn found(server: &TestServer, filter: &str) -> Vec<String> {
    let reply = server
        .call(Method::GET, &format!("/Users?filter={}", q(filter)), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.body);
    let ids: Vec<String> = reply.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        reply.body["totalResults"],
        json!(ids.len()),
        "{}",
        reply.body
    );
    ids
}

/// fuzz/corpus/request/regression-prefix-u10ffff (a create, then the filter): the userName
/// index answered `sw` with the range [key, key || U+10FFFF), which leaves out names that
/// continue with U+10FFFF and then anything, so `userName sw "pfx"` missed "pfx\u{10FFFF}x"
/// while evaluating the filter on every row found it. The range now ends at the prefix's
/// successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_prefix_filter_finds_names_continuing_with_the_last_code_point() {
    let server = TestServer::start().await;
    let odd = create_user(&server, "pfx\u{10FFFF}x").await;
    let plain = create_user(&server, "pfxa").await;
    let other = create_user(&server, "pfy").await;

    assert_eq!(
        found(&server, r#"userName sw "pfx""#).await,
        [odd.as_str(), plain.as_str()]
    );
    // A prefix ending in U+10FFFF has no one-character successor: the bound carries over.
    assert_eq!(
        found(&server, "userName sw \"pfx\u{10FFFF}\"").await,
        [odd.as_str()]
    );
    assert_eq!(
        found(&server, r#"userName sw "PF""#).await,
        [odd.as_str(), plain.as_str(), other.as_str()]
    );
    // The index and a full evaluation (which `not (not …)` forces) agree.
    assert_eq!(
        found(&server, r#"not (not (userName sw "pfx"))"#).await,
        [odd.as_str(), plain.as_str()]
    );
    server.stop().await;
}

/// fuzz/corpus/request/regression-datetime-username (a create, then the filter): filter
/// evaluation compared any two strings that parse as RFC 3339 date-times as instants, so
/// `userName eq "2011-05-13T04:42:34.000Z"` matched the user "2011-05-13T04:42:34Z" when
/// the whole table was scanned but not when the userName index answered: the same filter
/// gave different users depending on the query plan. userName is text (RFC 7643), so it
/// compares as text; dateTime attributes such as `meta.lastModified` still compare as
/// instants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_that_looks_like_a_date_compares_as_text() {
    let server = TestServer::start().await;
    let id = create_user(&server, "2011-05-13T04:42:34Z").await;

    let other_spelling = r#"userName eq "2011-05-13T04:42:34.000Z""#;
    assert!(found(&server, other_spelling).await.is_empty());
    assert!(found(&server, &format!("not (not ({other_spelling}))"))
        .await
        .is_empty());
    assert_eq!(
        found(&server, r#"userName eq "2011-05-13t04:42:34z""#).await,
        [id.as_str()]
    );
    server.stop().await;

    let user = json!({
        "userName": "2011-05-13T04:42:34Z",
        "meta": {"lastModified": "2011-05-13T04:42:34Z"}
    });
    let matches = |filter: &str| {
        parse_filter(filter)
            .expect("parses")
            .matches(&user, &|p| schema::case_exact(ResourceKind::User, p))
    };
    assert!(!matches(r#"userName eq "2011-05-13T06:42:34+02:00""#));
    assert!(matches(
        r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#
    ));
    assert!(matches(
        r#"meta.lastModified gt "2011-05-13T04:42:33.999Z""#
    ));
}

/// fuzz/corpus/request/regression-path-id-not-utf8: an `{id}` segment that is not UTF-8
/// once percent-decoded was refused by axum's extractor with a plain-text body ("Invalid URL:
/// Invalid UTF-8 in `id`"), the only error under the SCIM base path that was no SCIM error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_is_not_utf8_gets_a_scim_error() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/Users/%FF"),
        (Method::DELETE, "/Users/%FF"),
        (Method::GET, "/Groups/%C0%AF"),
        (Method::GET, "/Schemas/%FF"),
        (Method::GET, "/ResourceTypes/%FF"),
    ] {
        let reply = server.call(method.clone(), path, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(
            reply.headers["content-type"], "application/scim+json",
            "{method} {path}"
        );
        common::assert_scim_error(&reply.body, "400", None);
    }
    let reply = server
        .call(
            Method::PATCH,
            "/Users/%FF",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    common::assert_scim_error(&reply.body, "400", None);
    server.stop().await;
}
