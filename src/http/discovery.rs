//! Discovery endpoints (RFC 7644 §4): what this server supports, stated exactly.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::{ApiError, SCIM_CONTENT_TYPE};
use super::resources::Id;
use super::AppState;
use crate::scim::schema::{all_schemas, schema_json};
use crate::scim::{
    ResourceKind, ScimError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, LIST_RESPONSE_SCHEMA,
    USER_SCHEMA,
};

fn json_response(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, SCIM_CONTENT_TYPE)],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn list_response(resources: Vec<Value>) -> Response {
    json_response(&json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

pub async fn service_provider_config(State(state): State<AppState>) -> Response {
    let base = &state.base_url;
    json_response(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        // Bulk is off, but maxPayloadSize is SCIM's one place for a size limit, and the
        // same limit applies to every request. The other limits have no SCIM attribute, and
        // an extension here would break clients that validate this resource strictly
        // (scim2-tester's models refuse unknown keys), so they live in the README.
        "bulk": {
            "supported": false,
            "maxOperations": 0,
            "maxPayloadSize": state.body_limits.max_bytes,
        },
        "filter": {"supported": true, "maxResults": state.limits.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token created with `scim-relay token create`, sent as Authorization: Bearer <token>",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    }))
}

fn resource_type_json(kind: ResourceKind, base: &str) -> Value {
    let name = kind.name();
    let mut rt = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": name,
        "name": name,
        "endpoint": kind.endpoint(),
        "description": match kind {
            ResourceKind::User => "User Account",
            ResourceKind::Group => "Group",
        },
        "schema": match kind {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        },
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{name}"),
        },
    });
    if let (ResourceKind::User, Some(obj)) = (kind, rt.as_object_mut()) {
        obj.insert(
            "schemaExtensions".into(),
            json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}]),
        );
    }
    rt
}

pub async fn resource_types(State(state): State<AppState>) -> Response {
    list_response(
        [ResourceKind::User, ResourceKind::Group]
            .into_iter()
            .map(|k| resource_type_json(k, &state.base_url))
            .collect(),
    )
}

pub async fn resource_type(State(state): State<AppState>, Id(id): Id) -> Response {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(&id))
        .map(|k| json_response(&resource_type_json(k, &state.base_url)))
        .unwrap_or_else(|| {
            ApiError(ScimError::not_found(format!("no resource type {id:?}"))).into_response()
        })
}

pub async fn schemas(State(state): State<AppState>) -> Response {
    list_response(
        all_schemas()
            .iter()
            .map(|s| schema_json(s, &state.base_url))
            .collect(),
    )
}

pub async fn schema(State(state): State<AppState>, Id(id): Id) -> Response {
    all_schemas()
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
        .map(|s| json_response(&schema_json(s, &state.base_url)))
        .unwrap_or_else(|| {
            ApiError(ScimError::not_found(format!("no schema {id:?}"))).into_response()
        })
}
