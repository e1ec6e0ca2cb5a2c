//! The PATCH engine (RFC 7644 §3.5.2): parsing a PatchOp request body and applying its
//! operations to a stored resource, pure and atomic.
//!
//! Owns: op/path/value validation, add/replace/remove semantics, the Entra ID and Okta quirks
//! listed in design.md, and turning group-membership operations into [`MemberChanges`] (a
//! group's members live in their own table, so they are never part of the document patched
//! here). Must not touch SQLite or HTTP; attribute facts come from `schema.rs`.
//!
//! Decisions beyond the RFC's letter, each so that an IdP's real traffic succeeds:
//! - Attributes of no supported schema (and unknown sub-attributes) are ignored, as
//!   `normalize_resource` drops them from POST bodies.
//! - `remove` with a value filter that matches nothing succeeds without change: a retried
//!   removal must not fail. `replace`/`add` with a filter that matches nothing creates the
//!   element when the filter is an `eq` or an `and` of `eq`s (`emails[type eq "work"].value`
//!   → `{"type": "work", "value": …}`); any other filter gives 400 `noTarget` (§3.5.2.3).
//! - `remove` on a multi-valued attribute with a `value` array (Entra's member removal)
//!   removes just the listed elements, matched by their `value` sub-attribute.
//! - readOnly attributes inside a no-path `value` object (Okta's group push repeats `id`) are
//!   ignored, as RFC 7644 §3.5.1 has PUT do, unless the resource passed in carries a
//!   different value (an `id` naming another resource): that, and any explicit `path` to a
//!   readOnly attribute, is 400 `mutability`.
//! - `add`/`replace` of a complex single-valued attribute merges sub-attributes (§3.5.2.3),
//!   except that a new `value` (e.g. a new manager id) replaces the whole object, since the
//!   other sub-attributes described the old referent.
//! - Setting `primary: true` on one element sets it false on the others (RFC 7644 §3.5.2).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::filter::{parse_path, AttrPath, Filter, PatchPath};
use super::schema::{self, AttrDef, AttrType, Container, Mutability, SchemaDef};
use super::{ResourceKind, ScimError, PATCH_OP_SCHEMA};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Remove => "remove",
        }
    }
}

/// One validated PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// `Some(Value::Null)` when the client wrote `"value": null`.
    pub value: Option<Value>,
}

/// Membership changes for a group, in the form the store applies them: when `replace_all` is
/// set the membership becomes exactly that list (and `add`/`remove` are empty); otherwise it
/// becomes (current ∪ `add`) ∖ `remove`. Operations are folded in order, so an id added and
/// then removed in one request ends up only in `remove`, and vice versa. No id repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChanges {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub replace_all: Option<Vec<String>>,
    /// The `display` the client sent with a member it added, by member id: stored and
    /// returned as sent (clients compare what they wrote with what they read back).
    pub display: BTreeMap<String, String>,
}

impl MemberChanges {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.replace_all.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchOutcome {
    /// Top-level attribute names whose value changed (extension attributes qualified by their
    /// URN, e.g. `urn:…:enterprise:2.0:User:manager`), in key order; then `members` when there
    /// are member changes. Empty when the patch changed neither the document nor membership,
    /// so the caller can skip the version bump.
    pub changed_paths: Vec<String>,
    pub members: MemberChanges,
}

/// Validate a PATCH request body (RFC 7644 §3.5.2), leniently about case: `schemas` must
/// list the PatchOp URN, `Operations` must be a non-empty array, op names may be any case.
pub fn parse_patch_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body must be a JSON object"))?;
    let is_patch_urn = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    };
    let declared = match schema::key_ci(obj, "schemas") {
        Some(Value::Array(items)) => items.iter().any(is_patch_urn),
        Some(single) => is_patch_urn(single),
        None => false,
    };
    if !declared {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body must list \"{PATCH_OP_SCHEMA}\" in `schemas`"
        )));
    }
    let ops = match schema::key_ci(obj, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => {
            return Err(ScimError::invalid_syntax(
                "`Operations` must hold at least one operation",
            ))
        }
        Some(_) => return Err(ScimError::invalid_syntax("`Operations` must be an array")),
        None => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body needs an `Operations` array",
            ))
        }
    };
    ops.iter()
        .enumerate()
        .map(|(i, raw)| parse_op(raw).map_err(|e| in_operation(i, e)))
        .collect()
}

fn parse_op(raw: &Value) -> Result<PatchOp, ScimError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("an operation must be a JSON object"))?;
    let name = match schema::key_ci(obj, "op") {
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(ScimError::invalid_syntax("`op` must be a string")),
        None => return Err(ScimError::invalid_syntax("the operation has no `op`")),
    };
    let op = [OpKind::Add, OpKind::Replace, OpKind::Remove]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            ScimError::invalid_syntax(format!(
                "`op` {:?} is not one of add, replace, remove",
                shorten(name)
            ))
        })?;
    let path = match schema::key_ci(obj, "path") {
        None | Some(Value::Null) => None,
        // Some clients send an empty path for "the resource itself".
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(parse_path(s.trim()).map_err(|e| {
            ScimError::invalid_path(format!("`path` {:?} is invalid: {e}", shorten(s)))
        })?),
        Some(_) => return Err(ScimError::invalid_path("`path` must be a string")),
    };
    let value = schema::key_ci(obj, "value").cloned();
    match (op, &path, &value) {
        (OpKind::Remove, None, _) => Err(ScimError::no_target(
            "remove needs a `path` naming what to remove (RFC 7644 §3.5.2.2)",
        )),
        (OpKind::Add | OpKind::Replace, _, None) => Err(ScimError::invalid_syntax(format!(
            "{} needs a `value`",
            op.as_str()
        ))),
        (OpKind::Add | OpKind::Replace, None, Some(v)) if !v.is_object() => {
            Err(ScimError::invalid_syntax(format!(
                "{} without a `path` needs an object `value` of attributes, got {}",
                op.as_str(),
                schema::json_kind(v)
            )))
        }
        _ => Ok(PatchOp { op, path, value }),
    }
}

/// Apply `ops` in order to `resource`: the stored document (what `normalize_resource`
/// returned; for groups without `members`), plus `id` if the caller wants a no-path value
/// that repeats a *different* id rejected. All or nothing: on error `resource` is left
/// untouched. On success `resource` becomes the new stored document, in `normalize_resource`
/// form: server-owned `id`, `meta` and `groups` are never part of it, `schemas` lists the
/// extensions that hold data, and a patch that breaks a rule (e.g. removes `userName`) fails.
pub fn apply_patch(
    kind: ResourceKind,
    resource: &mut Value,
    ops: &[PatchOp],
) -> Result<PatchOutcome, ScimError> {
    let mut work = resource
        .as_object()
        .cloned()
        .ok_or_else(|| ScimError::internal("the stored resource is not a JSON object"))?;
    let mut members = MemberTracker::default();
    for (i, op) in ops.iter().enumerate() {
        apply_op(kind, &mut work, op, &mut members).map_err(|e| in_operation(i, e))?;
    }
    if schema::key_ci(&work, "schemas").is_none() {
        work.insert(
            "schemas".into(),
            Value::Array(vec![Value::String(kind.core_schema().into())]),
        );
    }
    let after = schema::normalize_resource(kind, &Value::Object(work))?;
    // A stored document that no longer normalises (older rules) is compared as it is.
    let before = schema::normalize_resource(kind, resource).unwrap_or_else(|_| resource.clone());
    let members = members.finish();
    let mut changed_paths = changed_attributes(kind, &before, &after);
    if !members.is_empty() {
        changed_paths.push("members".into());
    }
    *resource = after;
    Ok(PatchOutcome {
        changed_paths,
        members,
    })
}

/// Top-level attributes whose value differs between two documents; extension attributes are
/// named with their URN (`urn:…:enterprise:2.0:User:department`).
pub fn changed_attributes(kind: ResourceKind, before: &Value, after: &Value) -> Vec<String> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (bv, av) = (b.get(key), a.get(key));
        if bv == av || matches!(key.as_str(), "schemas" | "id" | "meta") {
            continue;
        }
        match schema::extension_by_urn(kind, key) {
            Some(ext) => {
                let bi = bv.and_then(Value::as_object).unwrap_or(&empty);
                let ai = av.and_then(Value::as_object).unwrap_or(&empty);
                let inner: BTreeSet<&String> = bi.keys().chain(ai.keys()).collect();
                out.extend(
                    inner
                        .into_iter()
                        .filter(|k| bi.get(*k) != ai.get(*k))
                        .map(|k| format!("{}:{k}", ext.id)),
                );
            }
            None => out.push(key.clone()),
        }
    }
    out
}

fn in_operation(i: usize, e: ScimError) -> ScimError {
    ScimError {
        detail: format!("Operations[{i}]: {}", e.detail),
        ..e
    }
}

/// Quotes of client input in error details stay short.
fn shorten(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or("")),
        None => s.to_string(),
    }
}

// ---- resolving paths ----

/// Where an operation lands.
enum Target<'p> {
    /// An attribute of no supported schema: the operation is ignored (module doc).
    Ignored,
    /// The whole extension object: `path` is the bare extension URN.
    Extension(&'static SchemaDef),
    Attr(AttrTarget<'p>),
}

struct AttrTarget<'p> {
    container: Container,
    def: &'static AttrDef,
    /// Selects elements of a multi-valued attribute (paths inside are element-relative).
    filter: Option<&'p Filter>,
    /// `name.givenName`, `emails.value`, `emails[type eq "work"].value`.
    sub: Option<&'static AttrDef>,
    /// The path as written, for errors about the path itself.
    path: String,
}

impl AttrTarget<'_> {
    /// The attribute's name for errors about a value (`emails.value must be a string`).
    fn value_label(&self) -> String {
        self.container.qualified(self.def.name)
    }
    fn sub_label(&self, sub: &AttrDef) -> String {
        format!("{}.{}", self.value_label(), sub.name)
    }
}

fn resolve(kind: ResourceKind, path: &PatchPath) -> Result<Target<'_>, ScimError> {
    let attr = &path.attr;
    let text = path.to_string();
    // The parser splits a bare `urn:…:enterprise:2.0:User` into URN `…:2.0` and name `User`.
    if let (Some(urn), None, None, None) = (&attr.urn, &attr.sub, &path.filter, &path.sub) {
        if let Some(ext) = schema::extension_by_urn(kind, &format!("{urn}:{}", attr.name)) {
            return Ok(Target::Extension(ext));
        }
    }
    let Some((container, def)) = schema::lookup(kind, attr.urn.as_deref(), &attr.name) else {
        return Ok(Target::Ignored);
    };
    let sub_name = match (&attr.sub, &path.sub) {
        (Some(_), Some(_)) => {
            return Err(ScimError::invalid_path(format!(
                "`path` {:?} names two sub-attributes",
                shorten(&text)
            )))
        }
        (Some(s), None) | (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    let sub = match sub_name {
        None => None,
        Some(s) if def.ty != AttrType::Complex => {
            return Err(ScimError::invalid_path(format!(
                "`path` {:?}: {} has no sub-attributes, so it has no {s:?}",
                shorten(&text),
                def.name
            )))
        }
        Some(s) => match def.sub_attr(s) {
            Some(d) => Some(d),
            None => return Ok(Target::Ignored),
        },
    };
    if path.filter.is_some() && !def.multi_valued {
        return Err(ScimError::invalid_path(format!(
            "`path` {:?}: a value filter needs a multi-valued attribute and {} is single-valued",
            shorten(&text),
            def.name
        )));
    }
    Ok(Target::Attr(AttrTarget {
        container,
        def,
        filter: path.filter.as_ref(),
        sub,
        path: text,
    }))
}

/// Whether an operation came with an explicit `path` or from the keys of a `value` object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Path,
    ValueObject,
}

// ---- applying operations ----

fn apply_op(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: &PatchOp,
    members: &mut MemberTracker,
) -> Result<(), ScimError> {
    match &op.path {
        Some(path) => {
            let target = resolve(kind, path)?;
            apply_target(
                kind,
                work,
                op.op,
                &target,
                op.value.as_ref(),
                Origin::Path,
                members,
            )
        }
        None => match (op.op, &op.value) {
            (OpKind::Remove, _) => Err(ScimError::no_target(
                "remove needs a `path` naming what to remove (RFC 7644 §3.5.2.2)",
            )),
            (_, Some(Value::Object(values))) => {
                for (key, value) in values {
                    apply_keyed(kind, work, op.op, None, key, value, members)?;
                }
                Ok(())
            }
            (_, _) => Err(ScimError::invalid_syntax(format!(
                "{} without a `path` needs an object `value` of attributes",
                op.op.as_str()
            ))),
        },
    }
}

/// One key of a no-path `value` object (or of an extension object): `userName`,
/// `name.givenName`, `urn:…:enterprise:2.0:User:department`, the bare extension URN.
fn apply_keyed(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: OpKind,
    within: Option<&'static SchemaDef>,
    key: &str,
    value: &Value,
    members: &mut MemberTracker,
) -> Result<(), ScimError> {
    if within.is_none() && key.eq_ignore_ascii_case("schemas") {
        return Ok(());
    }
    let text = match within {
        Some(ext) => format!("{}:{key}", ext.id),
        None => key.to_string(),
    };
    // A key that is no attribute path names no attribute we support.
    let Ok(path) = parse_path(&text) else {
        return Ok(());
    };
    let target = resolve(kind, &path)?;
    apply_target(
        kind,
        work,
        op,
        &target,
        Some(value),
        Origin::ValueObject,
        members,
    )
}

fn apply_target(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: OpKind,
    target: &Target<'_>,
    value: Option<&Value>,
    origin: Origin,
    members: &mut MemberTracker,
) -> Result<(), ScimError> {
    let t = match target {
        Target::Ignored => return Ok(()),
        Target::Extension(ext) => return apply_extension(kind, work, op, ext, value, members),
        Target::Attr(t) => t,
    };
    if kind == ResourceKind::Group
        && matches!(t.container, Container::Top)
        && t.def.name == "members"
    {
        return apply_members(op, t, value, members);
    }
    let read_only = t.def.mutability == Mutability::ReadOnly
        || t.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
    if read_only {
        if origin == Origin::ValueObject {
            return read_only_in_value(work, t, value);
        }
        return Err(ScimError::mutability(format!(
            "`path` {:?}: {} is readOnly and cannot be changed",
            shorten(&t.path),
            t.sub.map_or_else(|| t.value_label(), |s| t.sub_label(s))
        )));
    }
    apply_attr(work, op, t, value)
}

/// A readOnly attribute repeated in a no-path `value` object: ignored unless it contradicts
/// the value the resource carries (`meta` is always ignored: clients echo stale timestamps).
fn read_only_in_value(
    work: &Map<String, Value>,
    t: &AttrTarget<'_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let top_level = matches!(t.container, Container::Top) && t.sub.is_none() && t.filter.is_none();
    let given = value.filter(|v| !v.is_null());
    let current = schema::key_ci(work, t.def.name);
    match (top_level && t.def.name != "meta", given, current) {
        (true, Some(given), Some(current)) if given != current => {
            Err(ScimError::mutability(format!(
                "{} is readOnly: the value {} differs from the resource's",
                t.def.name,
                shorten(&given.to_string())
            )))
        }
        _ => Ok(()),
    }
}

fn apply_extension(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: OpKind,
    ext: &'static SchemaDef,
    value: Option<&Value>,
    members: &mut MemberTracker,
) -> Result<(), ScimError> {
    match (op, value) {
        (OpKind::Remove, _) | (OpKind::Replace, None | Some(Value::Null)) => {
            take_ci(work, ext.id);
            Ok(())
        }
        (OpKind::Add, None | Some(Value::Null)) => Ok(()),
        // Like a complex attribute: listed attributes are set, others left alone.
        (_, Some(Value::Object(attrs))) => {
            for (key, v) in attrs {
                apply_keyed(kind, work, op, Some(ext), key, v, members)?;
            }
            Ok(())
        }
        (_, Some(other)) => Err(ScimError::invalid_value(format!(
            "{} must be given an object of its attributes, got {}",
            ext.id,
            schema::json_kind(other)
        ))),
    }
}

fn apply_attr(
    work: &mut Map<String, Value>,
    op: OpKind,
    t: &AttrTarget<'_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(map) = container_mut(work, t.container, op != OpKind::Remove) else {
        return Ok(());
    };
    let current = take_ci(map, t.def.name);
    let new = match (t.filter, t.sub) {
        (None, None) => whole_attr(op, t, current, value)?,
        (None, Some(sub)) if t.def.multi_valued => every_element_sub(op, t, sub, current, value)?,
        (None, Some(sub)) => single_sub(op, t, sub, current, value)?,
        (Some(filter), sub) => filtered(op, t, filter, sub, current, value)?,
    };
    if let Some(v) = new {
        map.insert(t.def.name.to_string(), v);
    }
    if let Container::Extension(ext) = t.container {
        if work
            .get(ext.id)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            work.remove(ext.id);
        }
    }
    Ok(())
}

/// The object holding `container`'s attributes, its key spelled canonically; created if
/// `create`, else `None` when absent.
fn container_mut(
    work: &mut Map<String, Value>,
    container: Container,
    create: bool,
) -> Option<&mut Map<String, Value>> {
    let ext = match container {
        Container::Top => return Some(work),
        Container::Extension(ext) => ext,
    };
    let existing = take_ci(work, ext.id).filter(Value::is_object);
    match existing {
        Some(obj) => {
            work.insert(ext.id.to_string(), obj);
        }
        None if create => {
            work.insert(ext.id.to_string(), Value::Object(Map::new()));
        }
        None => return None,
    }
    work.get_mut(ext.id).and_then(Value::as_object_mut)
}

/// Remove every key equal to `name` ignoring case; the exact spelling's value wins.
fn take_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let mut found = map.remove(name);
    let others: Vec<String> = map
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    for key in others {
        if let Some(v) = map.remove(&key) {
            found.get_or_insert(v);
        }
    }
    found
}

fn into_elements(current: Option<Value>) -> Vec<Value> {
    match current {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    }
}

fn non_empty(elements: Vec<Value>) -> Option<Value> {
    (!elements.is_empty()).then_some(Value::Array(elements))
}

/// The attribute itself: `userName`, `name`, `emails`, `urn:…:User:manager`.
fn whole_attr(
    op: OpKind,
    t: &AttrTarget<'_>,
    current: Option<Value>,
    value: Option<&Value>,
) -> Result<Option<Value>, ScimError> {
    let def = t.def;
    let label = t.value_label();
    let v = value.unwrap_or(&Value::Null);
    if op == OpKind::Remove {
        return if def.multi_valued && !v.is_null() {
            remove_listed(t, current, v)
        } else {
            Ok(None)
        };
    }
    if def.multi_valued {
        let incoming = into_elements(schema::normalize_attr(def, v, &label)?);
        if op == OpKind::Replace {
            return Ok(non_empty(incoming));
        }
        let mut elements = into_elements(current);
        let mut touched = vec![false; elements.len()];
        for e in incoming {
            if !elements.contains(&e) {
                elements.push(e);
                touched.push(true);
            }
        }
        demote_other_primaries(&mut elements, &touched);
        return Ok(non_empty(elements));
    }
    if def.ty == AttrType::Complex {
        return merge_complex(def, current, v, &label);
    }
    schema::normalize_attr(def, v, &label)
}

/// add/replace of a single-valued complex attribute (see the module doc).
fn merge_complex(
    def: &'static AttrDef,
    current: Option<Value>,
    v: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let Value::Object(incoming) = v else {
        // A bare id for `manager`, `null`, or a type error: normalisation decides.
        return schema::normalize_attr(def, v, label);
    };
    let new_identity = def.sub_attr("value").is_some()
        && schema::key_ci(incoming, "value").is_some_and(|x| !x.is_null());
    let mut merged = match current {
        Some(Value::Object(m)) if !new_identity => m,
        _ => Map::new(),
    };
    for (k, x) in incoming {
        take_ci(&mut merged, k);
        merged.insert(k.clone(), x.clone());
    }
    schema::normalize_element(def, &Value::Object(merged), label)
}

/// `name.givenName`, `urn:…:User:manager.value`.
fn single_sub(
    op: OpKind,
    t: &AttrTarget<'_>,
    sub: &'static AttrDef,
    current: Option<Value>,
    value: Option<&Value>,
) -> Result<Option<Value>, ScimError> {
    let mut obj = match current {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    take_ci(&mut obj, sub.name);
    if op != OpKind::Remove {
        let v = value.unwrap_or(&Value::Null);
        if let Some(nv) = schema::normalize_attr(sub, v, &t.sub_label(sub))? {
            obj.insert(sub.name.to_string(), nv);
        }
    }
    Ok((!obj.is_empty()).then_some(Value::Object(obj)))
}

/// `emails.value` without a filter: the sub-attribute of every element; with no elements, an
/// add/replace creates one.
fn every_element_sub(
    op: OpKind,
    t: &AttrTarget<'_>,
    sub: &'static AttrDef,
    current: Option<Value>,
    value: Option<&Value>,
) -> Result<Option<Value>, ScimError> {
    let new = match op {
        OpKind::Remove => None,
        OpKind::Add | OpKind::Replace => {
            schema::normalize_attr(sub, value.unwrap_or(&Value::Null), &t.sub_label(sub))?
        }
    };
    let mut elements = into_elements(current);
    if elements.is_empty() {
        if let Some(nv) = new {
            let mut obj = Map::new();
            obj.insert(sub.name.to_string(), nv);
            elements.push(Value::Object(obj));
        }
        return Ok(non_empty(elements));
    }
    let out = elements
        .into_iter()
        .filter_map(|e| set_sub(e, sub, new.clone()))
        .collect();
    Ok(non_empty(out))
}

/// An element with `sub` set (or removed when `new` is `None`); `None` when it became empty.
fn set_sub(element: Value, sub: &AttrDef, new: Option<Value>) -> Option<Value> {
    let Value::Object(mut obj) = element else {
        return Some(element);
    };
    take_ci(&mut obj, sub.name);
    if let Some(nv) = new {
        obj.insert(sub.name.to_string(), nv);
    }
    (!obj.is_empty()).then_some(Value::Object(obj))
}

/// `emails[type eq "work"]` and `emails[type eq "work"].value`.
fn filtered(
    op: OpKind,
    t: &AttrTarget<'_>,
    filter: &Filter,
    sub: Option<&'static AttrDef>,
    current: Option<Value>,
    value: Option<&Value>,
) -> Result<Option<Value>, ScimError> {
    let def = t.def;
    let elements = into_elements(current);
    let case_exact = |p: &AttrPath| element_case_exact(def, p);
    let matched: Vec<bool> = elements
        .iter()
        .map(|e| filter.matches(e, &case_exact))
        .collect();
    let label = t.value_label();

    if op == OpKind::Remove {
        let out = elements
            .into_iter()
            .zip(&matched)
            .filter_map(|(e, m)| match (m, sub) {
                (false, _) => Some(e),
                (true, None) => None,
                (true, Some(sub)) => set_sub(e, sub, None),
            })
            .collect();
        return Ok(non_empty(out));
    }

    let v = value.unwrap_or(&Value::Null);
    let new_sub = match sub {
        Some(sub) => Some(schema::normalize_attr(sub, v, &t.sub_label(sub))?),
        None => None,
    };

    if !matched.contains(&true) {
        let Some(mut fields) = creation_fields(def, filter) else {
            return Err(ScimError::no_target(format!(
                "`path` {:?}: no value of {} matches the filter, and only a filter of `eq` \
                 comparisons (joined by `and`) says how to create one",
                shorten(&t.path),
                label
            )));
        };
        match (sub, new_sub) {
            (Some(_), Some(None)) => return Ok(non_empty(elements)),
            (Some(sub), Some(Some(nv))) => {
                fields.insert(sub.name.to_string(), nv);
            }
            (_, _) => match v {
                Value::Null => return Ok(non_empty(elements)),
                Value::Object(incoming) => {
                    for (k, x) in incoming {
                        take_ci(&mut fields, k);
                        fields.insert(k.clone(), x.clone());
                    }
                }
                other => {
                    return Err(ScimError::invalid_value(format!(
                        "{label} values are objects, got {}",
                        schema::json_kind(other)
                    )))
                }
            },
        }
        let mut elements = elements;
        let mut touched = vec![false; elements.len()];
        if let Some(created) = schema::normalize_element(def, &Value::Object(fields), &label)? {
            elements.push(created);
            touched.push(true);
        }
        demote_other_primaries(&mut elements, &touched);
        return Ok(non_empty(elements));
    }

    let mut out = Vec::with_capacity(elements.len());
    let mut touched = Vec::with_capacity(elements.len());
    for (e, m) in elements.into_iter().zip(matched) {
        if !m {
            out.push(e);
            touched.push(false);
            continue;
        }
        let updated = match (sub, &new_sub) {
            (Some(sub), Some(nv)) => set_sub(e, sub, nv.clone())
                .map(|x| schema::normalize_element(def, &x, &label))
                .transpose()?
                .flatten(),
            // RFC 7644 §3.5.2.3: matching values are replaced; an add merges into them.
            _ if op == OpKind::Add => match (e, v) {
                (Value::Object(mut obj), Value::Object(incoming)) => {
                    for (k, x) in incoming {
                        take_ci(&mut obj, k);
                        obj.insert(k.clone(), x.clone());
                    }
                    schema::normalize_element(def, &Value::Object(obj), &label)?
                }
                (_, other) => schema::normalize_element(def, other, &label)?,
            },
            _ => schema::normalize_element(def, v, &label)?,
        };
        if let Some(u) = updated {
            out.push(u);
            touched.push(true);
        }
    }
    demote_other_primaries(&mut out, &touched);
    Ok(non_empty(out))
}

/// Paths inside a value filter are relative to the element: `type` means `emails.type`.
fn element_case_exact(def: &AttrDef, path: &AttrPath) -> bool {
    path.urn.is_none()
        && path.sub.is_none()
        && def.sub_attr(&path.name).is_some_and(|d| d.case_exact)
}

/// The element a filter of `eq` comparisons describes (`type eq "work" and primary eq true`
/// → `{"type": "work", "primary": true}`); `None` for any other filter.
fn creation_fields(def: &AttrDef, filter: &Filter) -> Option<Map<String, Value>> {
    let pairs = filter.eq_conjuncts()?;
    let mut fields = Map::new();
    for (path, lit) in pairs {
        let sub = def.sub_attr(&path.name)?;
        fields.insert(sub.name.to_string(), lit.clone());
    }
    Some(fields)
}

/// `remove` of a multi-valued attribute with a `value` listing the elements to drop,
/// matched by their `value` sub-attribute when the listed element has one, else whole.
fn remove_listed(
    t: &AttrTarget<'_>,
    current: Option<Value>,
    listed: &Value,
) -> Result<Option<Value>, ScimError> {
    let listed = into_elements(schema::normalize_attr(t.def, listed, &t.value_label())?);
    let exact = t.def.sub_attr("value").is_some_and(|d| d.case_exact);
    let same_value = |a: &Value, b: &Value| match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) if !exact => a.to_lowercase() == b.to_lowercase(),
        _ => a == b,
    };
    let out = into_elements(current)
        .into_iter()
        .filter(|e| {
            !listed
                .iter()
                .any(|l| match (l.get("value"), e.get("value")) {
                    (Some(lv), Some(ev)) => same_value(lv, ev),
                    _ => l == e,
                })
        })
        .collect();
    Ok(non_empty(out))
}

/// RFC 7644 §3.5.2: a value newly marked primary takes the mark from the others.
fn demote_other_primaries(elements: &mut [Value], touched: &[bool]) {
    let new_primary = elements
        .iter()
        .zip(touched)
        .any(|(e, t)| *t && schema::is_primary(e));
    if !new_primary {
        return;
    }
    for (e, t) in elements.iter_mut().zip(touched) {
        if !*t && schema::is_primary(e) {
            if let Some(obj) = e.as_object_mut() {
                obj.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

// ---- group members ----

fn apply_members(
    op: OpKind,
    t: &AttrTarget<'_>,
    value: Option<&Value>,
    members: &mut MemberTracker,
) -> Result<(), ScimError> {
    if t.sub.is_some() {
        return Err(ScimError::invalid_path(format!(
            "`path` {:?}: members are added and removed whole; their sub-attributes cannot \
             be patched",
            shorten(&t.path)
        )));
    }
    match (op, t.filter, value) {
        (OpKind::Remove, Some(filter), _) => {
            let ids = filter.equality_literals("value").ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "`path` {:?}: members can only be selected by `value eq \"<id>\"`, \
                     optionally joined with `or`",
                    shorten(&t.path)
                ))
            })?;
            for id in ids.into_iter().filter_map(Value::as_str) {
                members.remove(id.to_string());
            }
        }
        (OpKind::Remove, None, None | Some(Value::Null)) => members.replace_all(Vec::new()),
        (OpKind::Remove, None, Some(listed)) => {
            for id in member_ids(t.def, listed)? {
                members.remove(id);
            }
        }
        (OpKind::Add, None, v) => {
            for (id, display) in member_entries(t.def, v.unwrap_or(&Value::Null))? {
                members.note_display(&id, display);
                members.add(id);
            }
        }
        (OpKind::Replace, None, v) => {
            let entries = member_entries(t.def, v.unwrap_or(&Value::Null))?;
            for (id, display) in &entries {
                members.note_display(id, display.clone());
            }
            members.replace_all(entries.into_iter().map(|(id, _)| id).collect());
        }
        (OpKind::Add | OpKind::Replace, Some(_), _) => {
            return Err(ScimError::invalid_path(format!(
                "`path` {:?}: add or replace members with the path \"members\" and a list of \
                 {{\"value\": \"<id>\"}}",
                shorten(&t.path)
            )))
        }
    }
    Ok(())
}

fn member_ids(def: &'static AttrDef, value: &Value) -> Result<Vec<String>, ScimError> {
    Ok(member_entries(def, value)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Member ids with the `display` sent alongside, if any.
fn member_entries(
    def: &'static AttrDef,
    value: &Value,
) -> Result<Vec<(String, Option<String>)>, ScimError> {
    Ok(
        into_elements(schema::normalize_attr(def, value, "members")?)
            .iter()
            .filter_map(|m| {
                let id = m.get("value").and_then(Value::as_str)?;
                let display = m.get("display").and_then(Value::as_str).map(str::to_string);
                Some((id.to_string(), display))
            })
            .collect(),
    )
}

/// Folds member operations in order (see [`MemberChanges`]).
#[derive(Default)]
struct MemberTracker {
    /// Set by a replace or a remove-all: the membership from then on, before later ops.
    base: Option<Vec<String>>,
    /// Ids touched since `base` (or since the start), first-touch order.
    order: Vec<String>,
    /// Each touched id's last action: true = added, false = removed.
    last: HashMap<String, bool>,
    display: BTreeMap<String, String>,
}

impl MemberTracker {
    fn add(&mut self, id: String) {
        self.record(id, true);
    }
    fn note_display(&mut self, id: &str, display: Option<String>) {
        if let Some(d) = display {
            self.display.insert(id.to_string(), d);
        }
    }
    fn remove(&mut self, id: String) {
        self.record(id, false);
    }
    fn record(&mut self, id: String, added: bool) {
        if self.last.insert(id.clone(), added).is_none() {
            self.order.push(id);
        }
    }
    fn replace_all(&mut self, ids: Vec<String>) {
        let mut seen = HashSet::new();
        self.base = Some(
            ids.into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect(),
        );
        self.order.clear();
        self.last.clear();
    }
    fn finish(self) -> MemberChanges {
        let MemberTracker {
            base,
            order,
            last,
            mut display,
        } = self;
        let added = |id: &String| last.get(id) == Some(&true);
        match base {
            Some(base) => {
                let in_base: HashSet<&String> = base.iter().collect();
                let mut all: Vec<String> = base
                    .iter()
                    .filter(|id| last.get(*id) != Some(&false))
                    .cloned()
                    .collect();
                all.extend(
                    order
                        .iter()
                        .filter(|id| added(id) && !in_base.contains(id))
                        .cloned(),
                );
                let kept: HashSet<&String> = all.iter().collect();
                display.retain(|id, _| kept.contains(id));
                MemberChanges {
                    add: Vec::new(),
                    remove: Vec::new(),
                    replace_all: Some(all),
                    display,
                }
            }
            None => {
                let (add, remove): (Vec<String>, Vec<String>) =
                    order.into_iter().partition(|id| added(id));
                let kept: HashSet<&String> = add.iter().collect();
                display.retain(|id, _| kept.contains(id));
                MemberChanges {
                    add,
                    remove,
                    replace_all: None,
                    display,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{ScimType, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use proptest::prelude::*;
    use serde_json::json;

    const ENT: &str = ENTERPRISE_USER_SCHEMA;

    fn request(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
    }

    fn run(
        kind: ResourceKind,
        doc: &Value,
        ops: Value,
    ) -> Result<(Value, PatchOutcome), ScimError> {
        let ops = parse_patch_request(&request(ops))?;
        let mut out = doc.clone();
        let outcome = apply_patch(kind, &mut out, &ops);
        if outcome.is_err() {
            assert_eq!(
                &out, doc,
                "a failed patch must leave the resource untouched"
            );
        }
        outcome.map(|o| (out, o))
    }

    fn ok(kind: ResourceKind, doc: &Value, ops: Value) -> (Value, PatchOutcome) {
        match run(kind, doc, ops.clone()) {
            Ok(r) => r,
            Err(e) => panic!("{ops} failed: {e:?}"),
        }
    }

    fn fails(kind: ResourceKind, doc: &Value, ops: Value, scim_type: ScimType) -> String {
        match run(kind, doc, ops.clone()) {
            Ok((v, _)) => panic!("{ops} succeeded with {v}"),
            Err(e) => {
                assert_eq!(e.status, 400, "{e:?}");
                assert_eq!(e.scim_type, Some(scim_type), "{e:?}");
                e.detail
            }
        }
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENT],
            "externalId": "bjensen",
            "userName": "bjensen@example.com",
            "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"},
            "displayName": "Babs Jensen",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [
                {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                 "region": "CA", "postalCode": "91608", "country": "USA", "primary": true},
                {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}
            ],
            "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
            "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw"}],
            ENT: {"employeeNumber": "701984", "department": "Tour Operations", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}}
        })
    }

    fn bare_user() -> Value {
        json!({"schemas": [USER_SCHEMA], "userName": "new@example.com"})
    }

    fn group() -> Value {
        json!({"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides", "externalId": "g1"})
    }

    const U: ResourceKind = ResourceKind::User;
    const G: ResourceKind = ResourceKind::Group;

    // ---- parse_patch_request ----

    #[test]
    fn parse_is_lenient_about_case() {
        let body = json!({
            "SCHEMAS": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
            "operations": [
                {"OP": "Replace", "Path": "active", "VALUE": "False"},
                {"op": "ADD", "path": "nickName", "value": "Babs"},
                {"op": "remove", "path": " title "}
            ]
        });
        let ops = parse_patch_request(&body);
        let kinds: Vec<OpKind> = ops.iter().flatten().map(|o| o.op).collect();
        assert_eq!(kinds, [OpKind::Replace, OpKind::Add, OpKind::Remove]);
        let ops = ops.unwrap_or_default();
        assert_eq!(ops[0].value, Some(json!("False")));
        assert_eq!(
            ops[2].path.as_ref().map(|p| p.attr.name.as_str()),
            Some("title")
        );
    }

    #[test]
    fn parse_errors() {
        let err = |body: Value| {
            parse_patch_request(&body)
                .err()
                .map(|e| (e.scim_type, e.detail))
        };
        let syntax = Some(ScimType::InvalidSyntax);
        assert_eq!(err(json!([])).map(|e| e.0), Some(syntax));
        assert_eq!(
            err(json!({"Operations": [{"op": "add", "value": {}}]})).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(
            err(json!({"schemas": [USER_SCHEMA], "Operations": [{"op": "add", "value": {}}]}))
                .map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(err(request(json!([]))).map(|e| e.0), Some(syntax));
        assert_eq!(
            err(request(json!({"op": "add"}))).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(
            err(json!({"schemas": [PATCH_OP_SCHEMA]})).map(|e| e.0),
            Some(syntax)
        );
        let e = err(request(
            json!([{"op": "add", "path": "title", "value": "x"}, {"op": "merge", "path": "x", "value": 1}]),
        ));
        assert_eq!(e.as_ref().map(|e| e.0), Some(syntax));
        assert!(e.is_some_and(|e| e.1.starts_with("Operations[1]:") && e.1.contains("merge")));
        assert_eq!(
            err(request(json!([{"path": "title", "value": "x"}]))).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(
            err(request(json!([{"op": 1, "path": "title", "value": "x"}]))).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(err(request(json!(["add"]))).map(|e| e.0), Some(syntax));
        // add/replace need a value; without a path it must be an object.
        assert_eq!(
            err(request(json!([{"op": "add", "path": "title"}]))).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(
            err(request(json!([{"op": "replace", "value": "x"}]))).map(|e| e.0),
            Some(syntax)
        );
        assert_eq!(
            err(request(json!([{"op": "replace", "value": [{"a": 1}]}]))).map(|e| e.0),
            Some(syntax)
        );
        // RFC 7644 §3.5.2.2: remove without path is noTarget.
        assert_eq!(
            err(request(json!([{"op": "remove"}]))).map(|e| e.0),
            Some(Some(ScimType::NoTarget))
        );
        assert_eq!(
            err(request(json!([{"op": "Remove", "value": {"title": "x"}}]))).map(|e| e.0),
            Some(Some(ScimType::NoTarget))
        );
        // Unparsable paths are invalidPath.
        for bad in [
            "emails[type eq",
            "name..givenName",
            "emails[type eq \"work\"]]",
            "a b",
            "[x]",
            "emails[]",
        ] {
            let e = err(request(
                json!([{"op": "replace", "path": bad, "value": "x"}]),
            ));
            assert_eq!(e.map(|e| e.0), Some(Some(ScimType::InvalidPath)), "{bad}");
        }
        assert_eq!(
            err(request(json!([{"op": "replace", "path": 7, "value": "x"}]))).map(|e| e.0),
            Some(Some(ScimType::InvalidPath))
        );
    }

    #[test]
    fn parse_accepts_empty_path_as_none_and_null_value() {
        let ops = parse_patch_request(&request(json!([
            {"op": "replace", "path": "", "value": {"title": "x"}},
            {"op": "replace", "path": "title", "value": null}
        ])))
        .unwrap_or_default();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].path, None);
        assert_eq!(ops[1].value, Some(Value::Null));
    }

    // ---- RFC 7644 §3.5.2 examples ----

    #[test]
    fn rfc_add_member() {
        let (doc, out) = ok(
            G,
            &group(),
            json!([{
                "op": "add", "path": "members",
                "value": [{
                    "display": "Babs Jensen",
                    "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                    "value": "2819c223-7f76-453a-919d-413861904646"
                }]
            }]),
        );
        assert_eq!(doc, group());
        assert_eq!(out.members.add, ["2819c223-7f76-453a-919d-413861904646"]);
        assert_eq!(out.changed_paths, ["members"]);
    }

    #[test]
    fn rfc_add_without_path() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{
                "op": "add",
                "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@x.org", "type": "other"}], "nickname": "Babs"}
            }]),
        );
        // The identical home email is not duplicated.
        assert_eq!(doc["emails"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            doc["emails"][2],
            json!({"value": "b@x.org", "type": "other"})
        );
        assert_eq!(doc["nickName"], "Babs");
        assert!(doc.get("nickname").is_none());
        assert_eq!(out.changed_paths, ["emails", "nickName"]);
    }

    #[test]
    fn result_is_the_stored_form() {
        let mut rendered = user();
        rendered["id"] = json!("2819c223-7f76-453a-919d-413861904646");
        rendered["meta"] = json!({"resourceType": "User", "version": "W/\"1\""});
        rendered["groups"] = json!([{"value": "g1", "display": "Admins"}]);
        let (doc, out) = ok(
            U,
            &rendered,
            json!([{"op": "replace", "path": "title", "value": "Guide"}]),
        );
        let mut expected = user();
        expected["title"] = json!("Guide");
        assert_eq!(doc, expected);
        assert_eq!(out.changed_paths, ["title"]);
    }

    #[test]
    fn repeated_id_in_value_must_match() {
        let mut stored = group();
        stored["id"] = json!("abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        let (doc, out) = ok(
            G,
            &stored,
            json!([{"op": "replace", "value": {
                "id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Renamed",
                "meta": {"lastModified": "2001-01-01T00:00:00Z"}
            }}]),
        );
        assert_eq!(
            doc,
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Renamed", "externalId": "g1"})
        );
        assert_eq!(out.changed_paths, ["displayName"]);
        let d = fails(
            G,
            &stored,
            json!([{"op": "replace", "value": {"id": "another-group", "displayName": "Hijacked"}}]),
            ScimType::Mutability,
        );
        assert!(d.contains("id is readOnly"), "{d}");
        // Without an id in the resource there is nothing to contradict.
        let (doc, _) = ok(
            G,
            &group(),
            json!([{"op": "replace", "value": {"id": "another-group"}}]),
        );
        assert_eq!(doc, group());
    }

    #[test]
    fn rfc_remove_one_member_and_all_members() {
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}
            ]),
        );
        assert_eq!(out.members.remove, ["2819c223-7f76-453a-919d-413861904646"]);
        assert_eq!(out.changed_paths, ["members"]);
        let (_, out) = ok(G, &group(), json!([{"op": "remove", "path": "members"}]));
        assert_eq!(
            out.members,
            MemberChanges {
                replace_all: Some(vec![]),
                display: BTreeMap::new(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn rfc_remove_by_complex_filter() {
        let doc = json!({
            "schemas": [USER_SCHEMA], "userName": "u",
            "emails": [
                {"value": "a@example.com", "type": "work"},
                {"value": "b@EXAMPLE.com", "type": "work"},
                {"value": "c@example.com", "type": "home"},
                {"value": "d@other.org", "type": "work"}
            ]
        });
        let (doc, out) = ok(
            U,
            &doc,
            json!([
                {"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}
            ]),
        );
        assert_eq!(
            doc["emails"],
            json!([{"value": "c@example.com", "type": "home"}, {"value": "d@other.org", "type": "work"}])
        );
        assert_eq!(out.changed_paths, ["emails"]);
    }

    #[test]
    fn rfc_remove_x509_certificate_and_all_values() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([
                {"op": "remove", "path": "x509Certificates[value eq \"MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw\"]"}
            ]),
        );
        assert!(doc.get("x509Certificates").is_none());
        let (doc, out) = ok(U, &user(), json!([{"op": "remove", "path": "emails"}]));
        assert!(doc.get("emails").is_none());
        assert_eq!(out.changed_paths, ["emails"]);
    }

    #[test]
    fn rfc_replace_all_members_by_remove_then_add() {
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "members", "value": [
                    {"display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223", "value": "2819c223"},
                    {"display": "James Smith", "$ref": "https://example.com/v2/Users/08e1d05d", "value": "08e1d05d"}
                ]}
            ]),
        );
        assert_eq!(
            out.members.replace_all,
            Some(vec!["2819c223".to_string(), "08e1d05d".to_string()])
        );
        assert!(out.members.add.is_empty() && out.members.remove.is_empty());
    }

    #[test]
    fn rfc_replace_members() {
        let (_, out) = ok(
            G,
            &group(),
            json!([{"op": "replace", "path": "members", "value": [
                {"display": "Babs Jensen", "value": "2819c223"},
                {"display": "James Smith", "value": "08e1d05d"}
            ]}]),
        );
        assert_eq!(
            out.members.replace_all,
            Some(vec!["2819c223".to_string(), "08e1d05d".to_string()])
        );
    }

    #[test]
    fn rfc_replace_filtered_element() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{
                "op": "replace", "path": "addresses[type eq \"work\"]",
                "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood",
                          "region": "CA", "postalCode": "91608", "country": "US",
                          "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": true}
            }]),
        );
        assert_eq!(
            doc["addresses"][0]["streetAddress"],
            "911 Universal City Plaza"
        );
        assert_eq!(doc["addresses"][0]["country"], "US");
        assert_eq!(doc["addresses"][1], user()["addresses"][1]);
        assert_eq!(out.changed_paths, ["addresses"]);
    }

    #[test]
    fn rfc_replace_filtered_sub_attribute() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{
                "op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"
            }]),
        );
        let mut expected = user()["addresses"].clone();
        expected[0]["streetAddress"] = json!("1010 Broadway Ave");
        assert_eq!(doc["addresses"], expected);
    }

    #[test]
    fn rfc_replace_without_path() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{
                "op": "replace",
                "value": {
                    "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                               {"value": "babs@jensen.org", "type": "home"}],
                    "nickName": "Babs"
                }
            }]),
        );
        assert_eq!(doc["emails"], user()["emails"]);
        assert_eq!(doc["nickName"], "Babs");
        assert_eq!(out.changed_paths, ["nickName"]);
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "replace", "value": {"emails": [{"value": "only@x.org"}]}}]),
        );
        assert_eq!(doc["emails"], json!([{"value": "only@x.org"}]));
    }

    #[test]
    fn rfc_member_sub_attribute_path_is_invalid() {
        // Members live in their own table: their sub-attributes cannot be patched.
        fails(
            G,
            &group(),
            json!([{
                "op": "replace",
                "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].display",
                "value": "x"
            }]),
            ScimType::InvalidPath,
        );
        // RFC 7644 §3.5.2's `.displayName` is no member sub-attribute: ignored like any
        // unknown attribute.
        let (doc, out) = ok(
            G,
            &group(),
            json!([{
                "op": "replace",
                "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].displayName",
                "value": "x"
            }]),
        );
        assert_eq!(doc, group());
        assert!(out.changed_paths.is_empty());
    }

    #[test]
    fn rfc_replace_complex_merges_sub_attributes() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs"}}]),
        );
        assert_eq!(
            doc["name"],
            json!({"givenName": "Babs", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"})
        );
        assert_eq!(out.changed_paths, ["name"]);
    }

    #[test]
    fn rfc_primary_moves() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.org", "type": "work", "primary": true}]}]),
        );
        assert_eq!(doc["emails"][0]["primary"], false);
        assert_eq!(doc["emails"][2]["primary"], true);
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
        );
        assert_eq!(doc["emails"][0]["primary"], false);
        assert_eq!(doc["emails"][1]["primary"], true);
        // Two primaries in one replaced list is the client's error.
        fails(
            U,
            &user(),
            json!([{"op": "replace", "path": "emails", "value": [
                {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}
            ]}]),
            ScimType::InvalidValue,
        );
    }

    // ---- Entra ID (Microsoft's SCIM tutorial and known quirks) ----

    #[test]
    fn entra_update_multi_and_single_valued() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]),
        );
        assert_eq!(
            doc["emails"][0],
            json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
        );
        assert_eq!(doc["name"]["familyName"], "updatedFamilyName");
        assert_eq!(out.changed_paths, ["emails", "name"]);
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}
            ]),
        );
        assert_eq!(
            doc["userName"],
            "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
        );
        assert_eq!(out.changed_paths, ["userName"]);
    }

    #[test]
    fn entra_disable_user_with_bool_and_string() {
        for v in [json!(false), json!("False"), json!("false"), json!("FALSE")] {
            let (doc, out) = ok(
                U,
                &user(),
                json!([{"op": "Replace", "path": "active", "value": v}]),
            );
            assert_eq!(doc["active"], false);
            assert_eq!(out.changed_paths, ["active"]);
        }
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        );
        assert_eq!(doc["active"], true);
        assert!(out.changed_paths.is_empty());
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "Replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
        );
        assert_eq!(doc["emails"][1]["primary"], true);
    }

    #[test]
    fn entra_adds_work_email_that_does_not_exist() {
        let (doc, out) = ok(
            U,
            &bare_user(),
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"},
                {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+45 1234"}
            ]),
        );
        assert_eq!(doc["emails"], json!([{"type": "work", "value": "x@y.com"}]));
        assert_eq!(
            doc["addresses"],
            json!([{"type": "work", "formatted": "1 Main St", "locality": "Springfield"}])
        );
        assert_eq!(
            doc["phoneNumbers"],
            json!([{"type": "mobile", "value": "+45 1234"}])
        );
        assert_eq!(out.changed_paths, ["addresses", "emails", "phoneNumbers"]);
        // A second work email is not created when one exists: it is updated.
        let (doc, _) = ok(
            U,
            &doc,
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "z@y.com"}]),
        );
        assert_eq!(doc["emails"], json!([{"type": "work", "value": "z@y.com"}]));
        // With an `and` of `eq`s every compared field is set.
        let (doc, _) = ok(
            U,
            &bare_user(),
            json!([
                {"op": "replace", "path": "emails[type eq \"work\" and primary eq true].value", "value": "p@y.com"}
            ]),
        );
        assert_eq!(
            doc["emails"],
            json!([{"type": "work", "primary": true, "value": "p@y.com"}])
        );
        // No sub-attribute: the value object joins the filter's fields.
        let (doc, _) = ok(
            U,
            &bare_user(),
            json!([
                {"op": "add", "path": "emails[type eq \"home\"]", "value": {"value": "h@y.com"}}
            ]),
        );
        assert_eq!(doc["emails"], json!([{"type": "home", "value": "h@y.com"}]));
    }

    #[test]
    fn filter_that_cannot_create_is_no_target() {
        let d = fails(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "emails[value co \"nomatch\"].value", "value": "x@y"}
            ]),
            ScimType::NoTarget,
        );
        assert!(d.starts_with("Operations[0]:"), "{d}");
        fails(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "x@y"}
            ]),
            ScimType::NoTarget,
        );
        // RFC 7644 §3.5.2.3 example shape: replace with a filter that matches nothing.
        fails(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "emails[value ew \"@nodomain.com\"]", "value": {"value": "joe@devnull.com"}}
            ]),
            ScimType::NoTarget,
        );
    }

    #[test]
    fn remove_with_filter_matching_nothing_is_a_no_op() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "Remove", "path": "emails[type eq \"other\"]"}]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "Remove", "path": "ims"}, {"op": "remove", "path": "nickName"}]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
    }

    #[test]
    fn remove_filtered_sub_attribute() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "remove", "path": "addresses[type eq \"work\"].region"}]),
        );
        assert!(doc["addresses"][0].get("region").is_none());
        assert_eq!(doc["addresses"][0]["locality"], "Hollywood");
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "remove", "path": "phoneNumbers[type eq \"work\"].value"},
                                             {"op": "remove", "path": "phoneNumbers[type eq \"work\"].type"}]),
        );
        assert!(doc.get("phoneNumbers").is_none());
    }

    #[test]
    fn entra_manager_as_bare_id_object_and_removal() {
        let path = format!("{ENT}:manager");
        let (doc, out) = ok(
            U,
            &bare_user(),
            json!([{"op": "Add", "path": path, "value": "mgr-2"}]),
        );
        assert_eq!(doc[ENT], json!({"manager": {"value": "mgr-2"}}));
        assert_eq!(doc["schemas"], json!([USER_SCHEMA, ENT]));
        assert_eq!(out.changed_paths, [format!("{ENT}:manager")]);

        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "Replace", "path": path, "value": "mgr-3"}]),
        );
        assert_eq!(doc[ENT]["manager"], json!({"value": "mgr-3"}));
        assert_eq!(out.changed_paths, [format!("{ENT}:manager")]);

        let with_ref = {
            let mut u = user();
            u[ENT]["manager"] = json!({"value": "old", "$ref": "../Users/old"});
            u
        };
        let (doc, _) = ok(
            U,
            &with_ref,
            json!([{"op": "replace", "path": path, "value": {"value": "new"}}]),
        );
        assert_eq!(
            doc[ENT]["manager"],
            json!({"value": "new"}),
            "a new manager id drops the old $ref"
        );
        let (doc, _) = ok(
            U,
            &with_ref,
            json!([{"op": "replace", "path": format!("{ENT}:manager.value"), "value": "mgr-4"}]),
        );
        assert_eq!(doc[ENT]["manager"]["value"], "mgr-4");

        let (doc, out) = ok(U, &user(), json!([{"op": "Remove", "path": path}]));
        assert!(doc[ENT].get("manager").is_none());
        assert_eq!(out.changed_paths, [format!("{ENT}:manager")]);
        // Entra clears with an empty string, too.
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "Replace", "path": path, "value": ""}]),
        );
        assert!(doc[ENT].get("manager").is_none());
        // Removing the last enterprise attribute drops the extension and its URN.
        let only_manager = json!({"schemas": [USER_SCHEMA, ENT], "userName": "u", ENT: {"manager": {"value": "m"}}});
        let (doc, _) = ok(U, &only_manager, json!([{"op": "Remove", "path": path}]));
        assert_eq!(doc, json!({"schemas": [USER_SCHEMA], "userName": "u"}));
    }

    #[test]
    fn entra_unqualified_manager_path() {
        // Microsoft's documented form: Add, bare `manager` path, one-element array.
        let (doc, out) = ok(
            U,
            &bare_user(),
            json!([{"op": "Add", "path": "manager", "value": [
                {"$ref": "http://.../scim/Users/m-1", "value": "m-1"}
            ]}]),
        );
        assert_eq!(
            doc[ENT],
            json!({"manager": {"value": "m-1", "$ref": "http://.../scim/Users/m-1"}})
        );
        assert_eq!(doc["schemas"], json!([USER_SCHEMA, ENT]));
        assert!(doc.get("manager").is_none());
        assert_eq!(out.changed_paths, [format!("{ENT}:manager")]);
        let (doc, _) = ok(
            U,
            &doc,
            json!([{"op": "Replace", "path": "manager", "value": "m-2"}]),
        );
        assert_eq!(doc[ENT], json!({"manager": {"value": "m-2"}}));
        let (doc, _) = ok(
            U,
            &doc,
            json!([{"op": "Replace", "value": {"department": "Ops"}}]),
        );
        assert_eq!(doc[ENT]["department"], "Ops");
        let (doc, _) = ok(
            U,
            &doc,
            json!([{"op": "Remove", "path": "manager"}, {"op": "Remove", "path": "department"}]),
        );
        assert_eq!(doc, bare_user());
    }

    #[test]
    fn entra_no_path_with_dotted_and_urn_keys() {
        let (doc, out) = ok(
            U,
            &bare_user(),
            json!([{"op": "Add", "value": {
                "name.givenName": "Ann",
                "NAME.familyName": "Lee",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": "m-1",
                "displayName": "Ann Lee",
                "emails[type eq \"work\"].value": "ann@x.org"
            }}]),
        );
        assert_eq!(
            doc,
            json!({
                "schemas": [USER_SCHEMA, ENT],
                "userName": "new@example.com",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "displayName": "Ann Lee",
                "emails": [{"type": "work", "value": "ann@x.org"}],
                ENT: {"department": "Ops", "manager": {"value": "m-1"}}
            })
        );
        assert_eq!(
            out.changed_paths,
            [
                "displayName".to_string(),
                "emails".into(),
                "name".into(),
                format!("{ENT}:department"),
                format!("{ENT}:manager")
            ]
        );
    }

    #[test]
    fn extension_urn_as_key_and_as_path() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "replace", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "Sales", "costCenter": "4130"}
            }}]),
        );
        assert_eq!(
            doc[ENT],
            json!({"employeeNumber": "701984", "department": "Sales", "costCenter": "4130",
                                     "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}})
        );
        let (doc, _) = ok(
            U,
            &bare_user(),
            json!([{"op": "add", "path": ENT, "value": {"division": "North", "manager.value": "m"}}]),
        );
        assert_eq!(
            doc[ENT],
            json!({"division": "North", "manager": {"value": "m"}})
        );
        assert_eq!(doc["schemas"], json!([USER_SCHEMA, ENT]));
        let (doc, out) = ok(U, &user(), json!([{"op": "remove", "path": ENT}]));
        assert!(doc.get(ENT).is_none());
        assert_eq!(doc["schemas"], json!([USER_SCHEMA]));
        assert_eq!(out.changed_paths.len(), 3);
        fails(
            U,
            &user(),
            json!([{"op": "replace", "path": ENT, "value": "Ops"}]),
            ScimType::InvalidValue,
        );
    }

    #[test]
    fn entra_group_members_and_rename() {
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]}
            ]),
        );
        assert_eq!(out.members.add, ["f648f8d5ea4e4cd38e9c"]);
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "a2a1df6dfd3a4d98b6d6"}]}
            ]),
        );
        assert_eq!(out.members.remove, ["a2a1df6dfd3a4d98b6d6"]);
        assert!(out.members.replace_all.is_none());
        let (doc, out) = ok(
            G,
            &group(),
            json!([
                {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}
            ]),
        );
        assert_eq!(
            doc["displayName"],
            "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
        );
        assert_eq!(out.changed_paths, ["displayName"]);
        // Batches and an or-filter.
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "a"}, {"value": "b"}, {"value": "c"}]},
                {"op": "Remove", "path": "members[value eq \"a\" or value eq \"d\"]"}
            ]),
        );
        assert_eq!(out.members.add, ["b", "c"]);
        assert_eq!(out.members.remove, ["a", "d"]);
    }

    #[test]
    fn entra_older_single_value_arrays() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([
                {"op": "Add", "path": "nickName", "value": [{"value": "Babs"}]},
                {"op": "Replace", "path": "title", "value": ["Tour Guide"]}
            ]),
        );
        assert_eq!(doc["nickName"], "Babs");
        assert_eq!(doc["title"], "Tour Guide");
    }

    // ---- Okta ----

    #[test]
    fn okta_deactivate_and_reactivate() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(doc["active"], false);
        assert_eq!(out.changed_paths, ["active"]);
        let (doc, _) = ok(
            U,
            &doc,
            json!([{"op": "replace", "value": {"active": true}}]),
        );
        assert_eq!(doc, user());
    }

    #[test]
    fn okta_group_push() {
        let stored = json!({"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2"});
        // Rename: the echoed id is ignored (and need not be in the stored document).
        let (doc, out) = ok(
            G,
            &stored,
            json!([
                {"op": "replace", "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2 renamed"}}
            ]),
        );
        assert_eq!(
            doc,
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2 renamed"})
        );
        assert_eq!(out.changed_paths, ["displayName"]);
        // Membership change with the unchanged id and name: only members change.
        let (doc, out) = ok(
            G,
            &stored,
            json!([
                {"op": "replace", "value": {"id": "abf4dd94", "displayName": "Test SCIMv2"}},
                {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
                {"op": "add", "path": "members", "value": [{"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}]}
            ]),
        );
        assert_eq!(doc, stored);
        assert_eq!(out.changed_paths, ["members"]);
        assert_eq!(
            out.members,
            MemberChanges {
                add: vec!["23a35c27-23d3-4c03-b4c5-6443c09e7173".into()],
                remove: vec!["89bb1940-b905-4575-9e7f-6f887cfb368e".into()],
                replace_all: None,
                display: BTreeMap::from([(
                    "23a35c27-23d3-4c03-b4c5-6443c09e7173".to_string(),
                    "test.user@okta.local".to_string()
                )]),
            }
        );
        // No change at all: nothing to report, so no version bump.
        let (_, out) = ok(
            G,
            &stored,
            json!([{"op": "replace", "value": {"id": "abf4dd94", "displayName": "Test SCIMv2"}}]),
        );
        assert!(out.changed_paths.is_empty());
        assert!(out.members.is_empty());
    }

    #[test]
    fn members_inside_value_objects() {
        let (_, out) = ok(
            G,
            &group(),
            json!([{"op": "add", "value": {"members": [{"value": "x"}]}}]),
        );
        assert_eq!(out.members.add, ["x"]);
        let (_, out) = ok(
            G,
            &group(),
            json!([{"op": "replace", "value": {"displayName": "N", "members": [{"value": "y"}]}}]),
        );
        assert_eq!(out.members.replace_all, Some(vec!["y".to_string()]));
        assert_eq!(out.changed_paths, ["displayName", "members"]);
    }

    #[test]
    fn member_changes_fold_in_order() {
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}, {"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"a\"]"},
                {"op": "remove", "path": "members[value eq \"c\"]"},
                {"op": "add", "path": "members", "value": [{"value": "c"}]}
            ]),
        );
        assert_eq!(
            out.members,
            MemberChanges {
                add: vec!["b".into(), "c".into()],
                remove: vec!["a".into()],
                replace_all: None,
                display: BTreeMap::new(),
            }
        );
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "add", "path": "members", "value": [{"value": "z"}]},
                {"op": "replace", "path": "members", "value": [{"value": "a"}, {"value": "b"}, {"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"a\"]"},
                {"op": "add", "path": "members", "value": [{"value": "c"}, {"value": "b"}]}
            ]),
        );
        assert_eq!(
            out.members,
            MemberChanges {
                add: vec![],
                remove: vec![],
                replace_all: Some(vec!["b".into(), "c".into()]),
                display: BTreeMap::new(),
            }
        );
        let (_, out) = ok(
            G,
            &group(),
            json!([
                {"op": "remove", "path": "members"},
                {"op": "remove", "path": "members", "value": [{"value": "q"}]}
            ]),
        );
        assert_eq!(out.members.replace_all, Some(vec![]));
    }

    #[test]
    fn member_errors() {
        let d = fails(
            G,
            &group(),
            json!([{"op": "remove", "path": "members[display eq \"Ann\"]"}]),
            ScimType::InvalidFilter,
        );
        assert!(d.contains("value eq"), "{d}");
        fails(
            G,
            &group(),
            json!([{"op": "remove", "path": "members[value eq \"a\" and type eq \"User\"]"}]),
            ScimType::InvalidFilter,
        );
        fails(
            G,
            &group(),
            json!([{"op": "remove", "path": "members[value ne \"a\"]"}]),
            ScimType::InvalidFilter,
        );
        fails(
            G,
            &group(),
            json!([{"op": "add", "path": "members[value eq \"a\"]", "value": [{"value": "a"}]}]),
            ScimType::InvalidPath,
        );
        fails(
            G,
            &group(),
            json!([{"op": "add", "path": "members.value", "value": "a"}]),
            ScimType::InvalidPath,
        );
        fails(
            G,
            &group(),
            json!([{"op": "add", "path": "members", "value": [{"display": "no id"}]}]),
            ScimType::InvalidValue,
        );
        fails(
            G,
            &group(),
            json!([{"op": "add", "path": "members", "value": [{"value": 42}]}]),
            ScimType::InvalidValue,
        );
        fails(
            G,
            &group(),
            json!([{"op": "add", "path": "members", "value": 42}]),
            ScimType::InvalidValue,
        );
    }

    // ---- errors ----

    #[test]
    fn wrong_types_are_invalid_value() {
        for (path, value) in [
            ("active", json!("maybe")),
            ("active", json!(0)),
            ("userName", json!(42)),
            ("userName", json!({"a": 1})),
            ("name", json!("Ann")),
            ("name.givenName", json!(true)),
            ("emails", json!([{"value": 1}])),
            ("emails[type eq \"work\"].value", json!(["a", "b"])),
            ("emails[type eq \"work\"].primary", json!("yes")),
            ("displayName", json!(["a", "b"])),
        ] {
            let d = fails(
                U,
                &user(),
                json!([{"op": "replace", "path": path, "value": value}]),
                ScimType::InvalidValue,
            );
            assert!(d.starts_with("Operations[0]:"), "{d}");
        }
        let d = fails(
            U,
            &user(),
            json!([{"op": "replace", "value": {"active": "nope"}}]),
            ScimType::InvalidValue,
        );
        assert!(d.contains("active"), "{d}");
        fails(
            U,
            &user(),
            json!([{"op": "add", "path": format!("{ENT}:department"), "value": 7}]),
            ScimType::InvalidValue,
        );
    }

    #[test]
    fn read_only_paths_are_mutability_errors() {
        for (op, path) in [
            ("replace", "id"),
            ("add", "meta.lastModified"),
            ("remove", "meta"),
            ("add", "groups"),
            ("remove", "groups"),
            (
                "replace",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
            ),
        ] {
            let op = json!({"op": op, "path": path, "value": "x"});
            fails(U, &user(), json!([op]), ScimType::Mutability);
        }
        fails(
            G,
            &group(),
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            ScimType::Mutability,
        );
        // Inside a value object they are ignored, as a PUT body's would be.
        let (doc, out) = ok(
            U,
            &user(),
            json!([{"op": "replace", "value": {"id": "other", "meta": {}, "groups": [{"value": "g"}]}}]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
    }

    #[test]
    fn required_and_unknown() {
        let d = fails(
            U,
            &user(),
            json!([{"op": "remove", "path": "userName"}]),
            ScimType::InvalidValue,
        );
        assert!(d.contains("userName"), "{d}");
        fails(
            U,
            &user(),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            ScimType::InvalidValue,
        );
        fails(
            G,
            &group(),
            json!([{"op": "remove", "path": "displayName"}]),
            ScimType::InvalidValue,
        );
        // Attributes of no supported schema are ignored, as on POST.
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "add", "path": "favouriteColour", "value": "blue"},
                {"op": "add", "path": "name.nickname", "value": "x"},
                {"op": "add", "path": "urn:example:custom:2.0:User:badge", "value": "7"},
                {"op": "add", "value": {"favouriteColour": "blue", "urn:example:custom:2.0:User": {"badge": "7"}, "schemas": ["x"], "??": 1}}
            ]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
        // Sub-attribute of a simple attribute and filter on a single-valued one are invalid paths.
        fails(
            U,
            &user(),
            json!([{"op": "add", "path": "userName.first", "value": "x"}]),
            ScimType::InvalidPath,
        );
        fails(
            U,
            &user(),
            json!([{"op": "add", "path": "name[givenName eq \"x\"].familyName", "value": "x"}]),
            ScimType::InvalidPath,
        );
    }

    #[test]
    fn password_is_accepted_and_never_stored() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "password", "value": "hunter2!"},
                {"op": "replace", "value": {"password": "hunter3!"}}
            ]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
    }

    #[test]
    fn patch_is_atomic() {
        let doc = user();
        let ops = parse_patch_request(&request(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "active", "value": "maybe"}
        ])))
        .unwrap_or_default();
        let mut target = doc.clone();
        let err = apply_patch(U, &mut target, &ops).err();
        assert_eq!(target, doc);
        assert!(err.is_some_and(|e| e.detail.starts_with("Operations[1]:")));
    }

    #[test]
    fn same_value_changes_nothing() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "displayName", "value": "Babs Jensen"},
                {"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]},
                {"op": "replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "replace", "path": format!("{ENT}:department"), "value": "Tour Operations"}
            ]),
        );
        assert_eq!(doc, user());
        assert!(out.changed_paths.is_empty());
    }

    #[test]
    fn case_insensitive_paths_keep_one_spelling() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "DISPLAYNAME", "value": "B"},
                {"op": "replace", "path": "Name.GivenName", "value": "Barb"},
                {"op": "replace", "path": "EMAILS[TYPE EQ \"WORK\"].VALUE", "value": "w@x.org"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "Guide"}
            ]),
        );
        assert_eq!(doc["displayName"], "B");
        assert_eq!(doc["name"]["givenName"], "Barb");
        assert_eq!(doc["emails"][0]["value"], "w@x.org");
        assert_eq!(doc["title"], "Guide");
        assert!(doc.get("DISPLAYNAME").is_none());
        assert_eq!(
            out.changed_paths,
            ["displayName", "emails", "name", "title"]
        );
    }

    #[test]
    fn unfiltered_sub_attribute_of_multi_valued() {
        let (doc, _) = ok(
            U,
            &bare_user(),
            json!([{"op": "add", "path": "emails.value", "value": "a@x.org"}]),
        );
        assert_eq!(doc["emails"], json!([{"value": "a@x.org"}]));
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "replace", "path": "emails.type", "value": "other"}]),
        );
        assert_eq!(doc["emails"][0]["type"], "other");
        assert_eq!(doc["emails"][1]["type"], "other");
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "remove", "path": "phoneNumbers.type"}]),
        );
        assert_eq!(doc["phoneNumbers"], json!([{"value": "555-555-5555"}]));
    }

    #[test]
    fn remove_listed_values_of_other_attributes() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "remove", "path": "emails", "value": [{"value": "BABS@jensen.org"}]}]),
        );
        assert_eq!(
            doc["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn replace_with_null_clears() {
        let (doc, out) = ok(
            U,
            &user(),
            json!([
                {"op": "replace", "path": "displayName", "value": null},
                {"op": "replace", "value": {"emails": null, "name": {"formatted": null}}}
            ]),
        );
        assert!(doc.get("displayName").is_none());
        assert!(doc.get("emails").is_none());
        assert_eq!(
            doc["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen"})
        );
        assert_eq!(out.changed_paths, ["displayName", "emails", "name"]);
    }

    #[test]
    fn add_merges_into_matched_elements() {
        let (doc, _) = ok(
            U,
            &user(),
            json!([{"op": "add", "path": "addresses[type eq \"home\"]", "value": {"postalCode": "90028"}}]),
        );
        assert_eq!(
            doc["addresses"][1],
            json!({"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood", "postalCode": "90028"})
        );
    }

    #[test]
    fn resource_without_schemas_gets_core() {
        let (doc, _) = ok(
            U,
            &json!({"userName": "u"}),
            json!([{"op": "replace", "path": "title", "value": "t"}]),
        );
        assert_eq!(
            doc,
            json!({"schemas": [USER_SCHEMA], "userName": "u", "title": "t"})
        );
        let mut not_object = json!([1]);
        assert_eq!(
            apply_patch(U, &mut not_object, &[]).err().map(|e| e.status),
            Some(500)
        );
    }

    // ---- property: arbitrary requests never panic ----

    const PATHS: &[&str] = &[
        "userName",
        "USERNAME",
        "name",
        "name.givenName",
        "name.nope",
        "displayName",
        "active",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[type eq \"work\" and primary eq true].primary",
        "emails[value co \"@\"]",
        "emails[not (type pr)]",
        "addresses[type eq \"work\"].formatted",
        "phoneNumbers[primary eq true]",
        "members",
        "members[value eq \"u1\"]",
        "members[value eq \"u1\" or value eq \"u2\"]",
        "members[display eq \"x\"]",
        "members[value eq \"u1\"].display",
        "id",
        "meta",
        "meta.version",
        "groups",
        "password",
        "externalId",
        "x509Certificates[value sw \"MII\"]",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
        "urn:x:y:z",
        "userName.x",
        "name[givenName eq \"a\"]",
        "",
        " ",
        "emails[",
        "[]",
        "a..b",
        "émails",
        "emails[type eq \"work\"]]",
        "emails[type eq \"work\"].value.x",
        "members[value eq 5]",
        "roles[value eq null]",
    ];
    const KEYS: &[&str] = &[
        "value",
        "Value",
        "type",
        "primary",
        "display",
        "$ref",
        "givenName",
        "name",
        "name.givenName",
        "active",
        "emails",
        "members",
        "id",
        "meta",
        "userName",
        "displayName",
        "schemas",
        "department",
        "manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "groups",
        "password",
        "x",
        "",
        "emails[type eq \"work\"].value",
        "addresses",
    ];
    const STRINGS: &[&str] = &[
        "", "True", "false", "work", "home", "x@y.com", "u1", "u2", "Ann", "[", "ü",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(STRINGS).prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    fn arb_op() -> impl Strategy<Value = Value> {
        let op = prop_oneof![
            prop::sample::select(
                &["add", "Add", "REPLACE", "replace", "remove", "Remove", "bogus", ""][..]
            )
            .prop_map(Value::from),
            arb_json(),
        ];
        let path = prop_oneof![
            prop::sample::select(PATHS).prop_map(Value::from),
            arb_json()
        ];
        (
            prop::option::of(op),
            prop::option::of(path),
            prop::option::of(arb_json()),
        )
            .prop_map(|(op, path, value)| {
                let mut m = Map::new();
                if let Some(op) = op {
                    m.insert("op".into(), op);
                }
                if let Some(path) = path {
                    m.insert("path".into(), path);
                }
                if let Some(value) = value {
                    m.insert("value".into(), value);
                }
                Value::Object(m)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_patches_never_panic(ops in prop::collection::vec(arb_op(), 0..5), as_group in any::<bool>()) {
            let (kind, doc) = if as_group { (G, group()) } else { (U, user()) };
            if let Ok(parsed) = parse_patch_request(&request(Value::Array(ops))) {
                let mut out = doc.clone();
                match apply_patch(kind, &mut out, &parsed) {
                    Ok(outcome) => {
                        // The result is in stored (normal) form and reports a change exactly
                        // when something changed.
                        prop_assert_eq!(schema::normalize_resource(kind, &out), Ok(out.clone()));
                        prop_assert!(out.get("id").is_none());
                        prop_assert!(out.get("members").is_none());
                        let doc_changed = out != doc;
                        let reported = outcome.changed_paths.iter().any(|p| p != "members");
                        prop_assert_eq!(doc_changed, reported);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.status, 400);
                        prop_assert!(e.scim_type.is_some());
                        prop_assert_eq!(&out, &doc);
                    }
                }
            }
        }

        #[test]
        fn random_bodies_never_panic_parse(body in arb_json()) {
            let _ = parse_patch_request(&body);
            let _ = parse_patch_request(&request(body.clone()));
            let _ = schema::normalize_resource(U, &body);
            let _ = schema::normalize_resource(G, &body);
        }
    }
}
