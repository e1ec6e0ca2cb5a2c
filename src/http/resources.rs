//! Handlers for `/Users` and `/Groups`: one set, parameterised by resource kind.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::body::read_json;
use super::error::{ApiError, SCIM_CONTENT_TYPE};
use super::limits::{members_in_patch, members_in_resource};
use super::AppState;
use crate::scim::filter::{parse_filter_within, parse_path};
use crate::scim::patch::parse_patch_request;
use crate::scim::projection::Projection;
use crate::scim::resource::Record;
use crate::scim::schema::normalize_resource;
use crate::scim::{ResourceKind, ScimError, LIST_RESPONSE_SCHEMA};
use crate::store::ListQuery;

type ApiResult = Result<Response, ApiError>;

/// The `{id}` path segment. Axum's own rejection (an id that is not UTF-8 once
/// percent-decoded, such as `/Users/%FF`) is a plain-text body; SCIM clients get a SCIM error.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(rejection) => Err(ApiError(ScimError::new(
                rejection.status().as_u16(),
                None,
                rejection.body_text(),
            ))),
        }
    }
}

/// Query parameters as pairs; SCIM parameter names are matched case-insensitively.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<String>) -> Result<Params, ScimError> {
        let raw = raw.unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
            .map(Params)
            .map_err(|e| ScimError::invalid_value(format!("malformed query string: {e}")))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn projection(&self) -> Result<Projection, ScimError> {
        Projection::parse(self.get("attributes"), self.get("excludedAttributes"))
    }

    fn integer(&self, name: &str) -> Result<Option<i64>, ScimError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ScimError::invalid_value(format!("{name} must be an integer, got {v:?}"))
                })
            })
            .transpose()
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    resp
}

/// A single resource with its `ETag` (and `Location` when created).
fn resource_response(
    state: &AppState,
    status: StatusCode,
    record: &Record,
    projection: &Projection,
) -> Response {
    let body = projection.apply(record.to_scim(&state.base_url));
    let mut resp = scim_json(status, &body);
    if let Ok(v) = HeaderValue::from_str(&record.etag()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Some(loc) = body
            .pointer("/meta/location")
            .and_then(Value::as_str)
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
    }
    resp
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A list request's parameters, from a query string (GET) or a SearchRequest body (POST
/// `.search`, RFC 7644 §3.4.3); both take the same path from here on.
#[derive(Default)]
struct ListParams {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    attributes: Option<String>,
    excluded: Option<String>,
}

impl ListParams {
    fn from_query(params: &Params) -> Result<ListParams, ScimError> {
        Ok(ListParams {
            filter: params.get("filter").map(str::to_string),
            start_index: params.integer("startIndex")?,
            count: params.integer("count")?,
            sort_by: params.get("sortBy").map(str::to_string),
            sort_order: params.get("sortOrder").map(str::to_string),
            attributes: params.get("attributes").map(str::to_string),
            excluded: params.get("excludedAttributes").map(str::to_string),
        })
    }

    fn from_search_body(body: &Value) -> Result<ListParams, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
        let field = |name: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                // `attributes` may be an array of names (RFC 7644 §3.4.3).
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            ScimError::invalid_value(format!("{name} must list strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| Some(v.join(","))),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            }
        };
        let integer = |name: &str| -> Result<Option<i64>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            }
        };
        Ok(ListParams {
            filter: text("filter")?,
            start_index: integer("startIndex")?,
            count: integer("count")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            attributes: text("attributes")?,
            excluded: text("excludedAttributes")?,
        })
    }
}

pub async fn list(
    State(state): State<AppState>,
    kind: ResourceKind,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let params = ListParams::from_query(&Params::parse(raw)?)?;
    run_list(&state, &[kind], params).await
}

/// `POST /Users/.search`, `/Groups/.search`, or `/.search` over both (`kinds`).
pub async fn search(
    State(state): State<AppState>,
    kinds: &'static [ResourceKind],
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let input = read_json(&headers, body, &state.body_limits).await?;
    run_list(&state, kinds, ListParams::from_search_body(&input)?).await
}

async fn run_list(state: &AppState, kinds: &[ResourceKind], p: ListParams) -> ApiResult {
    let projection = Projection::parse(p.attributes.as_deref(), p.excluded.as_deref())?;
    let limits = &state.limits;
    let filter = match p.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) if f.len() > limits.max_filter_length => {
            return Err(ScimError::invalid_filter(format!(
                "filter is longer than {} bytes",
                limits.max_filter_length
            ))
            .into())
        }
        Some(f) => Some(
            parse_filter_within(f, limits.max_filter_depth, limits.max_filter_terms)
                .map_err(ScimError::from)?,
        ),
        None => None,
    };
    // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
    let start_index = p.start_index.unwrap_or(1).max(1);
    let count = p.count.map_or(limits.max_results, |c| {
        usize::try_from(c.max(0))
            .unwrap_or(0)
            .min(limits.max_results)
    });
    let sort_by = p
        .sort_by
        .as_deref()
        .map(|s| {
            parse_path(s)
                .map(|p| p.attr)
                .map_err(|e| ScimError::invalid_value(format!("sortBy: {e}")))
        })
        .transpose()?;
    let descending = match p.sort_order.as_deref() {
        None => false,
        Some(o) if o.eq_ignore_ascii_case("ascending") => false,
        Some(o) if o.eq_ignore_ascii_case("descending") => true,
        Some(o) => {
            return Err(ScimError::invalid_value(format!(
                "sortOrder must be ascending or descending, got {o:?}"
            ))
            .into())
        }
    };
    let offset = usize::try_from(start_index - 1).unwrap_or(usize::MAX);
    let mut total = 0;
    let mut resources: Vec<Value> = Vec::new();
    for &kind in kinds {
        // Across several kinds the page is cut after concatenation, so each kind is asked
        // for everything up to the end of the page.
        let (kind_start, kind_count) = if kinds.len() == 1 {
            (offset + 1, count)
        } else {
            (1, offset.saturating_add(count))
        };
        let query = ListQuery {
            filter: filter.clone(),
            start_index: kind_start,
            count: kind_count,
            sort_by: sort_by.clone(),
            descending,
            with_members: kind == ResourceKind::Group && projection.returns("members"),
        };
        let page = state.store.list(kind, query).await?;
        total += page.total;
        resources.extend(
            page.records
                .iter()
                .map(|r| projection.apply(r.to_scim(&state.base_url))),
        );
    }
    if kinds.len() > 1 {
        resources = resources.into_iter().skip(offset).take(count).collect();
    }
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

pub async fn get_one(
    State(state): State<AppState>,
    kind: ResourceKind,
    Id(id): Id,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let projection = Params::parse(raw)?.projection()?;
    let record = state
        .store
        .get(kind, &id, projection.returns("members"))
        .await?;
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tag| crate::scim::resource::if_match_allows(tag, record.version));
    if not_modified {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(resource_response(
        &state,
        StatusCode::OK,
        &record,
        &projection,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    kind: ResourceKind,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let projection = Params::parse(raw)?.projection()?;
    let input = read_json(&headers, body, &state.body_limits).await?;
    check_members(&state, kind, members_in_resource(&input))?;
    let doc = normalize_resource(kind, &input)?;
    let record = state
        .store
        .create(kind, doc, projection.returns("members"))
        .await?;
    tracing::debug!(kind = kind.name(), id = %record.id, "created");
    Ok(resource_response(
        &state,
        StatusCode::CREATED,
        &record,
        &projection,
    ))
}

pub async fn replace(
    State(state): State<AppState>,
    kind: ResourceKind,
    Id(id): Id,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let projection = Params::parse(raw)?.projection()?;
    let input = read_json(&headers, body, &state.body_limits).await?;
    check_body_id(&input, &id)?;
    check_members(&state, kind, members_in_resource(&input))?;
    let doc = normalize_resource(kind, &input)?;
    let record = state
        .store
        .replace(
            kind,
            &id,
            doc,
            if_match(&headers),
            projection.returns("members"),
        )
        .await?;
    Ok(resource_response(
        &state,
        StatusCode::OK,
        &record,
        &projection,
    ))
}

/// Refuses a group body or PATCH carrying more than `scim.max_members_per_request` member
/// values (`count`), before anything is stored.
///
/// The scimType is `invalidValue`, not `tooMany`: RFC 7644 §3.12 defines `tooMany` for a
/// filter that yields more results than the server will process (GET and POST .search
/// only), while `invalidValue` is the type it lists for POST, PUT and PATCH bodies with a
/// value the server will not accept.
fn check_members(state: &AppState, kind: ResourceKind, count: usize) -> Result<(), ScimError> {
    let max = state.limits.max_members_per_request;
    if kind == ResourceKind::Group && count > max {
        return Err(ScimError::invalid_value(format!(
            "a request may carry at most {max} member values; this one has {count}: \
             send the rest in further PATCH requests"
        )));
    }
    Ok(())
}

/// A PUT body may repeat the id; it may not name another resource (id is immutable).
fn check_body_id(input: &Value, id: &str) -> Result<(), ScimError> {
    match input.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id != id => Err(ScimError::mutability(format!(
            "body id {body_id:?} differs from the URL's id; id cannot change"
        ))),
        _ => Ok(()),
    }
}

pub async fn patch(
    State(state): State<AppState>,
    kind: ResourceKind,
    Id(id): Id,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let projection = Params::parse(raw)?.projection()?;
    let input = read_json(&headers, body, &state.body_limits).await?;
    check_members(&state, kind, members_in_patch(&input))?;
    let ops = parse_patch_request(&input)?;
    if ops.len() > state.limits.max_patch_operations {
        return Err(ScimError::too_many(format!(
            "a PATCH may carry at most {} operations",
            state.limits.max_patch_operations
        ))
        .into());
    }
    let record = state
        .store
        .patch(
            kind,
            &id,
            ops,
            if_match(&headers),
            projection.returns("members"),
        )
        .await?;
    Ok(resource_response(
        &state,
        StatusCode::OK,
        &record,
        &projection,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    kind: ResourceKind,
    Id(id): Id,
    headers: HeaderMap,
) -> ApiResult {
    state.store.delete(kind, &id, if_match(&headers)).await?;
    tracing::debug!(kind = kind.name(), id = %id, "deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
