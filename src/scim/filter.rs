//! SCIM filter grammar (RFC 7644 §3.4.2.2) and PATCH path grammar (§3.5.2), as a typed AST.
//!
//! Owns: parsing filter and path strings, printing them back (`Display`), and evaluating a
//! filter against a resource given as `serde_json::Value`. Must not touch SQL: the store
//! decides which filters it can answer from an index.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Number, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::scim::{ScimError, GROUP_SCHEMA, USER_SCHEMA};

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

/// Deepest nesting of parentheses, `not (…)` and value filters a filter may use. The parser
/// recurses once per level, so this bound is what keeps hostile input off the stack's edge.
pub const MAX_DEPTH: usize = 32;

/// Most attribute expressions (comparisons, `pr`, value filters) one filter may hold.
/// `and`/`or` chains are parsed in a loop but build a tree as deep as the chain is long, and
/// evaluation, printing and dropping recurse over that tree; this keeps it shallow enough for
/// a 2 MiB thread stack while leaving room for any filter an IdP or operator writes.
pub const MAX_TERMS: usize = 1000;

/// A filter or path that does not parse. `position` is the 0-based offset, in characters, of
/// the token the parser stopped at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
}

/// A bad `filter` query parameter is a 400 `invalidFilter`. A bad PATCH `path` should be an
/// `invalidPath` instead: map that one with `ScimError::invalid_path(err.to_string())`.
impl From<FilterError> for ScimError {
    fn from(err: FilterError) -> Self {
        ScimError::invalid_filter(err.to_string())
    }
}

impl AttrPath {
    /// A plain, unqualified attribute name without a sub-attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    /// True when `urn` is absent or one of the core User/Group schemas, i.e. the attribute sits
    /// at the top level of the resource rather than inside an extension object.
    pub fn is_core(&self) -> bool {
        self.urn.as_deref().is_none_or(is_core_schema)
    }
}

impl CompareOp {
    const KEYWORDS: [(&'static str, CompareOp); 9] = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];

    /// The canonical (lowercase) keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword in any case (`eq`, `EQ`, `Eq`); `pr` is not a comparison.
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        Self::KEYWORDS
            .iter()
            .find(|(kw, _)| kw.eq_ignore_ascii_case(word))
            .map(|(_, op)| *op)
    }
}

/// True for the core User and Group schema URNs (any case). Attributes qualified with these
/// live at the top level of the resource; any other URN names an extension object.
pub fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(USER_SCHEMA) || urn.eq_ignore_ascii_case(GROUP_SCHEMA)
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses a `filter` query parameter (RFC 7644 §3.4.2.2). Keywords and operators are
/// case-insensitive, precedence is `not` > `and` > `or`, both left-associative.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    if p.at_end() {
        return Err(p.error("empty filter"));
    }
    let filter = p.parse_or(false)?;
    p.finish()?;
    Ok(filter)
}

/// Parses a PATCH operation `path` (RFC 7644 §3.5.2): `attrPath` or
/// `valuePath [ "." subAttr ]`. When a value filter is present, a trailing `.sub` goes into
/// [`PatchPath::sub`] and `attr.sub` is always `None`.
pub fn parse_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    if p.at_end() {
        return Err(p.error("empty path"));
    }
    let start = p.pos;
    let attr = p.parse_attr_path()?;
    let mut filter = None;
    let mut sub = None;
    if p.peek() == Some(b'[') {
        filter = Some(p.parse_value_filter(&attr, start)?);
        if p.peek() == Some(b'.') {
            p.pos += 1;
            let sub_start = p.pos;
            let word = p.take_word();
            if !is_valid_attr_name(word) {
                return Err(p.error_at(
                    sub_start,
                    format!("invalid sub-attribute name '{}'", truncate(word)),
                ));
            }
            sub = Some(word.to_string());
        }
    }
    p.finish()?;
    Ok(PatchPath { attr, filter, sub })
}

/// Parses a bare attribute path such as an entry of the `attributes` query parameter:
/// `userName`, `name.givenName`, `urn:…:enterprise:2.0:User:manager.value`.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    let path = p.parse_attr_path()?;
    p.finish()?;
    Ok(path)
}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_filter(s)
    }
}

impl FromStr for PatchPath {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_path(s)
    }
}

impl FromStr for AttrPath {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_attr_path(s)
    }
}

/// Bytes that may appear in a bare word: attribute paths (including URNs with their ':' and
/// '.'), keywords and numbers. Everything the grammar cares about is ASCII, so the parser
/// works on bytes and only slices the input at positions where it saw an ASCII byte.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b'$')
}

/// RFC 7643 ATTRNAME (`ALPHA *(ALPHA / DIGIT / "-" / "_")`), plus a leading '$' because
/// RFC 7643 itself names attributes `$ref`.
fn is_valid_attr_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'$' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Shortens user input quoted back in an error message so a huge token cannot bloat it.
fn truncate(s: &str) -> Cow<'_, str> {
    const LIMIT: usize = 40;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => Cow::Owned(format!("{}…", s.get(..cut).unwrap_or(""))),
        None => Cow::Borrowed(s),
    }
}

/// Splits a path token on its last ':' (URNs contain dots such as "2.0", so the dot split
/// must only look at what follows the URN). Errors carry a byte offset into `token`.
fn split_attr_path(token: &str) -> Result<AttrPath, (usize, String)> {
    let (urn, rest, rest_offset) = match token.rsplit_once(':') {
        Some((urn, rest)) => (Some(urn), rest, urn.len() + 1),
        None => (None, token, 0),
    };
    if urn == Some("") {
        return Err((0, "empty schema URN before ':'".to_string()));
    }
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !is_valid_attr_name(name) {
        let msg = if name.is_empty() {
            format!("expected an attribute name in '{}'", truncate(token))
        } else {
            format!("invalid attribute name '{}'", truncate(name))
        };
        return Err((rest_offset, msg));
    }
    if let Some(sub) = sub {
        if !is_valid_attr_name(sub) {
            return Err((
                rest_offset + name.len() + 1,
                format!("invalid sub-attribute name '{}'", truncate(sub)),
            ));
        }
    }
    Ok(AttrPath {
        urn: urn.map(str::to_string),
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread byte; always on a char boundary between tokens.
    pos: usize,
    depth: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
            terms: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn error_at(&self, byte_pos: usize, message: impl Into<String>) -> FilterError {
        // Clients count characters, not UTF-8 bytes.
        let position = self
            .src
            .get(..byte_pos)
            .map_or(byte_pos, |s| s.chars().count());
        FilterError {
            message: message.into(),
            position,
        }
    }

    fn error(&self, message: impl Into<String>) -> FilterError {
        self.error_at(self.pos, message)
    }

    /// What the parser is looking at, for error messages.
    fn describe_here(&self) -> String {
        let rest = self.src.get(self.pos..).unwrap_or("");
        let word_len = rest.bytes().take_while(|b| is_word_byte(*b)).count();
        if word_len > 0 {
            format!("'{}'", truncate(rest.get(..word_len).unwrap_or("")))
        } else {
            match rest.chars().next() {
                Some(c) => format!("'{c}'"),
                None => "end of input".to_string(),
            }
        }
    }

    /// Consumes a maximal run of word bytes. The run is ASCII, so the slice is always valid.
    fn take_word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_word_byte) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or("")
    }

    /// True if `kw` (any case) starts here and is not merely the prefix of a longer word.
    fn at_keyword(&self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        match self.bytes.get(self.pos..end) {
            Some(s) if s.eq_ignore_ascii_case(kw.as_bytes()) => {
                !self.bytes.get(end).copied().is_some_and(is_word_byte)
            }
            _ => false,
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.at_keyword(kw);
        if found {
            self.pos += kw.len();
        }
        found
    }

    /// `not` only negates when a '(' follows, as the grammar demands; otherwise the word is an
    /// attribute that happens to be called "not". Returns the offset of that '('.
    fn not_paren(&self) -> Option<usize> {
        if !self.at_keyword("not") {
            return None;
        }
        let mut i = self.pos + 3;
        while self.bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        (self.bytes.get(i) == Some(&b'(')).then_some(i)
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn count_term(&mut self, at: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(at, format!("more than {MAX_TERMS} attribute expressions")));
        }
        Ok(())
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), FilterError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.describe_here())))
        }
    }

    fn finish(&mut self) -> Result<(), FilterError> {
        self.skip_ws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error(format!("unexpected {}", self.describe_here())))
        }
    }

    fn parse_or(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_and(in_value_path)?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("or") {
                return Ok(left);
            }
            let right = self.parse_and(in_value_path)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
    }

    fn parse_and(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary(in_value_path)?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("and") {
                return Ok(left);
            }
            let right = self.parse_unary(in_value_path)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    fn parse_unary(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.at_end() {
            return Err(self.error("expected an attribute expression, '(' or 'not'"));
        }
        if self.peek() == Some(b'(') {
            self.enter()?;
            self.pos += 1;
            let inner = self.parse_or(in_value_path)?;
            self.expect(b')', "')'")?;
            self.leave();
            return Ok(inner);
        }
        if let Some(paren) = self.not_paren() {
            self.enter()?;
            self.pos = paren + 1;
            let inner = self.parse_or(in_value_path)?;
            self.expect(b')', "')'")?;
            self.leave();
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.parse_attr_exp(in_value_path)
    }

    fn parse_attr_exp(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let start = self.pos;
        let path = self.parse_attr_path()?;
        self.count_term(start)?;
        self.skip_ws();
        if self.peek() == Some(b'[') {
            if in_value_path {
                return Err(self.error("value filters cannot be nested"));
            }
            let inner = self.parse_value_filter(&path, start)?;
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let op_start = self.pos;
        let word = self.take_word();
        if word.is_empty() {
            return Err(self.error(format!(
                "expected an operator after '{}', found {}",
                truncate(&path.to_string()),
                self.describe_here()
            )));
        }
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_keyword(word) else {
            let bare_not =
                path.urn.is_none() && path.sub.is_none() && path.name.eq_ignore_ascii_case("not");
            if bare_not {
                return Err(self.error_at(op_start, "expected '(' after 'not'"));
            }
            return Err(self.error_at(op_start, format!("unknown operator '{}'", truncate(word))));
        };
        self.skip_ws();
        let value = self.parse_literal(op)?;
        Ok(Filter::Compare(path, op, value))
    }

    /// Parses `"[" valFilter "]"` after `path`, which began at byte `start`.
    fn parse_value_filter(&mut self, path: &AttrPath, start: usize) -> Result<Filter, FilterError> {
        if path.sub.is_some() {
            return Err(self.error_at(
                start,
                "a value filter must follow an attribute without a sub-attribute",
            ));
        }
        self.enter()?;
        self.pos += 1;
        let inner = self.parse_or(true)?;
        self.expect(b']', "']'")?;
        self.leave();
        Ok(inner)
    }

    fn parse_attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let token = self.take_word();
        if token.is_empty() {
            return Err(self.error(format!(
                "expected an attribute name, found {}",
                self.describe_here()
            )));
        }
        split_attr_path(token).map_err(|(offset, msg)| self.error_at(start + offset, msg))
    }

    fn parse_literal(&mut self, op: CompareOp) -> Result<Literal, FilterError> {
        match self.peek() {
            Some(b'"') => self.parse_string(),
            Some(b) if b == b'-' || b.is_ascii_digit() => self.parse_number(),
            Some(b) if b.is_ascii_alphabetic() => {
                let start = self.pos;
                let word = self.take_word();
                if word.eq_ignore_ascii_case("true") {
                    Ok(Value::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    Ok(Value::Bool(false))
                } else if word.eq_ignore_ascii_case("null") {
                    Ok(Value::Null)
                } else {
                    Err(self.error_at(
                        start,
                        format!(
                            "expected a value after '{op}', found '{}' (strings need double quotes)",
                            truncate(word)
                        ),
                    ))
                }
            }
            _ => Err(self.error(format!(
                "expected a value after '{op}', found {}",
                self.describe_here()
            ))),
        }
    }

    fn parse_string(&mut self) -> Result<Literal, FilterError> {
        let start = self.pos;
        let mut i = start + 1;
        // Only find the closing quote here; serde_json then applies the JSON escape rules.
        // Stepping over the byte after a backslash may land inside a multi-byte character,
        // but continuation bytes are never '"' or '\\', so the scan stays correct.
        loop {
            match self.bytes.get(i) {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let end = i + 1;
        let raw = self
            .src
            .get(start..end)
            .ok_or_else(|| self.error_at(start, "invalid string literal"))?;
        let s: String = serde_json::from_str(raw).map_err(|_| {
            self.error_at(
                start,
                "invalid string literal (bad escape or raw control character)",
            )
        })?;
        self.pos = end;
        Ok(Value::String(s))
    }

    fn parse_number(&mut self) -> Result<Literal, FilterError> {
        let start = self.pos;
        // Take the whole word (plus '+' for exponents) so `1and` is one bad token rather than
        // a number glued to a keyword.
        while self.peek().is_some_and(|b| is_word_byte(b) || b == b'+') {
            self.pos += 1;
        }
        let raw = self.src.get(start..self.pos).unwrap_or("");
        serde_json::from_str::<Number>(raw)
            .map(Value::Number)
            .map_err(|_| self.error_at(start, format!("invalid number '{}'", truncate(raw))))
    }
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Filter {
    /// Binding strength for printing: `or` < `and` < everything else (which prints as one
    /// self-delimiting unit).
    fn precedence(&self) -> u8 {
        match self {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        }
    }

    fn write_operand(&self, f: &mut fmt::Formatter<'_>, min_precedence: u8) -> fmt::Result {
        if self.precedence() < min_precedence {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// Canonical text: lowercase keywords, JSON literals, and parentheses exactly where the tree
/// shape differs from what precedence and left-associativity would give, so that
/// `parse_filter(&f.to_string()) == Ok(f)` for every filter the parser can produce.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Present(path) => write!(f, "{path} pr"),
            // Value's Display is compact JSON, which escapes strings the way the parser reads them.
            Filter::Compare(path, op, lit) => write!(f, "{path} {op} {lit}"),
            Filter::And(l, r) => {
                l.write_operand(f, 2)?;
                f.write_str(" and ")?;
                r.write_operand(f, 3)
            }
            Filter::Or(l, r) => {
                l.write_operand(f, 1)?;
                f.write_str(" or ")?;
                r.write_operand(f, 2)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath(path, inner) => write!(f, "{path}[{inner}]"),
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Case-insensitive key lookup in a JSON object (SCIM attribute names and schema URNs are
/// case-insensitive). An exact match wins over a case-folded one.
pub fn get_key_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<(&'a String, &'a Value)> {
    obj.get_key_value(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

/// The values `path` denotes in `resource`, with arrays flattened one level, so
/// `emails.value` yields every email's `value` and `emails` yields the email objects.
/// Keys match case-insensitively. A core User/Group URN is ignored; any other URN selects the
/// extension object stored under that URN key. Absent attributes yield an empty vector;
/// `null` values are returned as they are.
pub fn lookup<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let base = match path.urn.as_deref() {
        Some(urn) if !is_core_schema(urn) => {
            match resource.as_object().and_then(|obj| get_key_ci(obj, urn)) {
                Some((_, ext)) => ext,
                None => return out,
            }
        }
        _ => resource,
    };
    let Some((_, value)) = base.as_object().and_then(|obj| get_key_ci(obj, &path.name)) else {
        return out;
    };
    match &path.sub {
        None => flatten_into(value, &mut out),
        Some(sub) => {
            let mut parents = Vec::new();
            flatten_into(value, &mut parents);
            for parent in parents {
                if let Some((_, v)) = parent.as_object().and_then(|obj| get_key_ci(obj, sub)) {
                    flatten_into(v, &mut out);
                }
            }
        }
    }
    out
}

fn flatten_into<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

/// RFC 7644 `pr`: has a value that is not null, not an empty string and not an empty
/// array/object (RFC 7643 §2.5 treats those as unassigned).
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

impl Filter {
    /// Evaluates the filter against a resource (RFC 7644 §3.4.2.2).
    ///
    /// * Attribute names match keys case-insensitively; see [`lookup`] for URNs.
    /// * A multi-valued attribute matches if any element does. Comparing a complex attribute
    ///   without a sub-attribute (`emails co "example.com"`) compares each element's `value`.
    /// * Strings compare case-insensitively unless `case_exact(path)` says otherwise. Inside a
    ///   value filter the callback gets the qualified path: `emails[type eq "work"]` asks about
    ///   `emails.type`. Strings that both parse as RFC 3339 date-times compare as instants for
    ///   `eq`/`ne`/`gt`/`ge`/`lt`/`le` (fractional seconds and offsets break plain text order).
    /// * Numbers compare numerically, booleans only with `eq`/`ne`; mismatched types never
    ///   match.
    /// * `eq null` matches an absent or null attribute.
    /// * `ne` is exactly `not (… eq …)`: true when no value equals the literal, so an absent
    ///   attribute is `ne` any non-null literal, and `emails.type ne "work"` means "has no
    ///   work email" rather than "has some non-work email". RFC 7644 leaves both open; this
    ///   reading keeps `ne` and `not (eq)` interchangeable, which scope filters rely on.
    pub fn matches(&self, resource: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
        self.eval(resource, None, case_exact)
    }

    fn eval(
        &self,
        resource: &Value,
        outer: Option<&AttrPath>,
        case_exact: &dyn Fn(&AttrPath) -> bool,
    ) -> bool {
        match self {
            Filter::Present(path) => lookup(resource, path).into_iter().any(is_present),
            Filter::Compare(path, op, lit) => {
                // Only strings care about case; skip building the qualified path otherwise.
                let exact = lit.is_string()
                    && match outer {
                        None => case_exact(path),
                        Some(outer) => case_exact(&AttrPath {
                            urn: outer.urn.clone(),
                            name: outer.name.clone(),
                            sub: Some(path.name.clone()),
                        }),
                    };
                compare_path(resource, path, *op, lit, exact)
            }
            Filter::And(l, r) => {
                l.eval(resource, outer, case_exact) && r.eval(resource, outer, case_exact)
            }
            Filter::Or(l, r) => {
                l.eval(resource, outer, case_exact) || r.eval(resource, outer, case_exact)
            }
            Filter::Not(inner) => !inner.eval(resource, outer, case_exact),
            Filter::ValuePath(path, inner) => lookup(resource, path)
                .into_iter()
                .filter(|elem| elem.is_object())
                .any(|elem| inner.eval(elem, Some(path), case_exact)),
        }
    }

    /// If this filter is `attr eq "lit"` or an `or` of such (all on the same attribute), the
    /// string literals; `None` otherwise. Lets the store answer `userName eq "x"` from an index.
    ///
    /// `attr` is a name (`userName`) or `name.sub` (`members.value`), matched
    /// case-insensitively against paths that are unqualified or core-URN-qualified. For
    /// `members.value`, `members.value eq "a"`, `members eq "a"` (which compares `value`) and
    /// `members[value eq "a" or value eq "b"]` all qualify. Non-string literals give `None`:
    /// `eq null` means "absent", which an index cannot answer, and the indexed attributes are
    /// all strings. Literals are returned as written; case folding is the caller's business.
    pub fn equality_literals(&self, attr: &str) -> Option<Vec<&Literal>> {
        let target = Target::new(attr);
        let mut out = Vec::new();
        self.collect_equalities(&target, &mut out).then_some(out)
    }

    fn collect_equalities<'a>(&'a self, target: &Target<'_>, out: &mut Vec<&'a Literal>) -> bool {
        match self {
            Filter::Compare(path, CompareOp::Eq, lit @ Value::String(_)) if target.is(path) => {
                out.push(lit);
                true
            }
            Filter::Or(l, r) => {
                l.collect_equalities(target, out) && r.collect_equalities(target, out)
            }
            Filter::ValuePath(path, inner) => match target.inside(path) {
                Some(inner_target) => inner.collect_equalities(&inner_target, out),
                None => false,
            },
            _ => false,
        }
    }

    /// For a filter that is `attr eq "lit"`, or an `and` tree with such a conjunct, on one of
    /// `attrs`: that attribute (as listed in `attrs`, ASCII-lowercased) and the literal. The
    /// store narrows candidates by index and then evaluates the whole filter on them, so any
    /// conjunct is a safe narrowing. Earlier entries in `attrs` win, so list the most selective
    /// index first. Entries use the same `name` / `name.sub` form as
    /// [`Filter::equality_literals`]; a conjunct inside a value filter
    /// (`members[value eq "a" and display pr]`) counts. Only string literals qualify.
    pub fn indexable_conjunct(&self, attrs: &[&str]) -> Option<(String, &Literal)> {
        attrs.iter().find_map(|attr| {
            self.find_conjunct(&Target::new(attr))
                .map(|lit| (attr.to_ascii_lowercase(), lit))
        })
    }

    fn find_conjunct(&self, target: &Target<'_>) -> Option<&Literal> {
        match self {
            Filter::Compare(path, CompareOp::Eq, lit @ Value::String(_)) if target.is(path) => {
                Some(lit)
            }
            Filter::And(l, r) => l.find_conjunct(target).or_else(|| r.find_conjunct(target)),
            Filter::ValuePath(path, inner) => target
                .inside(path)
                .and_then(|inner_target| inner.find_conjunct(&inner_target)),
            _ => None,
        }
    }
}

/// An indexed attribute named as `name` or `name.sub`, for the index helpers.
struct Target<'s> {
    name: &'s str,
    sub: Option<&'s str>,
}

impl<'s> Target<'s> {
    fn new(attr: &'s str) -> Self {
        match attr.split_once('.') {
            Some((name, sub)) => Target {
                name,
                sub: Some(sub),
            },
            None => Target {
                name: attr,
                sub: None,
            },
        }
    }

    fn is(&self, path: &AttrPath) -> bool {
        if !path.is_core() || !path.name.eq_ignore_ascii_case(self.name) {
            return false;
        }
        match (path.sub.as_deref(), self.sub) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            // `members eq "x"` compares each element's `value`, like `members.value eq "x"`.
            (None, Some(b)) => b.eq_ignore_ascii_case("value"),
            (Some(_), None) => false,
        }
    }

    /// The target as seen from inside a value filter on `path`: `members.value` inside
    /// `members[…]` is plain `value`.
    fn inside(&self, path: &AttrPath) -> Option<Target<'s>> {
        let sub = self.sub?;
        (path.is_core() && path.sub.is_none() && path.name.eq_ignore_ascii_case(self.name))
            .then_some(Target {
                name: sub,
                sub: None,
            })
    }
}

fn compare_path(
    resource: &Value,
    path: &AttrPath,
    op: CompareOp,
    lit: &Literal,
    exact: bool,
) -> bool {
    let mut values = Vec::new();
    for value in lookup(resource, path) {
        match value {
            Value::Object(obj) => {
                if let Some((_, v)) = get_key_ci(obj, "value") {
                    flatten_into(v, &mut values);
                }
            }
            other => values.push(other),
        }
    }
    match op {
        CompareOp::Eq => equals_any(&values, lit, exact),
        CompareOp::Ne => !equals_any(&values, lit, exact),
        _ => values.iter().any(|v| compare_one(v, op, lit, exact)),
    }
}

fn equals_any(values: &[&Value], lit: &Literal, exact: bool) -> bool {
    if lit.is_null() {
        // RFC 7643 §2.5: unassigned, null and empty array are the same state.
        values.iter().all(|v| v.is_null())
    } else {
        values
            .iter()
            .any(|v| compare_one(v, CompareOp::Eq, lit, exact))
    }
}

fn compare_one(value: &Value, op: CompareOp, lit: &Literal, exact: bool) -> bool {
    match (value, lit) {
        (Value::String(a), Value::String(b)) => compare_strings(a, b, op, exact),
        (Value::Number(a), Value::Number(b)) => {
            compare_numbers(a, b).is_some_and(|ord| ordering_satisfies(op, ord))
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

fn ordering_satisfies(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_strings(a: &str, b: &str, op: CompareOp, exact: bool) -> bool {
    if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
        if let Some(ord) = compare_datetimes(a, b) {
            return ordering_satisfies(op, ord);
        }
    }
    let (a, b): (Cow<'_, str>, Cow<'_, str>) = if exact {
        (Cow::Borrowed(a), Cow::Borrowed(b))
    } else {
        (Cow::Owned(a.to_lowercase()), Cow::Owned(b.to_lowercase()))
    };
    match op {
        CompareOp::Co => a.contains(b.as_ref()),
        CompareOp::Sw => a.starts_with(b.as_ref()),
        CompareOp::Ew => a.ends_with(b.as_ref()),
        _ => ordering_satisfies(op, a.cmp(&b)),
    }
}

fn compare_datetimes(a: &str, b: &str) -> Option<Ordering> {
    // Cheap shape check first so ordinary strings never pay for a parse attempt.
    fn looks_like_date(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() >= 20 && b.iter().take(4).all(u8::is_ascii_digit) && b.get(4) == Some(&b'-')
    }
    if !looks_like_date(a) || !looks_like_date(b) {
        return None;
    }
    let a = OffsetDateTime::parse(a, &Rfc3339).ok()?;
    let b = OffsetDateTime::parse(b, &Rfc3339).ok()?;
    Some(a.cmp(&b))
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    // Integers compare exactly (i64 and u64 both fit in i128); anything else as f64.
    fn as_int(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}
