//! Reading SCIM request bodies: media type (415), size limit (413) and JSON syntax (400).

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde_json::Value;
use std::time::Duration;

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

/// What a request body may be (`[server] max_body_bytes`, `max_json_depth`,
/// `body_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub timeout: Duration,
}

/// Reads and parses a JSON body within `limits`: 413 when too large (from the declared
/// length, before reading), 408 when it arrives too slowly, 400 when too deep or not JSON.
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
) -> Result<Value, ScimError> {
    if !acceptable_content_type(headers) {
        return Err(ScimError::new(
            415,
            None,
            "Content-Type must be application/scim+json or application/json",
        ));
    }
    let limit = limits.max_bytes;
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
    let read = tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limit));
    let bytes = read
        .await
        .map_err(|_| {
            ScimError::new(
                408,
                None,
                format!(
                    "request body did not arrive within {} s",
                    limits.timeout.as_secs()
                ),
            )
        })?
        .map_err(|e| {
            if is_length_limit(&e) {
                too_large()
            } else {
                ScimError::invalid_syntax(format!("cannot read request body: {e}"))
            }
        })?;
    if bytes.is_empty() {
        return Err(ScimError::invalid_syntax("request body is empty"));
    }
    if nesting_exceeds(&bytes, limits.max_depth) {
        return Err(ScimError::invalid_syntax(format!(
            "request body nests arrays and objects deeper than {} levels",
            limits.max_depth
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("request body is not valid JSON: {e}")))
}

/// Whether `[`/`{` nest deeper than `max` outside strings. A linear pre-scan, so a deep
/// body is refused before the recursive parser (and everything after it that walks the
/// value recursively) sees it; malformed JSON is left for the parser to report.
fn nesting_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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

#[cfg(test)]
mod tests {
    use super::nesting_exceeds;

    #[test]
    fn nesting_counts_brackets_outside_strings_only() {
        assert!(!nesting_exceeds(br#"{"a":[{"b":1}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        // Brackets and escaped quotes inside strings are text, not structure.
        assert!(!nesting_exceeds(br#"{"a":"[[[[{{{{\"[[[["}"#, 1));
        assert!(nesting_exceeds(&[b'['; 200], 120));
    }
}
