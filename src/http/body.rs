//! Reading SCIM request bodies: media type (415), size limit (413) and JSON syntax (400).

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::scim::ScimError;

/// Whether the request's content type is one SCIM clients send. A missing header is let
/// through: curl users forget it, and the body is still parsed strictly as JSON.
fn acceptable_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/scim+json")
        || essence.eq_ignore_ascii_case("application/json")
}

/// Reads and parses a JSON body of at most `limit` bytes.
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ScimError> {
    if !acceptable_content_type(headers) {
        return Err(ScimError::new(
            415,
            None,
            "Content-Type must be application/scim+json or application/json",
        ));
    }
    let too_large = || {
        ScimError::new(
            413,
            None,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            ScimError::invalid_syntax(format!("cannot read request body: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ScimError::invalid_syntax("request body is empty"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("request body is not valid JSON: {e}")))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
