//! SCIM filter grammar (RFC 7644 §3.4.2.2) and PATCH path grammar (§3.5.2), as a typed AST.
//!
//! Owns: parsing filter and path strings, printing them back (`Display`), and evaluating a
//! filter against a resource given as `serde_json::Value`. Must not touch SQL: the store
//! decides which filters it can answer from an index.

use serde_json::Value;

/// An attribute reference: `userName`, `name.givenName`, `emails.value`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`,
/// `urn:ietf:params:scim:schemas:core:2.0:User:name.familyName`.
/// Names keep the case they were written in; comparisons are case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// Schema URN prefix if written (without the trailing ':').
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A comparison literal: JSON string, number, `true`, `false` or `null`.
pub type Literal = Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Present(AttrPath),
    Compare(AttrPath, CompareOp, Literal),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and primary eq true]`: the inner filter's paths are relative to
    /// each element of the multi-valued attribute `attr` (which has no `sub`).
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH `path`: `attrPath` or `valuePath [ "." subAttr ]`, e.g. `members[value eq "x"]`,
/// `emails[type eq "work"].value`, `name.givenName`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a value filter (`.value` in `emails[type eq "work"].value`).
    pub sub: Option<String>,
}
