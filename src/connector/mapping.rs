//! Per-connector attribute mapping: which attributes a downstream SCIM app gets, and from
//! where.
//!
//! Owns: the mapping expression language (`Expr`: source path, literal, `coalesce`,
//! `lower`/`upper`, `switch`, `member_of`) and its deserialisation from TOML or JSON; target
//! validation (`Mapping::new`); turning the gateway's user into exactly the mapped target
//! document (`Mapping::apply`); and the PATCH operations between two mapped documents
//! (`diff_ops`). Pure functions over `serde_json::Value`: must not touch HTTP, SQLite, the
//! config file or the clock. Path grammar, filter evaluation and attribute facts come from
//! `crate::scim` and are not re-implemented here.
//!
//! Decisions beyond the design's letter:
//! - Source paths must name an attribute of the core User schema or the enterprise extension
//!   (the gateway stores nothing else), so a typo fails at start-up rather than mapping
//!   nothing. Targets may also be custom top-level attributes the downstream app defines
//!   (`isRoom`): those get the value as evaluated, with no schema coercion.
//! - A source path to a sub-attribute of a multi-valued attribute (`emails.value`) picks the
//!   primary element first, then document order.
//! - `diff_ops` adds `remove "<attr>.<sub>"` after a `replace` of a complex attribute whose
//!   sub-attribute disappeared: RFC 7644 §3.5.2.3 has `replace` merge sub-attributes, so the
//!   replace alone would leave the old sub-attribute on the target.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::scim::filter::{
    get_key_ci, lookup, parse_path, AttrPath, CompareOp, Filter, FilterError, PatchPath,
};
use crate::scim::patch::changed_attributes;
use crate::scim::schema::{self, AttrDef, AttrType, Container, Mutability, SchemaDef};
use crate::scim::{ResourceKind, USER_SCHEMA};

// ---------------------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------------------

/// A source expression: what one target attribute is computed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A SCIM path into the gateway's user, as written and as parsed
    /// (`emails[type eq "work"].value`).
    Path { source: String, path: PatchPath },
    /// A fixed value.
    Literal(Value),
    /// The first operand with a value (not null, not an empty string, array or object).
    Coalesce(Vec<Expr>),
    /// Lower-cases a string; other values pass through.
    Lower(Box<Expr>),
    /// Upper-cases a string; other values pass through.
    Upper(Box<Expr>),
    /// Looks the input's string form up in `cases` (keys compared case-insensitively);
    /// no match gives `default`, or null without one.
    Switch {
        on: Box<Expr>,
        cases: BTreeMap<String, Value>,
        default: Option<Value>,
    },
    /// True iff one of the user's `groups[].display` equals this name (case-insensitively).
    MemberOf(String),
}

/// The operator keys of a table expression, in the order error messages list them.
const OPERATORS: [&str; 6] = [
    "literal",
    "coalesce",
    "lower",
    "upper",
    "switch",
    "member_of",
];

impl Expr {
    /// A source path expression; the path is parsed now so evaluation cannot fail.
    pub fn path(source: &str) -> Result<Expr, FilterError> {
        Ok(Expr::Path {
            source: source.to_string(),
            path: parse_path(source)?,
        })
    }

    /// Evaluates the expression against the gateway's user (its full SCIM representation).
    /// Never fails: anything absent or of an unexpected shape evaluates to null.
    pub fn eval(&self, user: &Value) -> Value {
        match self {
            Expr::Path { path, .. } => eval_path(user, path),
            Expr::Literal(v) => v.clone(),
            // Lazy: later operands are not evaluated once one has a value.
            Expr::Coalesce(items) => items
                .iter()
                .map(|e| e.eval(user))
                .find(has_value)
                .unwrap_or(Value::Null),
            Expr::Lower(inner) => match inner.eval(user) {
                Value::String(s) => Value::String(s.to_lowercase()),
                other => other,
            },
            Expr::Upper(inner) => match inner.eval(user) {
                Value::String(s) => Value::String(s.to_uppercase()),
                other => other,
            },
            Expr::Switch { on, cases, default } => {
                let input = on.eval(user);
                string_form(&input)
                    .and_then(|s| {
                        cases
                            .iter()
                            .find(|(k, _)| eq_ci(k, &s))
                            .map(|(_, v)| v.clone())
                    })
                    .or_else(|| default.clone())
                    .unwrap_or(Value::Null)
            }
            // The same test a scope filter `groups[display eq "…"]` makes, so a connector's
            // scope and its mapping agree on who is a member.
            Expr::MemberOf(group) => {
                let filter = Filter::ValuePath(
                    AttrPath::new("groups"),
                    Box::new(Filter::Compare(
                        AttrPath::new("display"),
                        CompareOp::Eq,
                        Value::String(group.clone()),
                    )),
                );
                Value::Bool(filter.matches(user, &|_| false))
            }
        }
    }
}

/// A path's value: the whole array for a multi-valued attribute (narrowed by a value filter
/// if there is one), else the first value that is present, primary elements first.
fn eval_path(user: &Value, path: &PatchPath) -> Value {
    let parent = AttrPath {
        urn: path.attr.urn.clone(),
        name: path.attr.name.clone(),
        sub: None,
    };
    let multi_valued =
        schema::attr_def(ResourceKind::User, &parent).is_some_and(|d| d.multi_valued);
    let mut elements = lookup(user, &parent);
    if let Some(filter) = &path.filter {
        let case_exact = |p: &AttrPath| element_case_exact(&parent, p);
        elements.retain(|e| e.is_object() && filter.matches(e, &case_exact));
    }
    match path.attr.sub.as_deref().or(path.sub.as_deref()) {
        Some(sub) => {
            // Stable: primary first, otherwise document order.
            elements.sort_by_key(|e| !schema::is_primary(e));
            elements
                .into_iter()
                .filter_map(|e| e.as_object().and_then(|o| get_key_ci(o, sub)))
                .map(|(_, v)| v)
                .find(|v| has_value(v))
                .cloned()
                .unwrap_or(Value::Null)
        }
        None if multi_valued || path.filter.is_some() => {
            let items: Vec<Value> = elements
                .into_iter()
                .filter(|v| has_value(v))
                .cloned()
                .collect();
            if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items)
            }
        }
        None => elements
            .into_iter()
            .find(|v| has_value(v))
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// Paths inside a value filter are relative to the element (`type` in `emails[type eq …]`
/// means `emails.type`); ask the schema about the qualified one.
fn element_case_exact(parent: &AttrPath, relative: &AttrPath) -> bool {
    relative.urn.is_none()
        && relative.sub.is_none()
        && schema::case_exact(
            ResourceKind::User,
            &AttrPath {
                urn: parent.urn.clone(),
                name: parent.name.clone(),
                sub: Some(relative.name.clone()),
            },
        )
}

/// RFC 7643 §2.5: null, an empty string and an empty array or object are unassigned.
fn has_value(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The text a scalar compares as (`switch` input, allowed values); none for arrays,
/// objects and null.
fn string_form(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Case-insensitive equality with the same (Unicode) folding as filter comparisons.
fn eq_ci(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

// ---- deserialisation ----

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ExprVisitor)
    }
}

struct ExprVisitor;

/// The operator of a table expression, before the table is complete (`switch` still needs
/// its `cases`, which may come after it).
enum Operator {
    Literal(Value),
    Coalesce(Vec<Expr>),
    Lower(Expr),
    Upper(Expr),
    Switch(Expr),
    MemberOf(String),
}

impl<'de> Visitor<'de> for ExprVisitor {
    type Value = Expr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a source path string, or a table with exactly one of {}",
            OPERATORS.join(", ")
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Expr, E> {
        Expr::path(v).map_err(|e| E::custom(format!("invalid source path {v:?}: {e}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expr, A::Error> {
        let mut op: Option<(&'static str, Operator)> = None;
        let mut cases: Option<BTreeMap<String, Value>> = None;
        let mut default: Option<Value> = None;
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}` in a mapping expression"
                )));
            }
            seen.push(key.clone());
            if let Some(name) = OPERATORS.iter().copied().find(|o| *o == key) {
                if let Some((first, _)) = &op {
                    return Err(de::Error::custom(format!(
                        "`{first}` and `{name}` cannot both appear in one mapping expression; \
                         nest one inside the other, e.g. {{ lower = {{ coalesce = [...] }} }}"
                    )));
                }
                let operator = match name {
                    "literal" => Operator::Literal(map.next_value()?),
                    "coalesce" => Operator::Coalesce(map.next_value()?),
                    "lower" => Operator::Lower(map.next_value()?),
                    "upper" => Operator::Upper(map.next_value()?),
                    "switch" => Operator::Switch(map.next_value()?),
                    _ => Operator::MemberOf(map.next_value()?),
                };
                op = Some((name, operator));
                continue;
            }
            match key.as_str() {
                "cases" => cases = Some(map.next_value()?),
                "default" => default = Some(map.next_value()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a mapping expression; expected one of {} \
                         (`switch` also takes `cases` and `default`)",
                        OPERATORS.join(", ")
                    )))
                }
            }
        }
        let Some((name, operator)) = op else {
            return Err(de::Error::custom(format!(
                "a mapping expression table needs one of {}",
                OPERATORS.join(", ")
            )));
        };
        if !matches!(operator, Operator::Switch(_)) {
            let extra = match (&cases, &default) {
                (Some(_), _) => Some("cases"),
                (None, Some(_)) => Some("default"),
                (None, None) => None,
            };
            if let Some(extra) = extra {
                return Err(de::Error::custom(format!(
                    "`{extra}` belongs to `switch`, not to `{name}`"
                )));
            }
        }
        match operator {
            Operator::Literal(v) => Ok(Expr::Literal(v)),
            Operator::Coalesce(items) if items.is_empty() => Err(de::Error::custom(
                "`coalesce` needs at least one expression",
            )),
            Operator::Coalesce(items) => Ok(Expr::Coalesce(items)),
            Operator::Lower(e) => Ok(Expr::Lower(Box::new(e))),
            Operator::Upper(e) => Ok(Expr::Upper(Box::new(e))),
            Operator::MemberOf(group) if group.trim().is_empty() => {
                Err(de::Error::custom("`member_of` needs a group name"))
            }
            Operator::MemberOf(group) => Ok(Expr::MemberOf(group)),
            Operator::Switch(on) => {
                let Some(cases) = cases else {
                    return Err(de::Error::custom(
                        "`switch` needs `cases`, e.g. cases = { Employee = \"employee\" }",
                    ));
                };
                // Keys compare case-insensitively, so two that differ only in case would make
                // the outcome depend on the map's order.
                let keys: Vec<&String> = cases.keys().collect();
                for (i, a) in keys.iter().enumerate() {
                    if let Some(b) = keys.iter().skip(i + 1).find(|b| eq_ci(a, b)) {
                        return Err(de::Error::custom(format!(
                            "`switch` cases {a:?} and {b:?} differ only in case; \
                             cases compare case-insensitively"
                        )));
                    }
                }
                Ok(Expr::Switch {
                    on: Box::new(on),
                    cases,
                    default,
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    /// A target path that is malformed, read-only, unknown or clashes with another (config).
    #[error("mapping target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    /// A source path that names nothing the gateway stores (config).
    #[error("mapping target {target:?}: source path {path:?}: {reason}")]
    InvalidSource {
        target: String,
        path: String,
        reason: String,
    },
    /// An `allowed_values` entry that cannot be checked (config).
    #[error("allowed_values {target:?}: {reason}")]
    InvalidAllowed { target: String, reason: String },
    /// A user whose mapped value is not allowed (per delivery).
    #[error("{target}: {value:?} is not one of {}", .allowed.join(", "))]
    NotAllowed {
        target: String,
        value: String,
        allowed: Vec<String>,
    },
    /// A user whose mapped value does not fit the target attribute's type (per delivery).
    #[error("{target}: {reason}")]
    InvalidValue { target: String, reason: String },
}

fn invalid_target(target: &str, reason: impl Into<String>) -> MappingError {
    MappingError::InvalidTarget {
        target: target.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// A target's attribute: where it lives (top level, or an extension object) and its schema
/// definition (`None` for a custom attribute of the downstream app).
#[derive(Debug, Clone)]
struct Attr {
    ext: Option<&'static SchemaDef>,
    /// The schema's spelling for known attributes, as configured for custom ones.
    name: String,
    def: Option<&'static AttrDef>,
}

impl Attr {
    fn same(&self, other: &Attr) -> bool {
        self.ext.map(|e| e.id) == other.ext.map(|e| e.id)
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

/// A sub-attribute named by a target.
#[derive(Debug, Clone)]
struct Leaf {
    name: String,
    def: Option<&'static AttrDef>,
}

/// Where in the attribute a target writes.
#[derive(Debug, Clone)]
enum Loc {
    /// The whole attribute (`userName`, `emails`).
    Whole,
    /// A sub-attribute of a single-valued complex attribute (`name.givenName`).
    Sub(Leaf),
    /// A sub-attribute of the element of a multi-valued attribute that its `eq` filter
    /// describes (`emails[type eq "work"].value` → `{"type": "work", "value": …}`).
    Element {
        fields: Map<String, Value>,
        sub: Leaf,
    },
}

#[derive(Debug, Clone)]
struct Target {
    key: String,
    expr: Expr,
    attr: Attr,
    loc: Loc,
    /// Index into `Mapping::elements` for `Loc::Element` targets.
    slot: Option<usize>,
    allowed: Option<Vec<String>>,
}

impl Target {
    /// The definition the value must fit (`None`: custom attribute, taken as evaluated).
    fn leaf_def(&self) -> Option<&'static AttrDef> {
        match &self.loc {
            Loc::Whole => self.attr.def,
            Loc::Sub(leaf) | Loc::Element { sub: leaf, .. } => leaf.def,
        }
    }

    /// Brings an evaluated value into the target attribute's type; `None` means unassigned.
    fn coerce(&self, value: Value) -> Result<Option<Value>, MappingError> {
        let Some(def) = self.leaf_def() else {
            return Ok(Some(value));
        };
        // A string attribute fed a number or boolean (a `member_of` into `title`) gets its
        // text rather than failing every delivery.
        let value = match value {
            Value::Bool(_) | Value::Number(_)
                if def.ty == AttrType::String && !def.multi_valued =>
            {
                Value::String(value.to_string())
            }
            other => other,
        };
        // The schema's own normalisation: "True"/"False" into booleans, canonical
        // sub-attribute names, read-only sub-attributes dropped, type errors named.
        schema::normalize_attr(def, &value, "the mapped value").map_err(|e| {
            MappingError::InvalidValue {
                target: self.key.clone(),
                reason: e.detail,
            }
        })
    }

    fn check_allowed(&self, value: &Value) -> Result<(), MappingError> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        let text = string_form(value).unwrap_or_else(|| value.to_string());
        if allowed.contains(&text) {
            Ok(())
        } else {
            Err(MappingError::NotAllowed {
                target: self.key.clone(),
                value: text,
                allowed: allowed.clone(),
            })
        }
    }
}

/// One element of a multi-valued attribute that one or more targets fill.
#[derive(Debug, Clone)]
struct Element {
    attr: Attr,
    fields: Map<String, Value>,
}

/// A validated mapping: target attribute ← source expression, plus allowed values.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// In the configured map's (sorted) order, which makes `apply` deterministic.
    targets: Vec<Target>,
    elements: Vec<Element>,
}

impl Mapping {
    /// Validates every target and source path and every `allowed_values` key.
    pub fn new(
        targets: &BTreeMap<String, Expr>,
        allowed: &BTreeMap<String, Vec<String>>,
    ) -> Result<Mapping, MappingError> {
        let mut out: Vec<Target> = Vec::with_capacity(targets.len());
        let mut elements: Vec<Element> = Vec::new();
        for (key, expr) in targets {
            check_sources(key, expr)?;
            let (attr, loc) = resolve_target(key)?;
            for earlier in &out {
                if let Some(reason) = conflict(&earlier.attr, &earlier.loc, &attr, &loc) {
                    return Err(invalid_target(
                        key,
                        format!("clashes with target {:?}: {reason}", earlier.key),
                    ));
                }
            }
            let slot = match &loc {
                Loc::Element { fields, .. } => Some(
                    match elements
                        .iter()
                        .position(|e| e.attr.same(&attr) && e.fields == *fields)
                    {
                        Some(i) => i,
                        None => {
                            elements.push(Element {
                                attr: attr.clone(),
                                fields: fields.clone(),
                            });
                            elements.len() - 1
                        }
                    },
                ),
                _ => None,
            };
            out.push(Target {
                key: key.clone(),
                expr: expr.clone(),
                attr,
                loc,
                slot,
                allowed: None,
            });
        }

        for (key, values) in allowed {
            let bad = |reason: String| MappingError::InvalidAllowed {
                target: key.clone(),
                reason,
            };
            // The same spelling, or another spelling of the same place
            // (`urn:…:core:2.0:User:userType` for `userType`).
            let index = out.iter().position(|t| t.key == *key).or_else(|| {
                let (attr, loc) = resolve_target(key).ok()?;
                out.iter()
                    .position(|t| t.attr.same(&attr) && same_loc(&t.loc, &loc))
            });
            let Some(target) = index.and_then(|i| out.get_mut(i)) else {
                return Err(bad("not a mapped target".to_string()));
            };
            if values.is_empty() {
                return Err(bad(
                    "the list is empty, so every user would be refused".to_string()
                ));
            }
            if target
                .leaf_def()
                .is_some_and(|d| d.multi_valued || d.ty == AttrType::Complex)
            {
                return Err(bad(
                    "only single-valued, simple attributes can have allowed values".to_string(),
                ));
            }
            target.allowed = Some(values.clone());
        }
        Ok(Mapping {
            targets: out,
            elements,
        })
    }

    /// The configured target paths, in sorted order.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.key.as_str())
    }

    /// Targets that are no attribute of the SCIM User schema or the enterprise extension
    /// (the downstream app's own, such as `isRoom`): worth a note from `check-config`, since
    /// a misspelt standard attribute lands here too.
    pub fn custom_targets(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter(|t| t.attr.def.is_none())
            .map(|t| t.key.as_str())
    }

    /// The target document for `user` (the gateway's full SCIM representation): `schemas`
    /// plus every target whose value is present. Fails when a value is not allowed or does
    /// not fit its attribute's type.
    pub fn apply(&self, user: &Value) -> Result<Value, MappingError> {
        let mut top = Map::new();
        let mut exts: BTreeMap<&'static str, Map<String, Value>> = BTreeMap::new();
        let mut filled: Vec<Map<String, Value>> = vec![Map::new(); self.elements.len()];

        for t in &self.targets {
            let raw = t.expr.eval(user);
            if !has_value(&raw) {
                continue;
            }
            let Some(value) = t.coerce(raw)? else {
                continue;
            };
            t.check_allowed(&value)?;
            match &t.loc {
                Loc::Whole => {
                    container(&mut top, &mut exts, &t.attr).insert(t.attr.name.clone(), value);
                }
                Loc::Sub(leaf) => {
                    let entry = container(&mut top, &mut exts, &t.attr)
                        .entry(t.attr.name.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(obj) = entry {
                        obj.insert(leaf.name.clone(), value);
                    }
                }
                Loc::Element { sub, .. } => {
                    if let Some(values) = t.slot.and_then(|i| filled.get_mut(i)) {
                        values.insert(sub.name.clone(), value);
                    }
                }
            }
        }

        // An element none of whose targets had a value is left out, rather than sent as
        // a bare `{"type": "work"}`.
        for (element, values) in self.elements.iter().zip(filled) {
            if values.is_empty() {
                continue;
            }
            let mut obj = element.fields.clone();
            obj.extend(values);
            let entry = container(&mut top, &mut exts, &element.attr)
                .entry(element.attr.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                items.push(Value::Object(obj));
            }
        }

        let mut schemas = vec![Value::String(USER_SCHEMA.to_string())];
        for ext in schema::extensions(ResourceKind::User) {
            if let Some(obj) = exts.remove(ext.id) {
                if !obj.is_empty() {
                    schemas.push(Value::String(ext.id.to_string()));
                    top.insert(ext.id.to_string(), Value::Object(obj));
                }
            }
        }
        top.insert("schemas".to_string(), Value::Array(schemas));
        Ok(Value::Object(top))
    }
}

/// The object an attribute of `attr` is written into.
fn container<'m>(
    top: &'m mut Map<String, Value>,
    exts: &'m mut BTreeMap<&'static str, Map<String, Value>>,
    attr: &Attr,
) -> &'m mut Map<String, Value> {
    match attr.ext {
        None => top,
        Some(ext) => exts.entry(ext.id).or_default(),
    }
}

/// Parses and checks one target path.
fn resolve_target(key: &str) -> Result<(Attr, Loc), MappingError> {
    let path =
        parse_path(key).map_err(|e| invalid_target(key, format!("not a valid SCIM path: {e}")))?;
    let urn = path.attr.urn.as_deref();
    let core = urn.is_none_or(|u| u.trim().eq_ignore_ascii_case(USER_SCHEMA));
    let known_ext = urn.is_some_and(|u| schema::extension_by_urn(ResourceKind::User, u).is_some());
    if !core && !known_ext {
        return Err(invalid_target(
            key,
            "unknown schema URN; targets use the core User schema or the enterprise extension",
        ));
    }
    let attr = match schema::lookup(ResourceKind::User, urn, &path.attr.name) {
        Some((container, def)) => {
            match def.mutability {
                Mutability::ReadOnly => {
                    return Err(invalid_target(
                        key,
                        format!("{} is read-only: the target assigns it", def.name),
                    ))
                }
                Mutability::WriteOnly => {
                    return Err(invalid_target(
                        key,
                        format!("{} is write-only and never forwarded", def.name),
                    ))
                }
                Mutability::ReadWrite | Mutability::Immutable => {}
            }
            Attr {
                ext: match container {
                    Container::Top => None,
                    Container::Extension(ext) => Some(ext),
                },
                name: def.name.to_string(),
                def: Some(def),
            }
        }
        None if core => {
            // `schemas` is the one top-level member the mapping writes itself.
            if path.attr.name.eq_ignore_ascii_case("schemas") {
                return Err(invalid_target(
                    key,
                    "`schemas` is set by the mapping itself",
                ));
            }
            Attr {
                ext: None,
                name: path.attr.name.clone(),
                def: None,
            }
        }
        None => {
            return Err(invalid_target(
                key,
                format!(
                    "the enterprise extension has no attribute {:?}",
                    path.attr.name
                ),
            ))
        }
    };

    let sub = match path.attr.sub.as_deref().or(path.sub.as_deref()) {
        None => None,
        Some(name) => Some(leaf(key, &attr, name)?),
    };
    let loc = match (&path.filter, sub) {
        (None, None) => Loc::Whole,
        (None, Some(sub)) => {
            if attr.def.is_some_and(|d| d.multi_valued) {
                return Err(invalid_target(
                    key,
                    format!(
                        "{0} is multi-valued: say which element, e.g. {0}[type eq \"work\"].{1}",
                        attr.name, sub.name
                    ),
                ));
            }
            Loc::Sub(sub)
        }
        (Some(_), None) => {
            return Err(invalid_target(
                key,
                format!(
                    "a filtered target must name a sub-attribute, e.g. {}[type eq \"work\"].value",
                    attr.name
                ),
            ))
        }
        (Some(filter), Some(sub)) => {
            if attr.def.is_some_and(|d| !d.multi_valued) {
                return Err(invalid_target(
                    key,
                    format!("{} is single-valued and takes no filter", attr.name),
                ));
            }
            let fields = creation_fields(key, &attr, filter)?;
            if fields.keys().any(|k| k.eq_ignore_ascii_case(&sub.name)) {
                return Err(invalid_target(
                    key,
                    format!("sets {}, which its own filter already fixes", sub.name),
                ));
            }
            Loc::Element { fields, sub }
        }
    };
    Ok((attr, loc))
}

/// A sub-attribute of a target attribute: it must exist and be writable on known attributes.
fn leaf(key: &str, attr: &Attr, name: &str) -> Result<Leaf, MappingError> {
    let Some(def) = attr.def else {
        return Ok(Leaf {
            name: name.to_string(),
            def: None,
        });
    };
    let Some(sub) = def.sub_attr(name) else {
        return Err(invalid_target(
            key,
            format!("{} has no sub-attribute {name:?}", def.name),
        ));
    };
    if matches!(sub.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
        return Err(invalid_target(
            key,
            format!(
                "{}.{} is read-only: the target assigns it",
                def.name, sub.name
            ),
        ));
    }
    Ok(Leaf {
        name: sub.name.to_string(),
        def: Some(sub),
    })
}

/// The element a target's filter describes: `type eq "work" and primary eq true` →
/// `{"type": "work", "primary": true}`. Only `eq` comparisons joined by `and` say how to
/// create an element, as for a PATCH path (see `scim::patch`).
fn creation_fields(
    key: &str,
    attr: &Attr,
    filter: &Filter,
) -> Result<Map<String, Value>, MappingError> {
    let Some(pairs) = filter.eq_conjuncts() else {
        return Err(invalid_target(
            key,
            "a target filter must be `eq` comparisons joined by `and` (it says which element \
             to create), e.g. [type eq \"work\"]",
        ));
    };
    let mut fields = Map::new();
    for (path, lit) in pairs {
        let sub = leaf(key, attr, &path.name)?;
        let value = match sub.def {
            Some(def) => schema::normalize_attr(def, lit, &format!("{}.{}", attr.name, sub.name))
                .map_err(|e| invalid_target(key, e.detail))?
                .ok_or_else(|| invalid_target(key, format!("{} needs a value", sub.name)))?,
            None => lit.clone(),
        };
        if fields.contains_key(&sub.name) {
            return Err(invalid_target(
                key,
                format!("its filter compares {} twice", sub.name),
            ));
        }
        fields.insert(sub.name, value);
    }
    Ok(fields)
}

/// Why two targets cannot both be mapped, if they cannot.
fn conflict(a_attr: &Attr, a: &Loc, b_attr: &Attr, b: &Loc) -> Option<String> {
    if !a_attr.same(b_attr) {
        return None;
    }
    let name = &a_attr.name;
    match (a, b) {
        (Loc::Whole, Loc::Whole) => Some(format!("both set {name}")),
        (Loc::Whole, _) | (_, Loc::Whole) => Some(format!(
            "one sets the whole of {name}, the other a part of it"
        )),
        (Loc::Sub(x), Loc::Sub(y)) if x.name.eq_ignore_ascii_case(&y.name) => {
            Some(format!("both set {name}.{}", x.name))
        }
        (Loc::Element { fields: fx, sub: x }, Loc::Element { fields: fy, sub: y }) => {
            if fx == fy && x.name.eq_ignore_ascii_case(&y.name) {
                Some(format!("both set {} of the same {name} element", x.name))
            } else if fx != fy && marks_primary(fx) && marks_primary(fy) {
                Some(format!(
                    "two different {name} elements would both be primary (RFC 7643 §2.4 allows one)"
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn marks_primary(fields: &Map<String, Value>) -> bool {
    fields.get("primary") == Some(&Value::Bool(true))
}

fn same_loc(a: &Loc, b: &Loc) -> bool {
    match (a, b) {
        (Loc::Whole, Loc::Whole) => true,
        (Loc::Sub(x), Loc::Sub(y)) => x.name.eq_ignore_ascii_case(&y.name),
        (Loc::Element { fields: fx, sub: x }, Loc::Element { fields: fy, sub: y }) => {
            fx == fy && x.name.eq_ignore_ascii_case(&y.name)
        }
        _ => false,
    }
}

/// Checks that every source path in `expr` names something the gateway's user can hold.
fn check_sources(target: &str, expr: &Expr) -> Result<(), MappingError> {
    match expr {
        Expr::Path { source, path } => {
            check_source_path(path).map_err(|reason| MappingError::InvalidSource {
                target: target.to_string(),
                path: source.clone(),
                reason,
            })
        }
        Expr::Literal(_) | Expr::MemberOf(_) => Ok(()),
        Expr::Coalesce(items) => items.iter().try_for_each(|e| check_sources(target, e)),
        Expr::Lower(inner) | Expr::Upper(inner) => check_sources(target, inner),
        Expr::Switch { on, .. } => check_sources(target, on),
    }
}

fn check_source_path(path: &PatchPath) -> Result<(), String> {
    let parent = AttrPath {
        urn: path.attr.urn.clone(),
        name: path.attr.name.clone(),
        sub: None,
    };
    let def = schema::attr_def(ResourceKind::User, &parent).ok_or_else(|| {
        "no such attribute in the core User schema or the enterprise extension".to_string()
    })?;
    if let Some(sub) = path.attr.sub.as_deref().or(path.sub.as_deref()) {
        if def.sub_attr(sub).is_none() {
            return Err(format!("{} has no sub-attribute {sub:?}", def.name));
        }
    }
    if path.filter.is_some() && !def.multi_valued {
        return Err(format!("{} is single-valued and takes no filter", def.name));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------------------------

/// PATCH operations (RFC 7644 §3.5.2) that turn the previously pushed mapped document
/// `before` into `after`, one per changed top-level attribute (extension attributes by their
/// URN-qualified path): `replace` with the whole new value, or `remove`. `schemas` is
/// ignored. Sorted by path; empty when nothing changed.
pub fn diff_ops(before: &Value, after: &Value) -> Vec<Value> {
    let mut ops: Vec<(String, Value)> = Vec::new();
    for path in changed_attributes(ResourceKind::User, before, after) {
        let old = attr_value(before, &path).filter(|v| !v.is_null());
        match attr_value(after, &path).filter(|v| !v.is_null()) {
            Some(new) => {
                ops.push((
                    path.clone(),
                    json!({"op": "replace", "path": path, "value": new}),
                ));
                // `replace` merges a complex attribute's sub-attributes (RFC 7644
                // §3.5.2.3), so one that is gone must be removed explicitly.
                if let (Some(Value::Object(o)), Value::Object(n)) = (old, new) {
                    for (k, v) in o {
                        if !v.is_null() && get_key_ci(n, k).is_none() {
                            let sub_path = format!("{path}.{k}");
                            ops.push((sub_path.clone(), json!({"op": "remove", "path": sub_path})));
                        }
                    }
                }
            }
            None if old.is_some() => {
                ops.push((path.clone(), json!({"op": "remove", "path": path})));
            }
            None => {}
        }
    }
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    // Extension objects keyed in two spellings would report the same path twice.
    ops.dedup_by(|a, b| a.0 == b.0);
    ops.into_iter().map(|(_, op)| op).collect()
}

/// The value at a path `changed_attributes` reported: a top-level key, or
/// `<extension URN>:<attr>` inside that extension's object.
fn attr_value<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = doc.as_object()?;
    for ext in schema::extensions(ResourceKind::User) {
        if let Some(name) = schema::strip_urn_prefix(path, ext.id) {
            let (_, inner) = get_key_ci(obj, ext.id)?;
            return inner.as_object().and_then(|o| o.get(name));
        }
    }
    obj.get(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ENTERPRISE_USER_SCHEMA;
    use proptest::prelude::*;

    const ENT: &str = ENTERPRISE_USER_SCHEMA;

    #[derive(Debug, Deserialize)]
    struct Config {
        mapping: BTreeMap<String, Expr>,
        #[serde(default)]
        allowed_values: BTreeMap<String, Vec<String>>,
    }

    const EXAMPLE: &str = r#"
[mapping]
userName = "userName"
active = "active"
displayName = { coalesce = ["displayName", "userName"] }
"name.givenName" = "name.givenName"
'emails[type eq "work"].value' = { lower = 'emails[type eq "work"].value' }
'addresses[type eq "work"].formatted' = 'addresses[type eq "work"].formatted'
"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department" = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
userType = { switch = "userType", cases = { Employee = "employee", Manager = "manager" }, default = "employee" }
title = { literal = "Advisor" }
"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value" = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
isRoom = { member_of = "Meeting Rooms" }

[allowed_values]
userType = ["employee", "operations", "manager"]
"#;

    fn example() -> Mapping {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        Mapping::new(&config.mapping, &config.allowed_values).unwrap()
    }

    fn p(s: &str) -> Expr {
        Expr::path(s).unwrap()
    }

    fn expr(v: Value) -> Expr {
        serde_json::from_value(v).unwrap()
    }

    fn expr_err(v: Value) -> String {
        match serde_json::from_value::<Expr>(v.clone()) {
            Ok(e) => panic!("{v} parsed as {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn mapping(targets: Value) -> Result<Mapping, MappingError> {
        mapping_with(targets, json!({}))
    }

    fn mapping_with(targets: Value, allowed: Value) -> Result<Mapping, MappingError> {
        let targets: BTreeMap<String, Expr> = serde_json::from_value(targets).unwrap();
        let allowed: BTreeMap<String, Vec<String>> = serde_json::from_value(allowed).unwrap();
        Mapping::new(&targets, &allowed)
    }

    fn apply(targets: Value, user: &Value) -> Result<Value, MappingError> {
        mapping(targets).unwrap().apply(user)
    }

    /// What the gateway renders for a user Entra ID provisioned, groups included.
    fn entra_user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENT],
            "id": "0190c7a2-5a8e-7c4e-9b1d-3f2a1e0d9c8b",
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Ann.Lee@Contoso.com",
            "active": true,
            "displayName": "Ann Lee",
            "name": {"formatted": "Ann Lee", "givenName": "Ann", "familyName": "Lee"},
            "title": "Senior Advisor",
            "userType": "Employee",
            "emails": [
                {"type": "home", "value": "ann@example.org"},
                {"type": "work", "value": "Ann.Lee@Contoso.com", "primary": true}
            ],
            "addresses": [{
                "type": "work",
                "formatted": "Kalvebod Brygge 1, 1560 København V",
                "locality": "København",
                "country": "DK"
            }],
            "phoneNumbers": [{"type": "mobile", "value": "+45 12 34 56 78"}],
            ENT: {
                "employeeNumber": "701984",
                "department": "Advisory",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "Bo Berg"}
            },
            "groups": [
                {"value": "g-1", "display": "Advisors", "$ref": "../Groups/g-1"},
                {"value": "g-2", "display": "meeting rooms"}
            ],
            "meta": {
                "resourceType": "User",
                "created": "2026-01-05T10:00:00Z",
                "lastModified": "2026-01-06T08:30:00Z",
                "location": "/scim/v2/Users/0190c7a2-5a8e-7c4e-9b1d-3f2a1e0d9c8b",
                "version": "W/\"3\""
            }
        })
    }

    // ---- the configured example ----------------------------------------------------------

    #[test]
    fn toml_example_parses_into_expressions() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        let m = &config.mapping;
        assert_eq!(m.len(), 11);
        assert_eq!(m.get("userName"), Some(&p("userName")));
        assert_eq!(
            m.get("displayName"),
            Some(&Expr::Coalesce(vec![p("displayName"), p("userName")]))
        );
        assert_eq!(
            m.get(r#"emails[type eq "work"].value"#),
            Some(&Expr::Lower(Box::new(p(r#"emails[type eq "work"].value"#))))
        );
        assert_eq!(
            m.get("userType"),
            Some(&Expr::Switch {
                on: Box::new(p("userType")),
                cases: BTreeMap::from([
                    ("Employee".to_string(), json!("employee")),
                    ("Manager".to_string(), json!("manager")),
                ]),
                default: Some(json!("employee")),
            })
        );
        assert_eq!(m.get("title"), Some(&Expr::Literal(json!("Advisor"))));
        assert_eq!(
            m.get("isRoom"),
            Some(&Expr::MemberOf("Meeting Rooms".into()))
        );
        assert_eq!(
            config.allowed_values.get("userType"),
            Some(&vec![
                "employee".to_string(),
                "operations".to_string(),
                "manager".to_string()
            ])
        );

        let mapping = example();
        let keys: Vec<&str> = mapping.targets().collect();
        assert_eq!(keys.len(), 11);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {keys:?}");
        assert_eq!(mapping.custom_targets().collect::<Vec<_>>(), ["isRoom"]);
    }

    #[test]
    fn entra_user_maps_to_exactly_the_configured_attributes() {
        let out = example().apply(&entra_user()).unwrap();
        assert_eq!(
            out,
            json!({
                "schemas": [USER_SCHEMA, ENT],
                "userName": "Ann.Lee@Contoso.com",
                "active": true,
                "displayName": "Ann Lee",
                "name": {"givenName": "Ann"},
                "emails": [{"type": "work", "value": "ann.lee@contoso.com"}],
                "addresses": [{"type": "work", "formatted": "Kalvebod Brygge 1, 1560 København V"}],
                ENT: {
                    "department": "Advisory",
                    "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
                },
                "userType": "employee",
                "title": "Advisor",
                "isRoom": true
            })
        );

        // Deterministic down to the bytes sent.
        let again = example().apply(&entra_user()).unwrap();
        assert_eq!(out.to_string(), again.to_string());

        // Everything but the custom attribute is already in the schema's canonical form.
        let mut standard = out.clone();
        if let Some(obj) = standard.as_object_mut() {
            obj.remove("isRoom");
        }
        assert_eq!(
            schema::normalize_resource(ResourceKind::User, &standard),
            Ok(standard.clone())
        );
    }

    #[test]
    fn sparse_user_gets_fallbacks_and_no_empty_parts() {
        let user = json!({
            "schemas": [USER_SCHEMA],
            "id": "u1",
            "userName": "room-4.12@contoso.com",
            "active": false,
            "displayName": "",
            "emails": [{"type": "home", "value": "x@example.org"}],
            "addresses": [{"type": "work", "locality": "Aarhus"}],
            "groups": []
        });
        assert_eq!(
            example().apply(&user).unwrap(),
            json!({
                "schemas": [USER_SCHEMA],
                "userName": "room-4.12@contoso.com",
                "active": false,
                "displayName": "room-4.12@contoso.com",
                "userType": "employee",
                "title": "Advisor",
                "isRoom": false
            })
        );
    }

    #[test]
    fn allowed_values_refuse_with_a_clear_message() {
        let targets = json!({"userName": "userName", "userType": "userType"});
        let allowed = json!({"userType": ["employee", "operations", "manager"]});
        let m = mapping_with(targets, allowed).unwrap();
        let user = |t: &str| json!({"userName": "a", "userType": t});

        let err = m.apply(&user("contractor")).unwrap_err();
        assert_eq!(
            err,
            MappingError::NotAllowed {
                target: "userType".into(),
                value: "contractor".into(),
                allowed: vec!["employee".into(), "operations".into(), "manager".into()],
            }
        );
        assert_eq!(
            err.to_string(),
            r#"userType: "contractor" is not one of employee, operations, manager"#
        );
        // Exact match: the target's values are case-sensitive.
        assert!(m.apply(&user("Employee")).is_err());
        assert_eq!(
            m.apply(&user("operations")).unwrap(),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "userType": "operations"})
        );
        // An absent value is not sent, so there is nothing to refuse.
        assert_eq!(
            m.apply(&json!({"userName": "a"})).unwrap(),
            json!({"schemas": [USER_SCHEMA], "userName": "a"})
        );
        // The example's switch maps Entra's values into the allowed ones.
        let mut u = entra_user();
        u["userType"] = json!("Contractor");
        assert_eq!(example().apply(&u).unwrap()["userType"], json!("employee"));
    }

    #[test]
    fn allowed_values_keys_must_be_mapped_scalar_targets() {
        let err = |targets: Value, allowed: Value| match mapping_with(targets, allowed) {
            Err(e @ MappingError::InvalidAllowed { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            err(json!({"userName": "userName"}), json!({"userType": ["a"]}))
                .contains("not a mapped target")
        );
        assert!(err(json!({"userType": "userType"}), json!({"userType": []})).contains("empty"));
        assert!(err(json!({"emails": "emails"}), json!({"emails": ["a"]}))
            .contains("single-valued, simple"));
        // Another spelling of the same place is the same target.
        let m = mapping_with(
            json!({"userType": "userType"}),
            json!({"urn:ietf:params:scim:schemas:core:2.0:User:UserType": ["employee"]}),
        )
        .unwrap();
        assert!(matches!(
            m.apply(&json!({"userType": "x"})),
            Err(MappingError::NotAllowed { .. })
        ));
        // Non-string values compare by their text.
        let m = mapping_with(json!({"active": "active"}), json!({"active": ["true"]})).unwrap();
        assert!(m.apply(&json!({"active": true})).is_ok());
        assert_eq!(
            m.apply(&json!({"active": false})).unwrap_err().to_string(),
            r#"active: "false" is not one of true"#
        );
    }

    #[test]
    fn shipped_presets_validate_and_map() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let preset: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let m = Mapping::new(&preset.mapping, &preset.allowed_values)
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(m.custom_targets().count(), 0, "{path:?}");
            let out = m
                .apply(&entra_user())
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(out["userName"], json!("Ann.Lee@Contoso.com"), "{path:?}");
            if path.ends_with("brellium.toml") {
                assert_eq!(
                    out["emails"],
                    json!([{"type": "work", "primary": true, "value": "Ann.Lee@Contoso.com"}])
                );
                assert_eq!(out["userType"], json!("employee"));
            }
            seen += 1;
        }
        assert!(seen > 0, "no presets in {dir:?}");
    }

    // ---- expressions ---------------------------------------------------------------------

    #[test]
    fn paths() {
        let u = entra_user();
        let eval = |s: &str| p(s).eval(&u);
        assert_eq!(eval("USERNAME"), json!("Ann.Lee@Contoso.com"));
        assert_eq!(eval("name.familyName"), json!("Lee"));
        assert_eq!(
            eval("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName"),
            json!("Lee")
        );
        assert_eq!(eval("name"), u["name"]);
        // A sub-attribute of a multi-valued attribute: the primary element's.
        assert_eq!(eval("emails.value"), json!("Ann.Lee@Contoso.com"));
        assert_eq!(eval("phoneNumbers.value"), json!("+45 12 34 56 78"));
        // Value filters pick the element; `type` compares case-insensitively.
        assert_eq!(
            eval(r#"emails[type eq "HOME"].value"#),
            json!("ann@example.org")
        );
        assert_eq!(eval(r#"emails[type eq "other"].value"#), Value::Null);
        assert_eq!(
            eval(r#"emails[type eq "work" and primary eq true].value"#),
            json!("Ann.Lee@Contoso.com")
        );
        // A multi-valued attribute without a sub-attribute: the array (filtered, if asked).
        assert_eq!(eval("emails"), u["emails"]);
        assert_eq!(
            eval(r#"emails[type eq "home"]"#),
            json!([{"type": "home", "value": "ann@example.org"}])
        );
        assert_eq!(eval(r#"emails[type eq "fax"]"#), Value::Null);
        // Extension attributes, qualified or not.
        assert_eq!(eval(&format!("{ENT}:department")), json!("Advisory"));
        assert_eq!(eval("department"), json!("Advisory"));
        assert_eq!(
            eval("manager.value"),
            json!("26118915-6090-4610-87e4-49d8ca9f808d")
        );
        assert_eq!(eval("groups.display"), json!("Advisors"));
        assert_eq!(eval("nickName"), Value::Null);
        assert_eq!(eval(&format!("{ENT}:costCenter")), Value::Null);
        // Empty strings count as absent.
        assert_eq!(p("nickName").eval(&json!({"nickName": ""})), Value::Null);
        assert_eq!(p("nickName").eval(&json!("not an object")), Value::Null);
    }

    #[test]
    fn literal_coalesce_lower_upper() {
        let u =
            json!({"userName": "Ann@X.dk", "nickName": "", "displayName": null, "active": true});
        assert_eq!(expr(json!({"literal": 7})).eval(&u), json!(7));
        assert_eq!(expr(json!({"literal": false})).eval(&u), json!(false));
        assert_eq!(
            expr(json!({"coalesce": ["nickName", "displayName", "emails", "userName"]})).eval(&u),
            json!("Ann@X.dk")
        );
        assert_eq!(
            expr(json!({"coalesce": ["nickName", {"literal": "fallback"}]})).eval(&u),
            json!("fallback")
        );
        assert_eq!(
            expr(json!({"coalesce": ["nickName", "title"]})).eval(&u),
            Value::Null
        );
        assert_eq!(
            expr(json!({"lower": "userName"})).eval(&u),
            json!("ann@x.dk")
        );
        assert_eq!(
            expr(json!({"upper": "userName"})).eval(&u),
            json!("ANN@X.DK")
        );
        assert_eq!(
            expr(json!({"upper": {"literal": "straße ø"}})).eval(&u),
            json!("STRASSE Ø")
        );
        assert_eq!(expr(json!({"lower": "active"})).eval(&u), json!(true));
        assert_eq!(expr(json!({"upper": "title"})).eval(&u), Value::Null);
    }

    #[test]
    fn switch() {
        let s = expr(json!({
            "switch": "userType",
            "cases": {"Employee": "employee", "manager": "manager", "true": "yes", "7": "seven"},
            "default": "operations"
        }));
        let on = |v: Value| s.eval(&json!({ "userType": v }));
        assert_eq!(on(json!("EMPLOYEE")), json!("employee"));
        assert_eq!(on(json!("Manager")), json!("manager"));
        assert_eq!(on(json!("Contractor")), json!("operations"));
        assert_eq!(on(Value::Null), json!("operations"));
        assert_eq!(on(json!(true)), json!("yes"));
        assert_eq!(on(json!(7)), json!("seven"));
        assert_eq!(on(json!(["Employee"])), json!("employee"), "arrays flatten");
        assert_eq!(on(json!({"a": 1})), json!("operations"));

        let no_default = expr(json!({"switch": "userType", "cases": {"a": "b"}}));
        assert_eq!(no_default.eval(&json!({"userType": "z"})), Value::Null);
        assert_eq!(no_default.eval(&json!({"userType": "A"})), json!("b"));
    }

    #[test]
    fn member_of() {
        let m = expr(json!({"member_of": "Meeting Rooms"}));
        assert_eq!(m.eval(&entra_user()), json!(true));
        assert_eq!(
            m.eval(&json!({"groups": [{"value": "g", "display": "Meeting Rooms 2"}]})),
            json!(false)
        );
        assert_eq!(m.eval(&json!({"groups": []})), json!(false));
        assert_eq!(m.eval(&json!({"userName": "a"})), json!(false));
        assert_eq!(
            m.eval(&json!({"groups": {"display": "MEETING ROOMS"}})),
            json!(true)
        );
        assert_eq!(
            expr(json!({"member_of": "Mødelokaler"}))
                .eval(&json!({"groups": [{"display": "MØDELOKALER"}]})),
            json!(true)
        );
    }

    #[test]
    fn expressions_nest() {
        let u = json!({"userName": "Ann@X.dk", "userType": "Room"});
        let e = expr(json!({"lower": {"coalesce": ["nickName", {"upper": "userName"}]}}));
        assert_eq!(e.eval(&u), json!("ann@x.dk"));
        let e = expr(json!({
            "switch": {"lower": "userType"},
            "cases": {"room": {"literal": "not an expression, a value"}},
        }));
        assert_eq!(e.eval(&u), json!({"literal": "not an expression, a value"}));
        let e = expr(json!({"coalesce": [
            {"switch": "userType", "cases": {"employee": "e"}},
            {"member_of": "Rooms"}
        ]}));
        assert_eq!(e.eval(&u), json!(false));

        let toml_nested: Config = toml::from_str(
            r#"
            [mapping]
            displayName = { upper = { coalesce = ["displayName", { lower = "userName" }] } }
            "#,
        )
        .unwrap();
        let m = Mapping::new(&toml_nested.mapping, &toml_nested.allowed_values).unwrap();
        assert_eq!(
            m.apply(&u).unwrap(),
            json!({"schemas": [USER_SCHEMA], "displayName": "ANN@X.DK"})
        );
    }

    #[test]
    fn deserialize_errors_name_the_problem() {
        let cases = [
            (json!({"lowr": "userName"}), "unknown key `lowr`"),
            (
                json!({"lower": "userName", "upper": "userName"}),
                "`lower` and `upper` cannot both appear",
            ),
            (
                json!({"literal": 1, "member_of": "x"}),
                "`literal` and `member_of`",
            ),
            (json!("emails[type eq"), "invalid source path"),
            (json!("name..givenName"), "invalid source path"),
            (
                json!({"lower": "emails[type zz \"x\"]"}),
                "invalid source path",
            ),
            (json!({"coalesce": ["a", "b c"]}), "invalid source path"),
            (json!({}), "needs one of literal, coalesce"),
            (json!({"coalesce": []}), "at least one"),
            (json!({"member_of": " "}), "group name"),
            (json!({"switch": "userType"}), "`switch` needs `cases`"),
            (
                json!({"lower": "userType", "cases": {}}),
                "`cases` belongs to `switch`, not to `lower`",
            ),
            (
                json!({"literal": "x", "default": "y"}),
                "`default` belongs to `switch`",
            ),
            (
                json!({"switch": "userType", "cases": {"Room": "a", "ROOM": "b"}}),
                "differ only in case",
            ),
            (json!(12), "a source path string, or a table"),
            (json!({"member_of": 5}), "expected a string"),
        ];
        for (input, needle) in cases {
            let err = expr_err(input.clone());
            assert!(err.contains(needle), "{input}: {err:?} lacks {needle:?}");
        }

        // TOML reports the same, with the place in the file.
        let err = toml::from_str::<Config>(
            "[mapping]\nuserName = \"userName\"\ntitle = { literal = \"a\", lower = \"title\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`literal` and `lower`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = toml::from_str::<Config>("[mapping]\ntitle = { uper = \"title\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `uper`"), "{err}");
        let err = toml::from_str::<Config>("[mapping]\ntitle = 'emails[type eq \"work\"'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid source path"), "{err}");
    }

    // ---- targets -------------------------------------------------------------------------

    #[test]
    fn invalid_targets_are_refused_at_start_up() {
        let cases = [
            (
                json!({"emails[type eq": "userName"}),
                "not a valid SCIM path",
            ),
            (json!({"id": "userName"}), "id is read-only"),
            (json!({"meta.created": "userName"}), "meta is read-only"),
            (json!({"groups": "groups"}), "groups is read-only"),
            (json!({"password": "userName"}), "write-only"),
            (
                json!({"manager.displayName": "displayName"}),
                "manager.displayName is read-only",
            ),
            (json!({"schemas": "userName"}), "set by the mapping itself"),
            (
                json!({"name.nickname": "userName"}),
                "name has no sub-attribute",
            ),
            (json!({"emails.value": "userName"}), "say which element"),
            (
                json!({"emails[type co \"w\"].value": "userName"}),
                "`eq` comparisons joined by `and`",
            ),
            (
                json!({"emails[type eq \"w\" or type eq \"x\"].value": "userName"}),
                "`eq` comparisons",
            ),
            (
                json!({"emails[type eq \"work\"]": "emails"}),
                "must name a sub-attribute",
            ),
            (
                json!({"emails[type eq \"work\"].type": "userName"}),
                "its own filter already fixes",
            ),
            (
                json!({"emails[kind eq \"work\"].value": "userName"}),
                "emails has no sub-attribute \"kind\"",
            ),
            (
                json!({"emails[primary eq \"maybe\"].value": "userName"}),
                "boolean",
            ),
            (
                json!({"emails[type eq \"a\" and type eq \"b\"].value": "userName"}),
                "compares type twice",
            ),
            (
                json!({"name[givenName eq \"a\"].familyName": "userName"}),
                "single-valued",
            ),
            (
                json!({"urn:example:custom:2.0:User:badge": "userName"}),
                "unknown schema URN",
            ),
            (
                json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departement": "userName"}),
                "enterprise extension has no attribute",
            ),
            (
                json!({"name": "name", "name.givenName": "userName"}),
                "whole of name",
            ),
            (
                json!({"userName": "userName", "urn:ietf:params:scim:schemas:core:2.0:User:UserName": "displayName"}),
                "both set userName",
            ),
            (
                json!({"isRoom": "userName", "ISROOM": "displayName"}),
                "both set",
            ),
            (
                json!({"emails[type eq \"work\"].value": "userName", "emails": "emails"}),
                "whole of emails",
            ),
            (
                json!({
                    "emails[type eq \"work\" and primary eq true].value": "userName",
                    "emails[type eq \"home\" and primary eq true].value": "userName"
                }),
                "both be primary",
            ),
        ];
        for (targets, needle) in cases {
            match mapping(targets.clone()) {
                Err(e @ MappingError::InvalidTarget { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{targets}: {msg:?} lacks {needle:?}");
                }
                other => panic!("{targets}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_sources_are_refused_at_start_up() {
        let cases = [
            (json!({"title": "titel"}), "no such attribute"),
            (
                json!({"title": {"coalesce": ["title", "jobTitle"]}}),
                "jobTitle",
            ),
            (
                json!({"title": {"switch": {"lower": "name.given"}, "cases": {}}}),
                "name has no sub-attribute",
            ),
            (
                json!({"title": "name[givenName eq \"a\"].familyName"}),
                "single-valued",
            ),
            (json!({"title": "urn:example:x:badge"}), "no such attribute"),
        ];
        for (targets, needle) in cases {
            match mapping(targets.clone()) {
                Err(e @ MappingError::InvalidSource { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{targets}: {msg:?} lacks {needle:?}");
                    assert!(msg.contains("\"title\""), "{msg}");
                }
                other => panic!("{targets}: {other:?}"),
            }
        }
        // Read-only attributes are fine as sources.
        assert!(mapping(json!({"externalId": "id", "title": "groups.display"})).is_ok());
    }

    #[test]
    fn booleans_stay_booleans_and_types_are_checked() {
        // Not yet normalised input (as Entra sends it) still maps to a boolean.
        let out = apply(
            json!({"active": "active", "isRoom": {"member_of": "Rooms"}}),
            &json!({"active": "False"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"schemas": [USER_SCHEMA], "active": false, "isRoom": false})
        );
        assert_eq!(
            apply(json!({"active": {"literal": "TRUE"}}), &json!({})).unwrap()["active"],
            json!(true)
        );
        // A boolean into a string attribute becomes its text.
        assert_eq!(
            apply(json!({"title": {"member_of": "Advisors"}}), &entra_user()).unwrap()["title"],
            json!("true")
        );
        // Custom attributes take the value as evaluated.
        assert_eq!(
            apply(json!({"isRoom": {"literal": "TRUE"}}), &json!({})).unwrap()["isRoom"],
            json!("TRUE")
        );
        let err = apply(json!({"active": {"literal": "maybe"}}), &json!({})).unwrap_err();
        assert!(matches!(err, MappingError::InvalidValue { .. }));
        let msg = err.to_string();
        assert!(msg.starts_with("active: "), "{msg}");
        assert!(msg.contains("boolean"), "{msg}");
        assert!(apply(json!({"displayName": "emails"}), &entra_user()).is_err());
    }

    #[test]
    fn elements_merge_per_filter() {
        let targets = json!({
            "emails[type eq \"work\" and primary eq true].value": "userName",
            "emails[type eq \"work\" and primary eq true].display": "displayName",
            "emails[type eq \"home\"].value": "emails[type eq \"home\"].value",
            "addresses[type eq \"work\"].formatted": "addresses[type eq \"work\"].formatted",
            "phoneNumbers[type eq \"work\"].value": "phoneNumbers[type eq \"work\"].value",
            "name.givenName": "name.givenName",
            "name.familyName": {"upper": "name.familyName"},
            "manager.value": "manager.value",
            "department": "department",
        });
        assert_eq!(
            apply(targets, &entra_user()).unwrap(),
            json!({
                "schemas": [USER_SCHEMA, ENT],
                "emails": [
                    {"type": "home", "value": "ann@example.org"},
                    {"type": "work", "primary": true, "value": "Ann.Lee@Contoso.com", "display": "Ann Lee"}
                ],
                "addresses": [{"type": "work", "formatted": "Kalvebod Brygge 1, 1560 København V"}],
                "name": {"givenName": "Ann", "familyName": "LEE"},
                ENT: {
                    "department": "Advisory",
                    "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
                }
            })
        );
    }

    #[test]
    fn whole_attributes_are_normalised() {
        let out = apply(
            json!({"emails": "emails", "manager": "manager", "name": "name"}),
            &entra_user(),
        )
        .unwrap();
        assert_eq!(out["emails"], entra_user()["emails"]);
        // The read-only `manager.displayName` is not forwarded.
        assert_eq!(
            out[ENT],
            json!({"manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}})
        );
        assert_eq!(out["name"], entra_user()["name"]);
        // A bare string for a multi-valued complex attribute becomes one element.
        assert_eq!(
            apply(json!({"emails": "userName"}), &entra_user()).unwrap()["emails"],
            json!([{"value": "Ann.Lee@Contoso.com"}])
        );
    }

    // ---- diff_ops ------------------------------------------------------------------------

    #[test]
    fn diff_ops_change_remove_add_and_extension() {
        let before = json!({
            "schemas": [USER_SCHEMA, ENT],
            "userName": "a",
            "active": true,
            "displayName": "A",
            "title": "T",
            "name": {"givenName": "G", "familyName": "F"},
            ENT: {"department": "D", "manager": {"value": "m"}}
        });
        let after = json!({
            "schemas": [USER_SCHEMA, ENT],
            "userName": "a",
            "active": false,
            "displayName": "B",
            "emails": [{"type": "work", "value": "a@x"}],
            "name": {"givenName": "G2"},
            ENT: {"department": "E", "division": "V"}
        });
        assert_eq!(
            diff_ops(&before, &after),
            vec![
                json!({"op": "replace", "path": "active", "value": false}),
                json!({"op": "replace", "path": "displayName", "value": "B"}),
                json!({"op": "replace", "path": "emails", "value": [{"type": "work", "value": "a@x"}]}),
                json!({"op": "replace", "path": "name", "value": {"givenName": "G2"}}),
                json!({"op": "remove", "path": "name.familyName"}),
                json!({"op": "remove", "path": "title"}),
                json!({"op": "replace", "path": format!("{ENT}:department"), "value": "E"}),
                json!({"op": "replace", "path": format!("{ENT}:division"), "value": "V"}),
                json!({"op": "remove", "path": format!("{ENT}:manager")}),
            ]
        );
    }

    #[test]
    fn diff_ops_whole_extension_and_no_change() {
        let base = json!({"schemas": [USER_SCHEMA], "userName": "a"});
        let with_ext = json!({
            "schemas": [USER_SCHEMA, ENT],
            "userName": "a",
            ENT: {"manager": {"value": "m"}, "department": "D"}
        });
        assert_eq!(
            diff_ops(&base, &with_ext),
            vec![
                json!({"op": "replace", "path": format!("{ENT}:department"), "value": "D"}),
                json!({"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": "m"}}),
            ]
        );
        assert_eq!(
            diff_ops(&with_ext, &base),
            vec![
                json!({"op": "remove", "path": format!("{ENT}:department")}),
                json!({"op": "remove", "path": format!("{ENT}:manager")}),
            ]
        );
        assert_eq!(
            diff_ops(
                &with_ext,
                &json!({"schemas": [USER_SCHEMA], "userName": "a", ENT: {"manager": {"value": "n"}, "department": "D"}})
            ),
            vec![
                json!({"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": "n"}})
            ]
        );
        assert!(diff_ops(&with_ext, &with_ext.clone()).is_empty());
        // `schemas` alone is no change.
        assert!(diff_ops(
            &base,
            &json!({"schemas": [USER_SCHEMA, ENT], "userName": "a"})
        )
        .is_empty());
        // Null is absent.
        assert!(diff_ops(&base, &json!({"userName": "a", "title": null})).is_empty());
        assert_eq!(
            diff_ops(&json!({"isRoom": true}), &json!({"isRoom": false})),
            vec![json!({"op": "replace", "path": "isRoom", "value": false})]
        );
        assert!(diff_ops(&json!(null), &json!("x")).is_empty());

        // A mapped user against itself, and a real change through the mapping.
        let m = example();
        let first = m.apply(&entra_user()).unwrap();
        assert!(diff_ops(&first, &m.apply(&entra_user()).unwrap()).is_empty());
        let mut moved = entra_user();
        moved[ENT]["department"] = json!("Tour Operations");
        moved["groups"] = json!([]);
        assert_eq!(
            diff_ops(&first, &m.apply(&moved).unwrap()),
            vec![
                json!({"op": "replace", "path": "isRoom", "value": false}),
                json!({"op": "replace", "path": format!("{ENT}:department"), "value": "Tour Operations"}),
            ]
        );
    }

    // ---- property tests ------------------------------------------------------------------

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "userName", "active", "displayName", "name", "givenName", "familyName",
                "emails", "type", "value", "primary", "display", "addresses", "formatted",
                "userType", "title", "groups", "department", "manager", "nickName",
                ENT, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user",
            ])
            .prop_map(String::from),
            1 => "[a-zA-Z:]{0,6}",
        ]
    }

    fn json_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
            prop::sample::select(vec![
                "work",
                "home",
                "true",
                "False",
                "Employee",
                "Meeting Rooms",
                "",
                "contractor",
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key_strategy(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn user_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::collection::btree_map(key_strategy(), json_strategy(), 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => json_strategy(),
        ]
    }

    fn wide_mapping() -> Mapping {
        mapping_with(
            json!({
                "userName": {"lower": {"coalesce": ["userName", "emails.value", {"literal": "x"}]}},
                "active": "active",
                "displayName": {"coalesce": ["displayName", "name.formatted"]},
                "name.givenName": {"upper": "name.givenName"},
                "emails[type eq \"work\" and primary eq true].value": "emails[type eq \"work\"].value",
                "emails[type eq \"home\"].display": "displayName",
                "phoneNumbers": "phoneNumbers",
                "manager": "manager",
                "department": {"switch": "department", "cases": {"work": "W"}, "default": 1},
                "userType": {"switch": "userType", "cases": {"Employee": "employee"}},
                "isRoom": {"member_of": "Meeting Rooms"},
                "nickName": "groups",
                "title": "name",
            }),
            json!({"userType": ["employee"]}),
        )
        .unwrap()
    }

    proptest! {
        #[test]
        fn apply_never_panics_and_is_deterministic(user in user_strategy()) {
            for m in [example(), wide_mapping()] {
                let first = m.apply(&user);
                prop_assert_eq!(&first, &m.apply(&user));
                if let Ok(out) = first {
                    prop_assert!(out["schemas"].is_array());
                    prop_assert!(diff_ops(&out, &out).is_empty());
                    let _ = diff_ops(&user, &out);
                    let _ = diff_ops(&out, &user);
                }
            }
        }
    }
}
