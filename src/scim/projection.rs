//! Response projection: `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5 / §3.9).
//!
//! Owns: parsing the comma-separated attribute lists and cutting a rendered resource down
//! to them. `id` and `schemas` are returned always; everything else follows the lists.

use serde_json::{Map, Value};

use super::filter::{get_key_ci, parse_path, AttrPath};
use super::{ScimError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// One entry of an attribute list: a whole extension (`urn:…:enterprise:2.0:User`) or a path.
#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Extension(String),
    Path(AttrPath),
}

/// What to return of a resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    include: Vec<Selector>,
    exclude: Vec<Selector>,
}

const ALWAYS: &[&str] = &["id", "schemas"];

impl Projection {
    /// Parses the query parameters; both empty means "the default set".
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        Ok(Projection {
            include: parse_list(attributes)?,
            exclude: parse_list(excluded)?,
        })
    }

    /// Whether `name` (a top-level attribute such as `members`) is returned at all; lets the
    /// store skip loading what will be cut anyway.
    pub fn returns(&self, name: &str) -> bool {
        let top = |s: &Selector| matches!(s, Selector::Path(p) if is_core(p) && p.name.eq_ignore_ascii_case(name));
        if !self.include.is_empty() {
            return self.include.iter().any(top);
        }
        !self
            .exclude
            .iter()
            .any(|s| top(s) && matches!(s, Selector::Path(p) if p.sub.is_none()))
    }

    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(obj) = resource else {
            return resource;
        };
        let obj = if self.include.is_empty() {
            obj
        } else {
            include(&obj, &self.include)
        };
        let mut obj = obj;
        for sel in &self.exclude {
            exclude(&mut obj, sel);
        }
        Value::Object(obj)
    }
}

fn is_core(p: &AttrPath) -> bool {
    p.urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(USER_SCHEMA) || u.eq_ignore_ascii_case(GROUP_SCHEMA))
}

fn parse_list(list: Option<&str>) -> Result<Vec<Selector>, ScimError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) {
                return Ok(Selector::Extension(ENTERPRISE_USER_SCHEMA.to_string()));
            }
            let path = parse_path(s).map_err(|e| {
                ScimError::invalid_value(format!("attribute list entry {s:?}: {e}"))
            })?;
            if path.filter.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "attribute list entry {s:?} may not carry a filter"
                )));
            }
            Ok(Selector::Path(path.attr))
        })
        .collect()
}

/// The object holding `path`'s attribute: the resource, or its extension object.
fn container<'a>(obj: &'a Map<String, Value>, path: &AttrPath) -> Option<&'a Map<String, Value>> {
    if is_core(path) {
        return Some(obj);
    }
    let urn = path.urn.as_deref()?;
    get_key_ci(obj, urn).and_then(|(_, v)| v.as_object())
}

fn container_mut<'a>(
    obj: &'a mut Map<String, Value>,
    path: &AttrPath,
) -> Option<&'a mut Map<String, Value>> {
    if is_core(path) {
        return Some(obj);
    }
    let urn = path.urn.as_deref()?;
    let key = get_key_ci(obj, urn).map(|(k, _)| k.clone())?;
    obj.get_mut(&key).and_then(Value::as_object_mut)
}

fn include(src: &Map<String, Value>, selectors: &[Selector]) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ALWAYS {
        if let Some((k, v)) = get_key_ci(src, key) {
            out.insert(k.clone(), v.clone());
        }
    }
    for sel in selectors {
        match sel {
            Selector::Extension(urn) => {
                if let Some((k, v)) = get_key_ci(src, urn) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Selector::Path(path) => include_path(src, &mut out, path),
        }
    }
    out
}

fn include_path(src: &Map<String, Value>, out: &mut Map<String, Value>, path: &AttrPath) {
    let Some(from) = container(src, path) else {
        return;
    };
    let Some((key, value)) = get_key_ci(from, &path.name) else {
        return;
    };
    let dst = if is_core(path) {
        out
    } else {
        let Some(urn) = path.urn.as_deref() else {
            return;
        };
        let urn_key = get_key_ci(src, urn).map_or_else(|| urn.to_string(), |(k, _)| k.clone());
        let slot = out
            .entry(urn_key)
            .or_insert_with(|| Value::Object(Map::new()));
        match slot.as_object_mut() {
            Some(m) => m,
            None => return,
        }
    };
    let Some(sub) = &path.sub else {
        dst.insert(key.clone(), value.clone());
        return;
    };
    match value {
        Value::Object(inner) => {
            if let Some((sk, sv)) = get_key_ci(inner, sub) {
                let slot = dst
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = slot.as_object_mut() {
                    m.insert(sk.clone(), sv.clone());
                }
            }
        }
        Value::Array(items) => {
            let slot = dst
                .entry(key.clone())
                .or_insert_with(|| Value::Array(vec![Value::Object(Map::new()); items.len()]));
            if let Some(out_items) = slot.as_array_mut() {
                for (item, out_item) in items.iter().zip(out_items.iter_mut()) {
                    if let (Some(m), Some(o)) = (item.as_object(), out_item.as_object_mut()) {
                        if let Some((sk, sv)) = get_key_ci(m, sub) {
                            o.insert(sk.clone(), sv.clone());
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn exclude(obj: &mut Map<String, Value>, sel: &Selector) {
    match sel {
        Selector::Extension(urn) => {
            if let Some(k) = get_key_ci(obj, urn).map(|(k, _)| k.clone()) {
                obj.remove(&k);
            }
        }
        Selector::Path(path) => {
            if is_core(path) && ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(&path.name)) {
                return;
            }
            let Some(target) = container_mut(obj, path) else {
                return;
            };
            let Some(key) = get_key_ci(target, &path.name).map(|(k, _)| k.clone()) else {
                return;
            };
            match &path.sub {
                None => {
                    target.remove(&key);
                }
                Some(sub) => match target.get_mut(&key) {
                    Some(Value::Object(inner)) => remove_ci(inner, sub),
                    Some(Value::Array(items)) => {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            remove_ci(item, sub);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

fn remove_ci(obj: &mut Map<String, Value>, key: &str) {
    if let Some(k) = get_key_ci(obj, key).map(|(k, _)| k.clone()) {
        obj.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "u1",
            "userName": "ann",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"type": "work", "value": "a@x"}, {"type": "home", "value": "b@x"}],
            ENTERPRISE_USER_SCHEMA: {"department": "Ops", "costCenter": "7"},
            "meta": {"resourceType": "User"}
        })
    }

    #[test]
    fn default_projection_returns_everything() {
        let p = Projection::parse(None, None).expect("valid");
        assert_eq!(p.apply(user()), user());
        assert!(p.returns("members"));
    }

    #[test]
    fn attributes_keep_always_returned_and_requested_paths() {
        let p =
            Projection::parse(Some("userName,name.givenName,emails.value"), None).expect("valid");
        let v = p.apply(user());
        assert_eq!(
            v,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "id": "u1",
                "userName": "ann",
                "name": {"givenName": "Ann"},
                "emails": [{"value": "a@x"}, {"value": "b@x"}],
            })
        );
    }

    #[test]
    fn attributes_reach_into_the_enterprise_extension() {
        let p = Projection::parse(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            None,
        )
        .expect("valid");
        let v = p.apply(user());
        assert_eq!(v[ENTERPRISE_USER_SCHEMA], json!({"department": "Ops"}));
        assert!(v.get("userName").is_none());
    }

    #[test]
    fn excluded_attributes_drop_paths_but_never_id() {
        let p = Projection::parse(None, Some("emails,ID,name.familyName,meta")).expect("valid");
        let v = p.apply(user());
        assert!(v.get("emails").is_none());
        assert!(v.get("meta").is_none());
        assert_eq!(v["id"], "u1");
        assert_eq!(v["name"], json!({"givenName": "Ann"}));
    }

    #[test]
    fn excluding_members_is_known_before_loading() {
        let p = Projection::parse(None, Some("members")).expect("valid");
        assert!(!p.returns("members"));
        let p = Projection::parse(Some("displayName"), None).expect("valid");
        assert!(!p.returns("members"));
        let p = Projection::parse(Some("displayName,members.value"), None).expect("valid");
        assert!(p.returns("members"));
    }

    #[test]
    fn malformed_lists_are_invalid_values() {
        let err = Projection::parse(Some("emails[type eq \"work\"]"), None).expect_err("filter");
        assert_eq!(err.status, 400);
        assert!(Projection::parse(Some("na me"), None).is_err());
    }
}
