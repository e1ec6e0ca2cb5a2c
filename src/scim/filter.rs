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

use crate::scim::schema::{self, AttrType};
use crate::scim::{ResourceKind, ScimError, GROUP_SCHEMA, USER_SCHEMA};

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
    parse_filter_within(input, MAX_DEPTH, MAX_TERMS)
}

/// [`parse_filter`] with tighter bounds (`scim.max_filter_depth`, `scim.max_filter_terms`)
/// for filters from requests. Bounds above [`MAX_DEPTH`] and [`MAX_TERMS`] are clamped to
/// them: those are what keeps evaluation within the stack.
pub fn parse_filter_within(
    input: &str,
    max_depth: usize,
    max_terms: usize,
) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input);
    p.max_depth = max_depth.min(MAX_DEPTH);
    p.max_terms = max_terms.min(MAX_TERMS);
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
    max_depth: usize,
    max_terms: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
            terms: 0,
            max_depth: MAX_DEPTH,
            max_terms: MAX_TERMS,
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
        if self.depth > self.max_depth {
            let max = self.max_depth;
            return Err(self.error(format!("nesting deeper than {max} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn count_term(&mut self, at: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > self.max_terms {
            let max = self.max_terms;
            return Err(self.error_at(at, format!("more than {max} attribute expressions")));
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
    let found = base
        .as_object()
        .and_then(|obj| get_key_ci(obj, &path.name))
        .map(|(_, v)| v)
        .or_else(|| unqualified_extension_value(resource, path));
    let Some(value) = found else {
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

/// An unqualified name that is no core attribute may name an extension attribute: Entra
/// filters users by `manager eq "<id>"`, which lives in the enterprise extension.
fn unqualified_extension_value<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    if path.urn.is_some() {
        return None;
    }
    resource
        .as_object()?
        .iter()
        .filter(|(k, _)| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")))
        .find_map(|(_, ext)| ext.as_object().and_then(|o| get_key_ci(o, &path.name)))
        .map(|(_, v)| v)
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
    ///   `eq`/`ne`/`gt`/`ge`/`lt`/`le` (fractional seconds and offsets break plain text order)
    ///   when the attribute is a dateTime or one no schema defines; text attributes such as
    ///   `userName` compare as text.
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
                // Only strings care about case and instants; skip building the qualified
                // path otherwise.
                let (exact, instants) = match lit.as_str() {
                    None => (false, false),
                    Some(text) => {
                        let qualified;
                        let attr = match outer {
                            None => path,
                            Some(outer) => {
                                qualified = AttrPath {
                                    urn: outer.urn.clone(),
                                    name: outer.name.clone(),
                                    sub: Some(path.name.clone()),
                                };
                                &qualified
                            }
                        };
                        (
                            case_exact(attr),
                            looks_like_date(text) && may_hold_datetimes(attr),
                        )
                    }
                };
                compare_path(resource, path, *op, lit, exact, instants)
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
        self.conjunct_with(CompareOp::Eq, attrs)
    }

    /// For a filter that is `a eq x`, or an `and` of such over plain (unqualified, top-level)
    /// names with non-null literals, the (name, literal) pairs: the element the filter
    /// describes, used to create one (`emails[type eq "work"].value`). `None` otherwise.
    pub fn eq_conjuncts(&self) -> Option<Vec<(&AttrPath, &Literal)>> {
        fn collect<'f>(filter: &'f Filter, out: &mut Vec<(&'f AttrPath, &'f Literal)>) -> bool {
            match filter {
                Filter::Compare(p, CompareOp::Eq, lit)
                    if p.urn.is_none() && p.sub.is_none() && !lit.is_null() =>
                {
                    out.push((p, lit));
                    true
                }
                Filter::And(l, r) => collect(l, out) && collect(r, out),
                _ => false,
            }
        }
        let mut pairs = Vec::new();
        collect(self, &mut pairs).then_some(pairs)
    }

    /// Like [`Filter::indexable_conjunct`], for an `attr sw "prefix"` conjunct, which an
    /// ordered index answers as a range.
    pub fn indexable_prefix(&self, attrs: &[&str]) -> Option<(String, &Literal)> {
        self.conjunct_with(CompareOp::Sw, attrs)
    }

    fn conjunct_with(&self, op: CompareOp, attrs: &[&str]) -> Option<(String, &Literal)> {
        attrs.iter().find_map(|attr| {
            self.find_conjunct(op, &Target::new(attr))
                .map(|lit| (attr.to_ascii_lowercase(), lit))
        })
    }

    fn find_conjunct(&self, op: CompareOp, target: &Target<'_>) -> Option<&Literal> {
        match self {
            Filter::Compare(path, o, lit @ Value::String(_)) if *o == op && target.is(path) => {
                Some(lit)
            }
            Filter::And(l, r) => l
                .find_conjunct(op, target)
                .or_else(|| r.find_conjunct(op, target)),
            Filter::ValuePath(path, inner) => target
                .inside(path)
                .and_then(|inner_target| inner.find_conjunct(op, &inner_target)),
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

/// Whether strings of this attribute may compare as instants: its schema type is dateTime
/// (`meta.lastModified`), or no schema knows it (a custom attribute may hold date-times).
/// Attributes the schemas define as text (`userName`, `externalId`, `emails.value`) compare
/// as text, as RFC 7644 asks and as the store's indexes do: `userName eq
/// "2011-05-13T04:42:34.000Z"` must not find a user named "2011-05-13T04:42:34Z".
fn may_hold_datetimes(attr: &AttrPath) -> bool {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .filter_map(|kind| schema::attr_def(kind, attr))
        .all(|def| def.ty == AttrType::DateTime)
}

/// `exact`: strings compare case-sensitively; `instants`: strings that both parse as RFC
/// 3339 date-times compare as instants (see [`may_hold_datetimes`]).
fn compare_path(
    resource: &Value,
    path: &AttrPath,
    op: CompareOp,
    lit: &Literal,
    exact: bool,
    instants: bool,
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
        CompareOp::Eq => equals_any(&values, lit, exact, instants),
        CompareOp::Ne => !equals_any(&values, lit, exact, instants),
        _ => values
            .iter()
            .any(|v| compare_one(v, op, lit, exact, instants)),
    }
}

fn equals_any(values: &[&Value], lit: &Literal, exact: bool, instants: bool) -> bool {
    if lit.is_null() {
        // RFC 7643 §2.5: unassigned, null and empty array are the same state.
        values.iter().all(|v| v.is_null())
    } else {
        values
            .iter()
            .any(|v| compare_one(v, CompareOp::Eq, lit, exact, instants))
    }
}

fn compare_one(value: &Value, op: CompareOp, lit: &Literal, exact: bool, instants: bool) -> bool {
    match (value, lit) {
        (Value::String(a), Value::String(b)) => compare_strings(a, b, op, exact, instants),
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

fn compare_strings(a: &str, b: &str, op: CompareOp, exact: bool, instants: bool) -> bool {
    if instants && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
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

/// Cheap shape check first so ordinary strings never pay for a parse attempt (or, for a
/// literal, a schema lookup).
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b.iter().take(4).all(u8::is_ascii_digit) && b.get(4) == Some(&b'-')
}

fn compare_datetimes(a: &str, b: &str) -> Option<Ordering> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ENTERPRISE_USER_SCHEMA;
    use proptest::prelude::*;
    use serde_json::json;
    use std::cell::RefCell;

    // ---- helpers --------------------------------------------------------------------------

    fn p(s: &str) -> Filter {
        match parse_filter(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn attr(name: &str) -> AttrPath {
        AttrPath::new(name)
    }

    fn sub(name: &str, sub: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: Some(sub.into()),
        }
    }

    fn urn(urn: &str, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: Some(urn.into()),
            name: name.into(),
            sub: sub.map(Into::into),
        }
    }

    fn cmp(path: AttrPath, op: CompareOp, lit: Value) -> Filter {
        Filter::Compare(path, op, lit)
    }

    fn and(l: Filter, r: Filter) -> Filter {
        Filter::And(Box::new(l), Box::new(r))
    }

    fn or(l: Filter, r: Filter) -> Filter {
        Filter::Or(Box::new(l), Box::new(r))
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn vp(path: AttrPath, f: Filter) -> Filter {
        Filter::ValuePath(path, Box::new(f))
    }

    fn err(s: &str) -> FilterError {
        match parse_filter(s) {
            Ok(f) => panic!("{s:?} should not parse, got {f:?}"),
            Err(e) => e,
        }
    }

    fn never_exact(_: &AttrPath) -> bool {
        false
    }

    /// Evaluates with every attribute caseExact=false.
    fn m(filter: &str, resource: &Value) -> bool {
        p(filter).matches(resource, &never_exact)
    }

    fn roundtrip(s: &str) {
        let f = p(s);
        let printed = f.to_string();
        assert_eq!(
            parse_filter(&printed),
            Ok(f),
            "{s:?} printed as {printed:?}"
        );
    }

    /// RFC 7643 §8.2 / §8.3: the full enterprise user example, lightly trimmed.
    fn bjensen() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "701984",
            "userName": "bjensen@example.com",
            "name": {
                "formatted": "Ms. Barbara J Jensen, III",
                "familyName": "Jensen",
                "givenName": "Barbara",
                "middleName": "Jane",
                "honorificPrefix": "Ms.",
                "honorificSuffix": "III"
            },
            "displayName": "Babs Jensen",
            "nickName": "Babs",
            "profileUrl": "https://login.example.com/bjensen",
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [
                {"type": "work", "streetAddress": "100 Universal City Plaza",
                 "locality": "Hollywood", "region": "CA", "postalCode": "91608",
                 "country": "USA", "primary": true},
                {"type": "home", "streetAddress": "456 Hollywood Blvd",
                 "locality": "Hollywood", "region": "CA", "postalCode": "91608",
                 "country": "USA"}
            ],
            "phoneNumbers": [
                {"value": "555-555-5555", "type": "work"},
                {"value": "555-555-4444", "type": "mobile"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "userType": "Employee",
            "title": "Tour Guide",
            "preferredLanguage": "en-US",
            "locale": "en-US",
            "timezone": "America/Los_Angeles",
            "active": true,
            "loginCount": 42,
            "score": 3.5,
            "nothing": null,
            "empty": "",
            "noItems": [],
            "groups": [
                {"value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
                 "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
                 "display": "Tour Guides"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "costCenter": "4130",
                "organization": "Universal Studios",
                "division": "Theme Park",
                "department": "Tour Operations",
                "manager": {
                    "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                    "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                    "displayName": "John Smith"
                }
            },
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\"",
                "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
            }
        })
    }

    // ---- parsing: attribute paths -------------------------------------------------------------

    #[test]
    fn parses_simple_sub_and_urn_paths() {
        assert_eq!(
            p(r#"userName eq "bjensen""#),
            cmp(attr("userName"), CompareOp::Eq, json!("bjensen"))
        );
        assert_eq!(
            p(r#"name.familyName co "O'Malley""#),
            cmp(sub("name", "familyName"), CompareOp::Co, json!("O'Malley"))
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#),
            cmp(
                urn(USER_SCHEMA, "userName", None),
                CompareOp::Sw,
                json!("J")
            )
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "x""#),
            cmp(
                urn(USER_SCHEMA, "name", Some("familyName")),
                CompareOp::Eq,
                json!("x")
            )
        );
        assert_eq!(
            p(
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
            ),
            cmp(
                urn(ENTERPRISE_USER_SCHEMA, "employeeNumber", None),
                CompareOp::Eq,
                json!("701984")
            )
        );
        assert_eq!(
            p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr"),
            Filter::Present(urn(ENTERPRISE_USER_SCHEMA, "manager", Some("value")))
        );
        assert_eq!(
            p(r#"members.$ref pr"#),
            Filter::Present(sub("members", "$ref"))
        );
    }

    #[test]
    fn parse_attr_path_standalone() {
        assert_eq!(
            parse_attr_path(" name.givenName "),
            Ok(sub("name", "givenName"))
        );
        assert_eq!(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".parse(),
            Ok(urn(ENTERPRISE_USER_SCHEMA, "manager", None))
        );
        assert!(parse_attr_path("a.b.c").is_err());
        assert!(parse_attr_path("").is_err());
        assert!(parse_attr_path("1abc").is_err());
        assert!(parse_attr_path(":abc").is_err());
        assert!(parse_attr_path("urn:x:").is_err());
        assert!(parse_attr_path("emails[type eq \"work\"]").is_err());
    }

    // ---- parsing: operators and literals --------------------------------------------------------

    #[test]
    fn parses_every_operator_in_any_case() {
        let ops = [
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
        for (kw, op) in ops {
            for spelled in [kw.to_string(), kw.to_uppercase(), {
                let mut s = kw.to_uppercase();
                s.truncate(1);
                s + &kw[1..]
            }] {
                assert_eq!(
                    p(&format!(r#"title {spelled} "x""#)),
                    cmp(attr("title"), op, json!("x")),
                    "{spelled}"
                );
            }
            assert_eq!(CompareOp::from_keyword(kw), Some(op));
            assert_eq!(op.to_string(), kw);
        }
        assert_eq!(p("title pr"), Filter::Present(attr("title")));
        assert_eq!(p("title PR"), Filter::Present(attr("title")));
        assert_eq!(CompareOp::from_keyword("pr"), None);
    }

    #[test]
    fn parses_literals() {
        let lit = |s: &str| match p(&format!("a eq {s}")) {
            Filter::Compare(_, _, v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("true"), json!(true));
        assert_eq!(lit("TRUE"), json!(true));
        assert_eq!(lit("False"), json!(false));
        assert_eq!(lit("null"), Value::Null);
        assert_eq!(lit("NULL"), Value::Null);
        assert_eq!(lit("0"), json!(0));
        assert_eq!(lit("42"), json!(42));
        assert_eq!(lit("-17"), json!(-17));
        assert_eq!(lit("3.25"), json!(3.25));
        assert_eq!(lit("-0.5"), json!(-0.5));
        assert_eq!(lit("1e3"), json!(1000.0));
        assert_eq!(lit("2.5E-2"), json!(0.025));
        assert_eq!(lit("1e+2"), json!(100.0));
        assert_eq!(lit("18446744073709551615"), json!(u64::MAX));
        assert_eq!(lit(r#""""#), json!(""));
        assert_eq!(
            lit(r#""a \"quoted\" \\ \/ word""#),
            json!(r#"a "quoted" \ / word"#)
        );
        assert_eq!(lit(r#""tab\there\nnl""#), json!("tab\there\nnl"));
        assert_eq!(lit(r#""\u00e9t\u00E9 \ud83d\ude00""#), json!("été 😀"));
        assert_eq!(lit(r#""naïve ☃""#), json!("naïve ☃"));
        assert_eq!(lit(r#""and or not ( ) [ ]""#), json!("and or not ( ) [ ]"));
    }

    #[test]
    fn whitespace_is_lenient() {
        let expected = and(
            cmp(attr("a"), CompareOp::Eq, json!("x")),
            Filter::Present(attr("b")),
        );
        assert_eq!(p(r#"a eq "x" and b pr"#), expected);
        assert_eq!(p("  a   eq  \"x\"\tand\n b  pr  "), expected);
        assert_eq!(p(r#"a eq"x" and b pr"#), expected);
        assert_eq!(p(r#"(a eq "x")and(b pr)"#), expected);
        assert_eq!(p(r#"a eq "x" and ( b pr )"#), expected);
        assert_eq!(
            p(r#"emails [ type eq "work" ]"#),
            vp(
                attr("emails"),
                cmp(attr("type"), CompareOp::Eq, json!("work"))
            )
        );
        assert_eq!(p("not(a pr)"), not(Filter::Present(attr("a"))));
        assert_eq!(p("NOT   ( a pr )"), not(Filter::Present(attr("a"))));
    }

    // ---- parsing: logic -------------------------------------------------------------------------

    #[test]
    fn precedence_and_associativity() {
        let a = || cmp(attr("a"), CompareOp::Eq, json!(1));
        let b = || cmp(attr("b"), CompareOp::Eq, json!(2));
        let c = || cmp(attr("c"), CompareOp::Eq, json!(3));
        assert_eq!(p("a eq 1 or b eq 2 and c eq 3"), or(a(), and(b(), c())));
        assert_eq!(p("a eq 1 and b eq 2 or c eq 3"), or(and(a(), b()), c()));
        assert_eq!(p("a eq 1 and b eq 2 and c eq 3"), and(and(a(), b()), c()));
        assert_eq!(p("a eq 1 or b eq 2 or c eq 3"), or(or(a(), b()), c()));
        assert_eq!(p("(a eq 1 or b eq 2) and c eq 3"), and(or(a(), b()), c()));
        assert_eq!(p("a eq 1 and (b eq 2 and c eq 3)"), and(a(), and(b(), c())));
        assert_eq!(p("a eq 1 AND b eq 2 Or c eq 3"), or(and(a(), b()), c()));
        // `not` binds to its parenthesised group only.
        assert_eq!(p("not (a eq 1) and b eq 2"), and(not(a()), b()));
        assert_eq!(p("not (a eq 1 or b eq 2)"), not(or(a(), b())));
        assert_eq!(p("b eq 2 or not (a eq 1)"), or(b(), not(a())));
        assert_eq!(p("((((a eq 1))))"), a());
        assert_eq!(p("not (not (a eq 1))"), not(not(a())));
        assert_eq!(
            p("((a eq 1 or (b eq 2)) and not ((c eq 3)))"),
            and(or(a(), b()), not(c()))
        );
    }

    #[test]
    fn keywords_as_attribute_names() {
        // Only `not (` negates; `and`/`or`/`not` in operand position are attribute names.
        assert_eq!(p("not pr"), Filter::Present(attr("not")));
        assert_eq!(p("not eq 1"), cmp(attr("not"), CompareOp::Eq, json!(1)));
        assert_eq!(
            p("and pr and or pr or not pr"),
            or(
                and(Filter::Present(attr("and")), Filter::Present(attr("or"))),
                Filter::Present(attr("not"))
            )
        );
        assert_eq!(p("pr pr"), Filter::Present(attr("pr")));
        assert_eq!(p("eq eq true"), cmp(attr("eq"), CompareOp::Eq, json!(true)));
        assert_eq!(p("android pr"), Filter::Present(attr("android")));
        assert_eq!(p("notes pr"), Filter::Present(attr("notes")));
        assert_eq!(
            p("orders pr or notable pr"),
            or(
                Filter::Present(attr("orders")),
                Filter::Present(attr("notable"))
            )
        );
    }

    #[test]
    fn value_paths() {
        assert_eq!(
            p(r#"emails[type eq "work" and value co "@example.com"]"#),
            vp(
                attr("emails"),
                and(
                    cmp(attr("type"), CompareOp::Eq, json!("work")),
                    cmp(attr("value"), CompareOp::Co, json!("@example.com"))
                )
            )
        );
        assert_eq!(
            p(r#"emails[not (type eq "work") or (primary eq true and value pr)]"#),
            vp(
                attr("emails"),
                or(
                    not(cmp(attr("type"), CompareOp::Eq, json!("work"))),
                    and(
                        cmp(attr("primary"), CompareOp::Eq, json!(true)),
                        Filter::Present(attr("value"))
                    )
                )
            )
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"]"#),
            vp(
                urn(USER_SCHEMA, "emails", None),
                cmp(attr("type"), CompareOp::Eq, json!("work"))
            )
        );
        assert_eq!(
            p(r#"not (emails[type eq "work"])"#),
            not(vp(
                attr("emails"),
                cmp(attr("type"), CompareOp::Eq, json!("work"))
            ))
        );
    }

    #[test]
    fn rfc7644_example_filters_parse() {
        let ex = |s: &str, expected: Filter| assert_eq!(p(s), expected, "{s}");
        ex(
            r#"userName eq "bjensen""#,
            cmp(attr("userName"), CompareOp::Eq, json!("bjensen")),
        );
        ex(
            r#"name.familyName co "O'Malley""#,
            cmp(sub("name", "familyName"), CompareOp::Co, json!("O'Malley")),
        );
        ex(
            r#"userName sw "J""#,
            cmp(attr("userName"), CompareOp::Sw, json!("J")),
        );
        ex(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            cmp(
                urn(USER_SCHEMA, "userName", None),
                CompareOp::Sw,
                json!("J"),
            ),
        );
        ex("title pr", Filter::Present(attr("title")));
        ex(
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            cmp(
                sub("meta", "lastModified"),
                CompareOp::Gt,
                json!("2011-05-13T04:42:34Z"),
            ),
        );
        ex(
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            cmp(
                sub("meta", "lastModified"),
                CompareOp::Ge,
                json!("2011-05-13T04:42:34Z"),
            ),
        );
        ex(
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            cmp(
                sub("meta", "lastModified"),
                CompareOp::Lt,
                json!("2011-05-13T04:42:34Z"),
            ),
        );
        ex(
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            cmp(
                sub("meta", "lastModified"),
                CompareOp::Le,
                json!("2011-05-13T04:42:34Z"),
            ),
        );
        ex(
            r#"title pr and userType eq "Employee""#,
            and(
                Filter::Present(attr("title")),
                cmp(attr("userType"), CompareOp::Eq, json!("Employee")),
            ),
        );
        ex(
            r#"title pr or userType eq "Intern""#,
            or(
                Filter::Present(attr("title")),
                cmp(attr("userType"), CompareOp::Eq, json!("Intern")),
            ),
        );
        ex(
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            cmp(
                attr("schemas"),
                CompareOp::Eq,
                json!(ENTERPRISE_USER_SCHEMA),
            ),
        );
        let emails_either = || {
            or(
                cmp(attr("emails"), CompareOp::Co, json!("example.com")),
                cmp(sub("emails", "value"), CompareOp::Co, json!("example.org")),
            )
        };
        ex(
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            and(
                cmp(attr("userType"), CompareOp::Eq, json!("Employee")),
                emails_either(),
            ),
        );
        ex(
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            and(
                cmp(attr("userType"), CompareOp::Ne, json!("Employee")),
                not(emails_either()),
            ),
        );
        ex(
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            and(
                cmp(attr("userType"), CompareOp::Eq, json!("Employee")),
                cmp(sub("emails", "type"), CompareOp::Eq, json!("work")),
            ),
        );
        let work_example = || {
            vp(
                attr("emails"),
                and(
                    cmp(attr("type"), CompareOp::Eq, json!("work")),
                    cmp(attr("value"), CompareOp::Co, json!("@example.com")),
                ),
            )
        };
        ex(
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            and(
                cmp(attr("userType"), CompareOp::Eq, json!("Employee")),
                work_example(),
            ),
        );
        ex(
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            or(
                work_example(),
                vp(
                    attr("ims"),
                    and(
                        cmp(attr("type"), CompareOp::Eq, json!("xmpp")),
                        cmp(attr("value"), CompareOp::Co, json!("@foo.com")),
                    ),
                ),
            ),
        );
    }

    // ---- parsing: errors ------------------------------------------------------------------------

    #[test]
    fn error_cases() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "empty filter", 0),
            ("   ", "empty filter", 3),
            (r#"userName eq "bjensen"#, "unterminated string", 12),
            (
                r#"userName eq "ends with backslash\"#,
                "unterminated string",
                12,
            ),
            (r#"userName xx "a""#, "unknown operator 'xx'", 9),
            (r#"userName equals "a""#, "unknown operator 'equals'", 9),
            (
                "userName eq",
                "expected a value after 'eq', found end of input",
                11,
            ),
            (
                "userName eq )",
                "expected a value after 'eq', found ')'",
                12,
            ),
            (
                "userName eq bjensen",
                "expected a value after 'eq', found 'bjensen'",
                12,
            ),
            ("userName", "expected an operator after 'userName'", 8),
            (r#"userName eq "a" garbage"#, "unexpected 'garbage'", 16),
            (r#"userName eq "a")"#, "unexpected ')'", 15),
            (
                r#"(userName eq "a""#,
                "expected ')', found end of input",
                16,
            ),
            (
                r#"userName eq "a" and"#,
                "expected an attribute expression",
                19,
            ),
            (
                r#"userName eq "a" or or"#,
                "expected an operator after 'or'",
                21,
            ),
            (r#"and eq "a" and"#, "expected an attribute expression", 14),
            ("()", "expected an attribute name, found ')'", 1),
            ("not title pr", "expected '(' after 'not'", 4),
            ("not ()", "expected an attribute name", 5),
            (
                r#"emails[type eq "work""#,
                "expected ']', found end of input",
                21,
            ),
            (r#"emails[]"#, "expected an attribute name, found ']'", 7),
            (r#"emails[type eq "work"]]"#, "unexpected ']'", 22),
            (r#"emails[type eq "work")"#, "expected ']', found ')'", 21),
            (
                r#"emails[addr[type eq "x"]]"#,
                "value filters cannot be nested",
                11,
            ),
            (r#"emails.type[value eq "x"]"#, "without a sub-attribute", 0),
            ("a eq 01", "invalid number '01'", 5),
            ("a eq 1.", "invalid number '1.'", 5),
            ("a eq -", "invalid number '-'", 5),
            ("a eq 1and b pr", "invalid number '1and'", 5),
            ("a eq 1e999", "invalid number", 5),
            ("a eq truex", "found 'truex'", 5),
            (r#"a eq "bad \q escape""#, "invalid string literal", 5),
            ("a eq \"raw\u{1}control\"", "invalid string literal", 5),
            ("a.b.c pr", "invalid sub-attribute name 'b.c'", 2),
            ("1abc pr", "invalid attribute name '1abc'", 0),
            ("a_ pr and _a pr", "invalid attribute name '_a'", 10),
            (":name pr", "empty schema URN", 0),
            ("urn:foo: pr", "expected an attribute name in 'urn:foo:'", 8),
            ("urn:foo:2.0 pr", "invalid attribute name '2'", 8),
            ("'single' eq 1", "expected an attribute name, found '''", 0),
            ("a eq 'x'", "expected a value after 'eq', found '''", 5),
            ("é pr", "expected an attribute name, found 'é'", 0),
            (r#"a eq "é" garbage"#, "unexpected 'garbage'", 9),
        ];
        for (input, message, position) in cases {
            let e = err(input);
            assert!(
                e.message.contains(message),
                "{input:?}: message {:?} should contain {message:?}",
                e.message
            );
            assert_eq!(e.position, *position, "{input:?}: {e}");
        }
    }

    #[test]
    fn error_display_and_scim_error() {
        let e = err("userName xx \"a\"");
        assert_eq!(e.to_string(), "unknown operator 'xx' at position 9");
        let scim: ScimError = e.into();
        assert_eq!(scim.status, 400);
        assert_eq!(scim.scim_type, Some(crate::scim::ScimType::InvalidFilter));
        assert_eq!(scim.detail, "unknown operator 'xx' at position 9");
    }

    #[test]
    fn long_tokens_are_truncated_in_messages() {
        let e = err(&format!("a {} 1", "x".repeat(10_000)));
        assert!(e.message.len() < 100, "{}", e.message);
    }

    #[test]
    fn depth_limit() {
        let nest = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
        assert!(parse_filter(&nest(MAX_DEPTH)).is_ok());
        assert!(err(&nest(MAX_DEPTH + 1)).message.contains("nesting deeper"));
        let nots = |n: usize| format!("{}a pr{}", "not (".repeat(n), ")".repeat(n));
        assert!(parse_filter(&nots(MAX_DEPTH)).is_ok());
        assert!(err(&nots(MAX_DEPTH + 1)).message.contains("nesting deeper"));
        // A value filter counts as a level.
        let in_vp = format!("x[{}a pr{}]", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(err(&in_vp).message.contains("nesting deeper"));
        // Hostile inputs fail fast rather than overflowing the stack.
        assert!(parse_filter(&"(".repeat(10_000)).is_err());
        assert!(parse_filter(&"not (".repeat(10_000)).is_err());
        assert!(parse_filter(&"a[".repeat(10_000)).is_err());
        assert!(parse_filter(&"[".repeat(10_000)).is_err());
        assert!(parse_path(&format!("a[{}", "(".repeat(10_000))).is_err());
    }

    #[test]
    fn term_limit_keeps_trees_shallow() {
        let chain = |n: usize, op: &str| vec!["userName eq \"x\""; n].join(op);
        assert!(err(&chain(MAX_TERMS + 1, " and "))
            .message
            .contains("more than"));
        assert!(parse_filter(&chain(100_000, " or ")).is_err());
        // The largest accepted filter can be evaluated, printed, cloned, compared and dropped
        // on a default-sized test thread.
        for op in [" and ", " or "] {
            let f = p(&chain(MAX_TERMS, op));
            let user = json!({"userName": "x"});
            assert!(f.matches(&user, &never_exact));
            let printed = f.to_string();
            assert_eq!(parse_filter(&printed).as_ref(), Ok(&f));
            let copy = f.clone();
            assert_eq!(copy, f);
            assert!(f.equality_literals("userName").is_some() || op == " and ");
            assert!(f.indexable_conjunct(&["username"]).is_some() || op == " or ");
        }
        // Right-nested chains print with parentheses and so meet the depth limit instead.
        let mut right = Filter::Present(attr("a"));
        for _ in 0..MAX_TERMS - 1 {
            right = and(Filter::Present(attr("a")), right);
        }
        assert!(parse_filter(&right.to_string()).is_err());
    }

    // ---- parse_path ---------------------------------------------------------------------------

    #[test]
    fn patch_paths() {
        let pp = |s: &str| match parse_path(s) {
            Ok(path) => path,
            Err(e) => panic!("{s:?}: {e}"),
        };
        let plain = |a: AttrPath| PatchPath {
            attr: a,
            filter: None,
            sub: None,
        };
        assert_eq!(pp("userName"), plain(attr("userName")));
        assert_eq!(pp("name.givenName"), plain(sub("name", "givenName")));
        assert_eq!(pp("members"), plain(attr("members")));
        assert_eq!(
            pp(r#"emails[type eq "work"].value"#),
            PatchPath {
                attr: attr("emails"),
                filter: Some(cmp(attr("type"), CompareOp::Eq, json!("work"))),
                sub: Some("value".into()),
            }
        );
        assert_eq!(
            pp(r#"members[value eq "2819c223"]"#),
            PatchPath {
                attr: attr("members"),
                filter: Some(cmp(attr("value"), CompareOp::Eq, json!("2819c223"))),
                sub: None,
            }
        );
        assert_eq!(
            pp(r#"addresses[type eq "work"].formatted"#),
            PatchPath {
                attr: attr("addresses"),
                filter: Some(cmp(attr("type"), CompareOp::Eq, json!("work"))),
                sub: Some("formatted".into()),
            }
        );
        assert_eq!(
            pp("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            plain(urn(ENTERPRISE_USER_SCHEMA, "manager", None))
        );
        assert_eq!(
            pp("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
            plain(urn(ENTERPRISE_USER_SCHEMA, "manager", Some("value")))
        );
        assert_eq!(
            pp("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"),
            plain(urn(USER_SCHEMA, "name", Some("givenName")))
        );
        assert_eq!(
            pp(r#"emails[type eq "work" and primary eq true].display"#),
            PatchPath {
                attr: attr("emails"),
                filter: Some(and(
                    cmp(attr("type"), CompareOp::Eq, json!("work")),
                    cmp(attr("primary"), CompareOp::Eq, json!(true))
                )),
                sub: Some("display".into()),
            }
        );
        assert_eq!(pp(" userName "), plain(attr("userName")));
        assert_eq!("members".parse::<PatchPath>(), Ok(plain(attr("members"))));
    }

    #[test]
    fn patch_path_errors() {
        for bad in [
            "",
            "  ",
            "name.givenName.x",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"].",
            "emails[type eq \"work\"].value.x",
            "emails[type eq \"work\"]value",
            "emails[type eq \"work\"][value pr]",
            "emails[]",
            "emails[type[value pr]]",
            "name.givenName[value pr]",
            "userName eq \"x\"",
            "userName extra",
            "(userName)",
            "emails[type eq \"work\"].1x",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?} should not parse");
        }
    }

    // ---- printing -------------------------------------------------------------------------------

    #[test]
    fn display_is_canonical() {
        let cases = [
            (r#"userName EQ "bjensen""#, r#"userName eq "bjensen""#),
            ("title PR", "title pr"),
            (
                r#"a eq 1 OR b eq 2 AND c eq 3"#,
                "a eq 1 or b eq 2 and c eq 3",
            ),
            (
                "(a eq 1 or b eq 2) and c eq 3",
                "(a eq 1 or b eq 2) and c eq 3",
            ),
            (
                "a eq 1 and (b eq 2 and c eq 3)",
                "a eq 1 and (b eq 2 and c eq 3)",
            ),
            (
                "a eq 1 or (b eq 2 or c eq 3)",
                "a eq 1 or (b eq 2 or c eq 3)",
            ),
            (
                "(a eq 1 and b eq 2) or c eq 3",
                "a eq 1 and b eq 2 or c eq 3",
            ),
            ("((a pr))", "a pr"),
            ("NOT(a pr)", "not (a pr)"),
            ("a eq TRUE and b ne NULL", "a eq true and b ne null"),
            ("a eq 1E3", "a eq 1000.0"),
            (r#"a eq "q\"b\\s\/\u0001é""#, r#"a eq "q\"b\\s/\u0001é""#),
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                r#"emails[type eq "work" and value co "@example.com"]"#,
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName pr",
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName pr",
            ),
        ];
        for (input, printed) in cases {
            assert_eq!(p(input).to_string(), printed, "{input}");
        }
        assert_eq!(sub("name", "givenName").to_string(), "name.givenName");
        assert_eq!(
            urn(ENTERPRISE_USER_SCHEMA, "manager", Some("value")).to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
        for path in [
            "userName",
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "2819c223"]"#,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        ] {
            assert_eq!(
                parse_path(path).map(|p| p.to_string()),
                Ok(path.to_string())
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            r#"userName eq "bjensen""#,
            r#"name.familyName co "O'Malley""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            "a eq 1 or b eq 2 and c eq 3",
            "(a eq 1 or b eq 2) and (c eq 3 or d eq 4)",
            "not (not (a pr and (b pr or c pr)))",
            "a eq -1.5e-7 and b gt 18446744073709551615 and c lt -9223372036854775808",
            r#"x eq "\ud83d\ude00 \" \\ \n""#,
            r#"emails[not (type eq "work") and (value ew ".org" or primary eq false)]"#,
        ] {
            roundtrip(s);
        }
    }

    // ---- evaluation -----------------------------------------------------------------------------

    #[test]
    fn rfc7644_example_filters_evaluate() {
        let u = bjensen();
        let yes = [
            r#"userName eq "bjensen@example.com""#,
            r#"userName eq "BJENSEN@example.com""#,
            r#"name.familyName co "ens""#,
            r#"userName sw "B""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bj""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:33Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:35Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for f in yes {
            assert!(m(f, &u), "{f} should match");
        }
        let no = [
            r#"userName eq "bjensen""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            "nickname2 pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Intern""#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"emails[type eq "home" and value co "@example.com"]"#,
            r#"ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for f in no {
            assert!(!m(f, &u), "{f} should not match");
        }
    }

    #[test]
    fn evaluation_of_each_operator() {
        let u = bjensen();
        let table: &[(&str, bool)] = &[
            (r#"title eq "tour guide""#, true),
            (r#"title ne "tour guide""#, false),
            (r#"title ne "Pilot""#, true),
            (r#"title co "UR G""#, true),
            (r#"title co "xyz""#, false),
            (r#"title sw "tour""#, true),
            (r#"title sw "guide""#, false),
            (r#"title ew "GUIDE""#, true),
            (r#"title ew "tour""#, false),
            (r#"title gt "Tour""#, true),
            (r#"title gt "u""#, false),
            (r#"title ge "tour guide""#, true),
            (r#"title lt "u""#, true),
            (r#"title le "TOUR GUIDE""#, true),
            (r#"title lt "tour guide""#, false),
            ("loginCount eq 42", true),
            ("loginCount eq 42.0", true),
            ("loginCount ne 42", false),
            ("loginCount gt 41", true),
            ("loginCount gt 42", false),
            ("loginCount ge 42", true),
            ("loginCount lt 42.5", true),
            ("loginCount le 41", false),
            ("loginCount gt -1", true),
            ("loginCount lt 18446744073709551615", true),
            ("score gt 3", true),
            ("score eq 3.5", true),
            ("score le 3.4", false),
            ("loginCount co 4", false),
            ("loginCount sw 4", false),
            ("active eq true", true),
            ("active eq TRUE", true),
            ("active eq false", false),
            ("active ne false", true),
            ("active gt false", false),
            ("active le true", false),
            ("emails.primary eq true", true),
            // type mismatches never match (and never panic)
            (r#"loginCount eq "42""#, false),
            (r#"active eq "true""#, false),
            ("title eq 1", false),
            ("title gt 1", false),
            ("title eq true", false),
            ("name eq \"Jensen\"", false),
            ("name gt 1", false),
            // `ne` is `not (eq)`
            (r#"loginCount ne "42""#, true),
            (r#"absent ne "x""#, true),
            (r#"absent eq "x""#, false),
            (r#"absent co "x""#, false),
            (r#"absent gt "x""#, false),
            (r#"emails.type ne "work""#, false),
            (r#"emails.type ne "other""#, true),
            // null
            ("absent eq null", true),
            ("nothing eq null", true),
            ("noItems eq null", true),
            ("title eq null", false),
            ("absent ne null", false),
            ("title ne null", true),
            ("title gt null", false),
            ("empty eq null", false),
            (r#"empty eq """#, true),
        ];
        for (f, expected) in table {
            assert_eq!(m(f, &u), *expected, "{f}");
        }
    }

    #[test]
    fn presence() {
        let u = bjensen();
        for (f, expected) in [
            ("title pr", true),
            ("absent pr", false),
            ("nothing pr", false),
            ("empty pr", false),
            ("noItems pr", false),
            ("emails pr", true),
            ("emails.value pr", true),
            ("emails.display pr", false),
            ("name pr", true),
            ("name.middleName pr", true),
            ("name.suffix pr", false),
            ("active pr", true),
            ("loginCount pr", true),
            ("groups.$ref pr", true),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager pr",
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName pr",
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.x pr",
                false,
            ),
        ] {
            assert_eq!(m(f, &u), expected, "{f}");
        }
        assert!(m("a pr", &json!({"a": {"b": 1}})));
        assert!(!m("a pr", &json!({"a": {}})));
        assert!(!m("a pr", &json!({"a": [null, ""]})));
        assert!(m("a pr", &json!({"a": [null, "x"]})));
        assert!(m("a pr", &json!({"a": 0})));
        assert!(m("a pr", &json!({"a": false})));
    }

    #[test]
    fn attribute_names_are_case_insensitive() {
        let u = bjensen();
        assert!(m(r#"USERNAME eq "bjensen@example.com""#, &u));
        assert!(m(r#"Name.FamilyName eq "jensen""#, &u));
        assert!(m(r#"EMAILS[TYPE eq "WORK"]"#, &u));
        assert!(m(r#"emails.VALUE co "JENSEN.org""#, &u));
        assert!(m(
            r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:EmployeeNumber eq "701984""#,
            &u
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:user:USERNAME sw "b""#,
            &u
        ));
        // An exact key wins over a case-folded one.
        let both = json!({"userName": "exact", "username": "folded"});
        assert!(m(r#"userName eq "exact""#, &both));
        assert!(m(r#"username eq "folded""#, &both));
    }

    #[test]
    fn urn_qualified_evaluation() {
        let u = bjensen();
        for (f, expected) in [
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department sw "tour""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
                true,
            ),
            // a complex attribute compared directly uses its `value`
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "Jensen""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "Babs Jensen""#,
                true,
            ),
            // an unqualified name falls back to extension attributes (Entra's `manager eq`),
            // but a core attribute is never found inside an extension
            (r#"employeeNumber eq "701984""#, true),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:userName pr"#,
                false,
            ),
            (r#"urn:example:unknown:2.0:User:employeeNumber pr"#, false),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ne "1""#,
                true,
            ),
        ] {
            assert_eq!(m(f, &u), expected, "{f}");
        }
    }

    #[test]
    fn multi_valued_any_semantics() {
        let u = bjensen();
        assert!(m(r#"emails eq "babs@jensen.org""#, &u));
        assert!(m(r#"emails.value eq "bjensen@example.com""#, &u));
        assert!(m(r#"emails.type eq "home""#, &u));
        assert!(m(r#"phoneNumbers.value ew "4444""#, &u));
        assert!(m(r#"groups.display eq "tour guides""#, &u));
        assert!(m(
            r#"addresses[type eq "work" and locality eq "hollywood"]"#,
            &u
        ));
        assert!(!m(r#"addresses[type eq "home" and primary eq true]"#, &u));
        // Both conditions must hold on the same element, unlike two separate comparisons.
        assert!(m(r#"emails.type eq "home" and emails.primary eq true"#, &u));
        assert!(!m(r#"emails[type eq "home" and primary eq true]"#, &u));
        assert!(m(r#"emails[not (type eq "work")]"#, &u));
        assert!(!m(r#"emails[not (value pr)]"#, &u));
        // a single complex value behaves like a one-element array
        assert!(m(r#"name[givenName eq "barbara"]"#, &u));
        assert!(!m(r#"absent[value pr]"#, &u));
        assert!(!m(r#"title[value pr]"#, &u));
        assert!(m(r#"not (absent[value pr])"#, &u));
        // simple multi-valued attributes
        let g = json!({"tags": ["a", "B", 3], "members": [{"value": "u1"}, {"value": "u2"}]});
        assert!(m(r#"tags eq "b""#, &g));
        assert!(m("tags eq 3", &g));
        assert!(!m(r#"tags eq "c""#, &g));
        assert!(m(r#"members[value eq "u2"]"#, &g));
        assert!(m(r#"members eq "U1""#, &g));
        assert!(!m(r#"members.value eq "u3""#, &g));
        assert!(m(r#"members.value ne "u3""#, &g));
    }

    #[test]
    fn case_exact_callback() {
        let u = bjensen();
        let exact_ids = |path: &AttrPath| {
            path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId")
        };
        let f = p(r#"id eq "2819C223-7F76-453A-919D-413861904646""#);
        assert!(!f.matches(&u, &exact_ids));
        assert!(f.matches(&u, &never_exact));
        assert!(p(r#"userName eq "BJENSEN@EXAMPLE.COM""#).matches(&u, &exact_ids));
        let always = |_: &AttrPath| true;
        assert!(!p(r#"title co "guide""#).matches(&u, &always));
        assert!(p(r#"title co "Guide""#).matches(&u, &always));
        assert!(!p(r#"title gt "a""#).matches(&u, &always)); // "T" < "a" in code points
        assert!(p(r#"title gt "a""#).matches(&u, &never_exact));

        // The callback sees the path qualified by the enclosing value filter.
        let seen = RefCell::new(Vec::new());
        let record = |path: &AttrPath| {
            seen.borrow_mut().push(path.clone());
            false
        };
        p(r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"] and name.givenName eq "x" and loginCount eq 1"#)
            .matches(&u, &record);
        assert_eq!(
            seen.into_inner(),
            vec![
                // the first (work) email matches, so `any` stops there
                urn(USER_SCHEMA, "emails", Some("type")),
                sub("name", "givenName"),
            ]
        );
    }

    #[test]
    fn datetimes_compare_as_instants() {
        let u = json!({"meta": {"lastModified": "2011-05-13T04:42:34.5Z"}});
        // As text ".5Z" sorts before "Z"; as instants it is half a second later.
        assert!(m(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, &u));
        assert!(m(r#"meta.lastModified lt "2011-05-13T06:42:35+02:00""#, &u));
        assert!(m(
            r#"meta.lastModified eq "2011-05-13T06:42:34.500+02:00""#,
            &u
        ));
        assert!(m(r#"meta.lastModified sw "2011-05-13""#, &u));
        // Dates that are not RFC 3339 fall back to text order.
        let d = json!({"d": "2011-05-13"});
        assert!(m(r#"d gt "2011-05-12""#, &d));
        assert!(!m(r#"d gt "2011-05-14""#, &d));
    }

    #[test]
    fn evaluation_never_panics_on_odd_resources() {
        let f = p(r#"a eq "x" or a.b pr or a[b gt 1] or not (c co "y") or urn:x:y:d pr"#);
        for resource in [
            json!(null),
            json!(1),
            json!("a"),
            json!([]),
            json!([{"a": "x"}]),
            json!({"a": null}),
            json!({"a": [[1, 2], [{"b": 3}]]}),
            json!({"a": {"b": [null, {"c": 1}]}}),
            json!({"urn:x:y": "not an object"}),
            json!({"urn:x:y": [{"d": 1}]}),
        ] {
            let _ = f.matches(&resource, &never_exact);
        }
        assert!(!m("a pr", &json!(null)));
        assert!(m("a eq null", &json!("not an object")));
    }

    #[test]
    fn lookup_and_get_key_ci() {
        let u = bjensen();
        let values = lookup(&u, &sub("EMAILS", "Value"));
        assert_eq!(
            values,
            vec![&json!("bjensen@example.com"), &json!("babs@jensen.org")]
        );
        assert_eq!(lookup(&u, &attr("emails")).len(), 2);
        assert_eq!(lookup(&u, &attr("title")), vec![&json!("Tour Guide")]);
        assert_eq!(lookup(&u, &attr("nothing")), vec![&Value::Null]);
        assert!(lookup(&u, &attr("noItems")).is_empty());
        assert!(lookup(&u, &attr("absent")).is_empty());
        assert_eq!(
            lookup(&u, &sub("manager", "displayName")),
            vec![&json!("John Smith")],
            "unqualified names fall back to extension attributes"
        );
        assert!(lookup(&u, &sub("title", "x")).is_empty());
        assert_eq!(
            lookup(
                &u,
                &urn(ENTERPRISE_USER_SCHEMA, "manager", Some("displayName"))
            ),
            vec![&json!("John Smith")]
        );
        assert_eq!(
            lookup(&u, &urn(USER_SCHEMA, "name", Some("givenName"))),
            vec![&json!("Barbara")]
        );
        let obj = u.as_object().cloned().unwrap_or_default();
        assert_eq!(
            get_key_ci(&obj, "DISPLAYNAME").map(|(k, v)| (k.as_str(), v)),
            Some(("displayName", &json!("Babs Jensen")))
        );
        assert!(get_key_ci(&obj, "displayNam").is_none());
    }

    // ---- index helpers --------------------------------------------------------------------------

    #[test]
    fn equality_literals_for_index_lookups() {
        let lits = |f: &str, a: &str| {
            p(f).equality_literals(a)
                .map(|v| v.into_iter().cloned().collect::<Vec<_>>())
        };
        assert_eq!(
            lits(r#"userName eq "x""#, "userName"),
            Some(vec![json!("x")])
        );
        assert_eq!(
            lits(r#"USERNAME Eq "x""#, "username"),
            Some(vec![json!("x")])
        );
        assert_eq!(
            lits(
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#,
                "userName"
            ),
            Some(vec![json!("x")])
        );
        assert_eq!(
            lits(
                r#"userName eq "a" or userName eq "b" or username eq "c""#,
                "userName"
            ),
            Some(vec![json!("a"), json!("b"), json!("c")])
        );
        assert_eq!(
            lits(r#"members[value eq "a" or value eq "b"]"#, "members.value"),
            Some(vec![json!("a"), json!("b")])
        );
        assert_eq!(
            lits(
                r#"members[value eq "a"] or members.value eq "b" or members eq "c""#,
                "members.value"
            ),
            Some(vec![json!("a"), json!("b"), json!("c")])
        );
        for (f, a) in [
            (r#"userName eq "a" or externalId eq "b""#, "userName"),
            (r#"userName eq "a" and userName eq "b""#, "userName"),
            (r#"userName ne "a""#, "userName"),
            (r#"userName co "a""#, "userName"),
            ("userName eq null", "userName"),
            ("userName eq 1", "userName"),
            (r#"not (userName eq "a")"#, "userName"),
            (r#"name.userName eq "a""#, "userName"),
            (r#"urn:x:userName eq "a""#, "userName"),
            (
                r#"members[value eq "a" and type eq "User"]"#,
                "members.value",
            ),
            (r#"members[value eq "a"]"#, "members"),
            (r#"members.display eq "a""#, "members.value"),
            (r#"members.value eq "a""#, "members"),
        ] {
            assert_eq!(lits(f, a), None, "{f} for {a}");
        }
    }

    #[test]
    fn indexable_conjuncts() {
        let attrs = ["id", "userName", "externalId", "members.value"];
        let ic = |f: &str| {
            p(f).indexable_conjunct(&attrs)
                .map(|(a, lit)| (a, lit.clone()))
        };
        assert_eq!(
            ic(r#"userName eq "x""#),
            Some(("username".into(), json!("x")))
        );
        assert_eq!(
            p(r#"title pr and userName sw "ab""#)
                .indexable_prefix(&attrs)
                .map(|(a, lit)| (a, lit.clone())),
            Some(("username".into(), json!("ab")))
        );
        assert_eq!(p(r#"userName sw "ab""#).indexable_conjunct(&attrs), None);
        assert_eq!(
            ic(r#"active eq true and USERNAME eq "x" and title pr"#),
            Some(("username".into(), json!("x")))
        );
        // earlier attrs win
        assert_eq!(
            ic(r#"userName eq "u" and id eq "i""#),
            Some(("id".into(), json!("i")))
        );
        assert_eq!(
            ic(r#"(externalId eq "e" and title pr) and not (id eq "i")"#),
            Some(("externalid".into(), json!("e")))
        );
        assert_eq!(
            ic(r#"members[value eq "m" and type eq "User"] and displayName pr"#),
            Some(("members.value".into(), json!("m")))
        );
        for f in [
            r#"userName eq "a" or title pr"#,
            r#"not (userName eq "a")"#,
            r#"userName sw "a""#,
            "userName eq null",
            r#"title eq "x""#,
            r#"members[value eq "a" or value eq "b"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:id eq "x""#,
        ] {
            assert_eq!(ic(f), None, "{f}");
        }
    }

    // ---- property tests -------------------------------------------------------------------------

    fn name_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
            1 => prop::sample::select(vec!["not", "and", "or", "pr", "eq", "true", "null", "$ref"])
                .prop_map(String::from),
        ]
    }

    fn urn_strategy() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(USER_SCHEMA.to_string())),
            1 => Just(Some(ENTERPRISE_USER_SCHEMA.to_string())),
            1 => "urn:[a-z]{1,4}(:[a-zA-Z0-9.-]{1,5}){0,3}".prop_map(Some),
        ]
    }

    fn attr_strategy() -> impl Strategy<Value = AttrPath> {
        (
            urn_strategy(),
            name_strategy(),
            prop::option::of(name_strategy()),
        )
            .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
    }

    fn multi_valued_attr_strategy() -> impl Strategy<Value = AttrPath> {
        (urn_strategy(), name_strategy()).prop_map(|(urn, name)| AttrPath {
            urn,
            name,
            sub: None,
        })
    }

    fn op_strategy() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(
            CompareOp::KEYWORDS
                .iter()
                .map(|(_, op)| *op)
                .collect::<Vec<_>>(),
        )
    }

    fn literal_strategy() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Short decimals: serde_json's default float parser is exact for these, whereas
            // arbitrary 17-digit floats need its `float_roundtrip` feature.
            (any::<i32>(), 0u32..7).prop_filter_map("finite", |(m, k)| {
                Number::from_f64(f64::from(m) / 10f64.powi(k as i32)).map(Value::Number)
            }),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    }

    fn leaf_strategy() -> impl Strategy<Value = Filter> {
        prop_oneof![
            attr_strategy().prop_map(Filter::Present),
            (attr_strategy(), op_strategy(), literal_strategy())
                .prop_map(|(a, op, lit)| Filter::Compare(a, op, lit)),
        ]
    }

    fn logic<S>(inner: S) -> impl Strategy<Value = Filter>
    where
        S: Strategy<Value = Filter> + Clone + 'static,
    {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
            inner.prop_map(not),
        ]
    }

    /// Filters valid inside a value filter: no nested value paths.
    fn inner_filter_strategy() -> impl Strategy<Value = Filter> {
        leaf_strategy().prop_recursive(4, 16, 2, logic)
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        prop_oneof![
            3 => leaf_strategy(),
            1 => (multi_valued_attr_strategy(), inner_filter_strategy())
                .prop_map(|(a, f)| vp(a, f)),
        ]
        .prop_recursive(4, 32, 2, logic)
    }

    fn patch_path_strategy() -> impl Strategy<Value = PatchPath> {
        prop_oneof![
            attr_strategy().prop_map(|attr| PatchPath {
                attr,
                filter: None,
                sub: None
            }),
            (
                multi_valued_attr_strategy(),
                inner_filter_strategy(),
                prop::option::of(name_strategy())
            )
                .prop_map(|(attr, f, sub)| PatchPath {
                    attr,
                    filter: Some(f),
                    sub
                }),
        ]
    }

    /// Strings built from filter-ish fragments, which reach far more parser states than
    /// uniformly random text.
    fn tokenish_strategy() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            prop::sample::select(vec![
                "(",
                ")",
                "[",
                "]",
                " ",
                "  ",
                "\t",
                "and",
                "or",
                "not",
                "not (",
                " and ",
                " or ",
                "eq",
                " eq ",
                "ne",
                "co",
                "sw",
                "ew",
                "gt",
                "ge",
                "lt",
                "le",
                "pr",
                " pr",
                "\"",
                "\\",
                "\\u",
                "\\ud83d",
                "\"x\"",
                "\"\\\"\"",
                "true",
                "FALSE",
                "null",
                ".",
                ":",
                "urn:ietf:params:scim:schemas:core:2.0:User:",
                "emails",
                "value",
                "type",
                "1",
                "-",
                "1.5e3",
                "e",
                "+",
                "0",
                "é",
                "😀",
                "\u{0}",
                "$ref",
                "'",
                ",",
            ])
            .prop_map(String::from),
            "[a-zA-Z]{1,5}",
            "\\PC{1,3}",
        ];
        prop::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_random_text(s in "\\PC{0,80}|.{0,40}") {
            let _ = parse_filter(&s);
            let _ = parse_path(&s);
            let _ = parse_attr_path(&s);
        }

        #[test]
        fn parsers_never_panic_on_token_soup(s in tokenish_strategy()) {
            if let Ok(f) = parse_filter(&s) {
                // Whatever parses must print to something that parses back the same.
                prop_assert_eq!(parse_filter(&f.to_string()), Ok(f.clone()));
                let _ = f.matches(&bjensen(), &never_exact);
            }
            if let Ok(path) = parse_path(&s) {
                prop_assert_eq!(parse_path(&path.to_string()), Ok(path));
            }
            if let Err(e) = parse_filter(&s) {
                prop_assert!(e.position <= s.chars().count());
            }
        }

        #[test]
        fn filters_round_trip_through_display(f in filter_strategy()) {
            let printed = f.to_string();
            prop_assert_eq!(parse_filter(&printed), Ok(f), "printed: {}", printed);
        }

        #[test]
        fn patch_paths_round_trip_through_display(path in patch_path_strategy()) {
            let printed = path.to_string();
            prop_assert_eq!(parse_path(&printed), Ok(path), "printed: {}", printed);
        }

        #[test]
        fn ne_is_not_eq(a in attr_strategy(), lit in literal_strategy()) {
            let u = bjensen();
            let eq = Filter::Compare(a.clone(), CompareOp::Eq, lit.clone());
            let ne = Filter::Compare(a, CompareOp::Ne, lit);
            prop_assert_eq!(ne.matches(&u, &never_exact), !eq.matches(&u, &never_exact));
        }
    }
}
