//! Attribute definitions: the one source of truth for what the core User schema (RFC 7643
//! §4.1), the enterprise User extension (§4.3) and the core Group schema (§4.2) contain, and
//! for how a POST/PUT body is brought into the one canonical shape the store keeps.
//!
//! Owns: the static schema tables, their `/Schemas` representation (RFC 7643 §7), attribute
//! lookup by (possibly URN-qualified, any-case) name, and `normalize_resource`. Must not know
//! about HTTP, SQLite or PATCH semantics (`patch.rs` builds on the helpers here).
//!
//! Normalisation policy, chosen so that both Entra ID and Okta are accepted as they really
//! behave (design.md, "What Entra ID and Okta really send"):
//! - attribute names are matched case-insensitively and stored in the schema's spelling;
//! - attributes of no supported schema, and unknown extension URNs in `schemas`, are dropped
//!   silently: an IdP mapping an extra attribute must not block provisioning;
//! - readOnly attributes (`id`, `meta`, `groups`, `manager.displayName`) are server-owned and
//!   dropped; `password` (writeOnly) is never stored;
//! - null, empty arrays and empty objects mean "unassigned" (RFC 7643 §2.5) and are removed;
//! - Entra's string booleans (`"False"`) become booleans; a single value for a multi-valued
//!   attribute is wrapped into an array; a one-element array for a single-valued attribute is
//!   unwrapped; a bare string for a complex attribute with a `value` sub-attribute (Entra's
//!   `manager: "<id>"`) becomes `{"value": …}`.

use serde_json::{json, Map, Value};

use super::filter::AttrPath;
use super::{ResourceKind, ScimError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// The `/Schemas` resources' own schema URN.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
            AttrType::Binary => "binary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7 "attributes").
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttrDef],
    pub description: &'static str,
}

impl AttrDef {
    /// The sub-attribute called `name` (any case).
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        find_attr(self.sub_attributes, name)
    }

    // Builders for the static tables below; defaults are RFC 7643 §2.2's.
    const fn new(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
        AttrDef {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description,
        }
    }
    const fn multi(self) -> AttrDef {
        AttrDef {
            multi_valued: true,
            ..self
        }
    }
    const fn req(self) -> AttrDef {
        AttrDef {
            required: true,
            ..self
        }
    }
    const fn exact(self) -> AttrDef {
        AttrDef {
            case_exact: true,
            ..self
        }
    }
    const fn mutab(self, mutability: Mutability) -> AttrDef {
        AttrDef { mutability, ..self }
    }
    const fn ret(self, returned: Returned) -> AttrDef {
        AttrDef { returned, ..self }
    }
    const fn uniq(self, uniqueness: Uniqueness) -> AttrDef {
        AttrDef { uniqueness, ..self }
    }
    const fn canon(self, canonical_values: &'static [&'static str]) -> AttrDef {
        AttrDef {
            canonical_values,
            ..self
        }
    }
    const fn refs(self, reference_types: &'static [&'static str]) -> AttrDef {
        AttrDef {
            reference_types,
            ..self
        }
    }
    const fn subs(self, sub_attributes: &'static [AttrDef]) -> AttrDef {
        AttrDef {
            sub_attributes,
            ..self
        }
    }
}

const fn string(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::String, description)
}
const fn boolean(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Boolean, description)
}
const fn reference(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Reference, description)
}
const fn complex(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Complex, description)
}

/// A schema (RFC 7643 §7).
#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttrDef],
}

// ---- common attributes (RFC 7643 §3.1) ----

const META_SUBS: &[AttrDef] = &[
    string(
        "resourceType",
        "The name of the resource type of the resource.",
    )
    .exact()
    .mutab(Mutability::ReadOnly),
    AttrDef::new(
        "created",
        AttrType::DateTime,
        "The date and time the resource was added to the service provider.",
    )
    .mutab(Mutability::ReadOnly),
    AttrDef::new(
        "lastModified",
        AttrType::DateTime,
        "The most recent date and time the resource was modified.",
    )
    .mutab(Mutability::ReadOnly),
    reference("location", "The URI of the resource being returned.")
        .exact()
        .mutab(Mutability::ReadOnly)
        .refs(&["uri"]),
    string(
        "version",
        "The version (ETag) of the resource being returned.",
    )
    .exact()
    .mutab(Mutability::ReadOnly),
];

/// `id`, `externalId` and `meta`: part of every resource, listed in no schema's `/Schemas`
/// representation (as in RFC 7643 §8.7.1).
pub static COMMON_ATTRIBUTES: &[AttrDef] = &[
    string(
        "id",
        "Unique identifier for the resource, assigned by the service provider.",
    )
    .exact()
    .mutab(Mutability::ReadOnly)
    .ret(Returned::Always)
    .uniq(Uniqueness::Server),
    string(
        "externalId",
        "Identifier for the resource as defined by the provisioning client.",
    )
    .exact(),
    complex(
        "meta",
        "Resource metadata maintained by the service provider.",
    )
    .mutab(Mutability::ReadOnly)
    .subs(META_SUBS),
];

// ---- core User (RFC 7643 §4.1) ----

const NAME_SUBS: &[AttrDef] = &[
    string(
        "formatted",
        "The full name, including all middle names, titles and suffixes, formatted for display.",
    ),
    string("familyName", "The family name of the User, or last name."),
    string("givenName", "The given name of the User, or first name."),
    string("middleName", "The middle name(s) of the User."),
    string(
        "honorificPrefix",
        "The honorific prefix(es) of the User, or title.",
    ),
    string(
        "honorificSuffix",
        "The honorific suffix(es) of the User, or suffix.",
    ),
];

const EMAIL_SUBS: &[AttrDef] = &[
    string("value", "Email address for the User."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the email's function, e.g. 'work' or 'home'.",
    )
    .canon(&["work", "home", "other"]),
    boolean(
        "primary",
        "Whether this is the preferred mailing address or primary email address.",
    ),
];

const PHONE_SUBS: &[AttrDef] = &[
    string("value", "Phone number of the User."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the phone number's function, e.g. 'work' or 'mobile'.",
    )
    .canon(&["work", "home", "mobile", "fax", "pager", "other"]),
    boolean("primary", "Whether this is the preferred phone number."),
];

const IM_SUBS: &[AttrDef] = &[
    string("value", "Instant messaging address for the User."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the instant messaging service.")
        .canon(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    boolean(
        "primary",
        "Whether this is the preferred messenger address.",
    ),
];

const PHOTO_SUBS: &[AttrDef] = &[
    reference("value", "URL of a photo of the User.").refs(&["external"]),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the photo's function.").canon(&["photo", "thumbnail"]),
    boolean("primary", "Whether this is the preferred photo."),
];

const ADDRESS_SUBS: &[AttrDef] = &[
    string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    string("streetAddress", "The full street address component."),
    string("locality", "The city or locality component."),
    string("region", "The state or region component."),
    string("postalCode", "The zip code or postal code component."),
    string(
        "country",
        "The country name component (ISO 3166-1 alpha-2).",
    ),
    string(
        "type",
        "A label indicating the address's function, e.g. 'work' or 'home'.",
    )
    .canon(&["work", "home", "other"]),
    boolean("primary", "Whether this is the preferred mailing address."),
];

const USER_GROUP_SUBS: &[AttrDef] = &[
    string("value", "The identifier of the User's group.").mutab(Mutability::ReadOnly),
    reference("$ref", "The URI of the corresponding Group resource.")
        .mutab(Mutability::ReadOnly)
        .refs(&["User", "Group"]),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    )
    .mutab(Mutability::ReadOnly),
    string("type", "Whether the membership is direct or indirect.")
        .mutab(Mutability::ReadOnly)
        .canon(&["direct", "indirect"]),
];

const ENTITLEMENT_SUBS: &[AttrDef] = &[
    string("value", "The value of an entitlement."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the primary entitlement."),
];

const ROLE_SUBS: &[AttrDef] = &[
    string("value", "The value of a role."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the primary role."),
];

const X509_SUBS: &[AttrDef] = &[
    AttrDef::new(
        "value",
        AttrType::Binary,
        "The value of an X.509 certificate (base64 DER).",
    ),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the primary certificate."),
];

const USER_ATTRS: &[AttrDef] = &[
    string(
        "userName",
        "Unique identifier for the User, typically used to sign in. REQUIRED.",
    )
    .req()
    .uniq(Uniqueness::Server),
    complex("name", "The components of the user's real name.").subs(NAME_SUBS),
    string(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    string(
        "nickName",
        "The casual way to address the user in real life.",
    ),
    reference(
        "profileUrl",
        "A fully qualified URL pointing to the User's online profile.",
    )
    .refs(&["external"]),
    string("title", "The user's title, such as 'Vice President'."),
    string(
        "userType",
        "The relationship between the organization and the user, e.g. 'Employee'.",
    ),
    string(
        "preferredLanguage",
        "The User's preferred written or spoken language.",
    ),
    string(
        "locale",
        "The User's default location for localisation, e.g. 'en-US'.",
    ),
    string(
        "timezone",
        "The User's time zone in IANA format, e.g. 'Europe/Copenhagen'.",
    ),
    boolean("active", "The User's administrative status."),
    string(
        "password",
        "The User's cleartext password. Never stored by this server.",
    )
    .mutab(Mutability::WriteOnly)
    .ret(Returned::Never),
    complex("emails", "Email addresses for the user.")
        .multi()
        .subs(EMAIL_SUBS),
    complex("phoneNumbers", "Phone numbers for the User.")
        .multi()
        .subs(PHONE_SUBS),
    complex("ims", "Instant messaging addresses for the User.")
        .multi()
        .subs(IM_SUBS),
    complex("photos", "URLs of photos of the User.")
        .multi()
        .subs(PHOTO_SUBS),
    complex("addresses", "Physical mailing addresses for this User.")
        .multi()
        .subs(ADDRESS_SUBS),
    complex(
        "groups",
        "Groups the user belongs to, maintained by the service provider.",
    )
    .multi()
    .mutab(Mutability::ReadOnly)
    .subs(USER_GROUP_SUBS),
    complex("entitlements", "Entitlements of the User.")
        .multi()
        .subs(ENTITLEMENT_SUBS),
    complex("roles", "Roles of the User.")
        .multi()
        .subs(ROLE_SUBS),
    complex("x509Certificates", "X.509 certificates issued to the User.")
        .multi()
        .subs(X509_SUBS),
];

// ---- enterprise User extension (RFC 7643 §4.3) ----

const MANAGER_SUBS: &[AttrDef] = &[
    string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    reference(
        "$ref",
        "The URI of the SCIM resource representing the User's manager.",
    )
    .refs(&["User"]),
    string("displayName", "The displayName of the User's manager.").mutab(Mutability::ReadOnly),
];

const ENTERPRISE_ATTRS: &[AttrDef] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person by the organization.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex("manager", "The User's manager.").subs(MANAGER_SUBS),
];

// ---- core Group (RFC 7643 §4.2) ----

const MEMBER_SUBS: &[AttrDef] = &[
    // Required here (RFC 7643 lists it optional) because a member without an id cannot be
    // stored or resolved.
    string("value", "Identifier of the member of this Group.")
        .req()
        .mutab(Mutability::Immutable),
    reference("$ref", "The URI of the member resource.")
        .mutab(Mutability::Immutable)
        .refs(&["User", "Group"]),
    string("display", "A human-readable name of the member.").mutab(Mutability::Immutable),
    string("type", "The type of the member.")
        .mutab(Mutability::Immutable)
        .canon(&["User", "Group"]),
];

const GROUP_ATTRS: &[AttrDef] = &[
    // Required here (RFC 7643 lists it optional): both IdPs always send it and every
    // downstream target needs a name for the group.
    string(
        "displayName",
        "A human-readable name for the Group. REQUIRED.",
    )
    .req(),
    complex("members", "A list of members of the Group.")
        .multi()
        .subs(MEMBER_SUBS),
];

pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRS,
};

pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRS,
};

pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRS,
};

static USER_EXTENSIONS: [&SchemaDef; 1] = [&ENTERPRISE_USER];

/// Every schema served at `/Schemas`, in a stable order.
pub fn all_schemas() -> [&'static SchemaDef; 3] {
    [&USER, &ENTERPRISE_USER, &GROUP]
}

/// The core schema of a resource kind.
pub fn core_schema_def(kind: ResourceKind) -> &'static SchemaDef {
    match kind {
        ResourceKind::User => &USER,
        ResourceKind::Group => &GROUP,
    }
}

/// The extension schemas a resource kind supports (for `/ResourceTypes`' `schemaExtensions`).
pub fn extensions(kind: ResourceKind) -> &'static [&'static SchemaDef] {
    match kind {
        ResourceKind::User => &USER_EXTENSIONS,
        ResourceKind::Group => &[],
    }
}

/// The supported schema with this URN (any case).
pub fn schema_by_urn(urn: &str) -> Option<&'static SchemaDef> {
    all_schemas()
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(urn.trim()))
}

/// The extension of `kind` with this URN (any case).
pub fn extension_by_urn(kind: ResourceKind, urn: &str) -> Option<&'static SchemaDef> {
    extensions(kind)
        .iter()
        .copied()
        .find(|s| s.id.eq_ignore_ascii_case(urn.trim()))
}

/// Where an attribute lives in a resource's JSON: at the top level (core and common
/// attributes) or inside the object keyed by an extension's URN.
#[derive(Debug, Clone, Copy)]
pub enum Container {
    Top,
    Extension(&'static SchemaDef),
}

impl Container {
    /// The name under which changes to `attr` are reported (`department` inside the
    /// enterprise extension is `urn:…:enterprise:2.0:User:department`).
    pub fn qualified(self, attr: &str) -> String {
        match self {
            Container::Top => attr.to_string(),
            Container::Extension(ext) => format!("{}:{attr}", ext.id),
        }
    }
}

/// The attribute called `name` (any case) in `attrs`.
pub fn find_attr(attrs: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A top-level attribute of `kind`, given an optional schema URN prefix: the core URN
/// searches the common and core attributes, an extension URN that extension. Without a URN
/// the core attributes come first, then the extensions': Entra sends `"path": "manager"`, and
/// no extension attribute shares a name with a core one.
pub fn lookup(
    kind: ResourceKind,
    urn: Option<&str>,
    name: &str,
) -> Option<(Container, &'static AttrDef)> {
    let core = core_schema_def(kind);
    match urn {
        None => find_core(core, name).or_else(|| {
            extensions(kind).iter().find_map(|ext| {
                find_attr(ext.attributes, name).map(|d| (Container::Extension(ext), d))
            })
        }),
        Some(u) if u.trim().eq_ignore_ascii_case(core.id) => find_core(core, name),
        Some(u) => {
            let ext = extension_by_urn(kind, u)?;
            find_attr(ext.attributes, name).map(|d| (Container::Extension(ext), d))
        }
    }
}

fn find_core(core: &'static SchemaDef, name: &str) -> Option<(Container, &'static AttrDef)> {
    find_attr(COMMON_ATTRIBUTES, name)
        .or_else(|| find_attr(core.attributes, name))
        .map(|d| (Container::Top, d))
}

/// The definition an attribute path refers to (its sub-attribute's, if it names one).
pub fn attr_def(kind: ResourceKind, path: &AttrPath) -> Option<&'static AttrDef> {
    let (_, def) = lookup(kind, path.urn.as_deref(), &path.name)?;
    match &path.sub {
        None => Some(def),
        Some(sub) => def.sub_attr(sub),
    }
}

/// Whether values of this attribute compare case-sensitively; unknown attributes do not.
pub fn case_exact(kind: ResourceKind, path: &AttrPath) -> bool {
    attr_def(kind, path).is_some_and(|d| d.case_exact)
}

/// The object member whose key equals `key` ignoring ASCII case (an exact match wins).
pub fn key_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The RFC 7643 §7 representation of a schema, as served at `/Schemas/<id>`.
pub fn schema_json(def: &SchemaDef, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": def.id,
        "name": def.name,
        "description": def.description,
        "attributes": def.attributes.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base_url.trim_end_matches('/'), def.id),
        },
    })
}

fn attr_json(def: &AttrDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), def.name.into());
    m.insert("type".into(), def.ty.as_str().into());
    m.insert("multiValued".into(), def.multi_valued.into());
    m.insert("description".into(), def.description.into());
    m.insert("required".into(), def.required.into());
    if def.ty != AttrType::Complex {
        m.insert("caseExact".into(), def.case_exact.into());
    }
    if !def.canonical_values.is_empty() {
        m.insert("canonicalValues".into(), def.canonical_values.into());
    }
    if def.ty == AttrType::Reference {
        m.insert("referenceTypes".into(), def.reference_types.into());
    }
    if def.ty == AttrType::Complex {
        let subs: Vec<Value> = def.sub_attributes.iter().map(attr_json).collect();
        m.insert("subAttributes".into(), subs.into());
    }
    m.insert("mutability".into(), def.mutability.as_str().into());
    m.insert("returned".into(), def.returned.as_str().into());
    m.insert("uniqueness".into(), def.uniqueness.as_str().into());
    Value::Object(m)
}

/// How a top-level key of a resource body is to be read.
enum TopKey {
    Schemas,
    Attr(Container, &'static AttrDef),
    Extension(&'static SchemaDef),
    Unknown,
}

fn classify_key(kind: ResourceKind, key: &str) -> TopKey {
    if key.eq_ignore_ascii_case("schemas") {
        return TopKey::Schemas;
    }
    if let Some(ext) = extension_by_urn(kind, key) {
        return TopKey::Extension(ext);
    }
    if let Some((c, d)) = lookup(kind, None, key) {
        return TopKey::Attr(c, d);
    }
    // `urn:…:enterprise:2.0:User:department` or `urn:…:core:2.0:User:userName` as a key.
    let core = core_schema_def(kind);
    for schema in std::iter::once(core).chain(extensions(kind).iter().copied()) {
        if let Some(rest) = strip_urn_prefix(key, schema.id) {
            if let Some((c, d)) = lookup(kind, Some(schema.id), rest) {
                return TopKey::Attr(c, d);
            }
        }
    }
    TopKey::Unknown
}

/// `key` without a leading `<urn>:` (URN compared ignoring case).
pub fn strip_urn_prefix<'k>(key: &'k str, urn: &str) -> Option<&'k str> {
    let head = key.get(..urn.len())?;
    if !head.eq_ignore_ascii_case(urn) || key.as_bytes().get(urn.len()) != Some(&b':') {
        return None;
    }
    key.get(urn.len() + 1..)
}

/// Validate and canonicalise a POST/PUT body (see the module doc for the policy). The result
/// holds `schemas` and the client-settable attributes only; the caller adds `id` and `meta`.
/// For groups, `members` stays in the result (the store splits it out).
pub fn normalize_resource(kind: ResourceKind, input: &Value) -> Result<Value, ScimError> {
    let obj = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a SCIM resource must be a JSON object"))?;
    check_schemas(kind, obj)?;

    let mut top = Map::new();
    let exts = extensions(kind);
    let mut ext_maps: Vec<Map<String, Value>> = exts.iter().map(|_| Map::new()).collect();

    for (key, value) in obj {
        match classify_key(kind, key) {
            TopKey::Schemas | TopKey::Unknown => {}
            TopKey::Attr(container, def) => {
                let Some(map) = container_map(container, exts, &mut top, &mut ext_maps) else {
                    continue;
                };
                put_attr(map, container, def, value)?;
            }
            TopKey::Extension(ext) => {
                let inner = match value {
                    Value::Null => continue,
                    Value::Object(inner) => inner,
                    other => {
                        return Err(ScimError::invalid_value(format!(
                            "{} must be an object holding the extension's attributes, got {}",
                            ext.id,
                            json_kind(other)
                        )))
                    }
                };
                let container = Container::Extension(ext);
                let Some(map) = container_map(container, exts, &mut top, &mut ext_maps) else {
                    continue;
                };
                for (k, v) in inner {
                    if let Some(def) = find_attr(ext.attributes, k) {
                        put_attr(map, container, def, v)?;
                    }
                }
            }
        }
    }

    check_required(kind, &top)?;

    let mut schemas = vec![Value::String(kind.core_schema().to_string())];
    let mut out = top;
    for (ext, map) in exts.iter().zip(ext_maps) {
        if !map.is_empty() {
            schemas.push(Value::String(ext.id.to_string()));
            out.insert(ext.id.to_string(), Value::Object(map));
        }
    }
    out.insert("schemas".into(), Value::Array(schemas));
    Ok(Value::Object(out))
}

fn check_schemas(kind: ResourceKind, obj: &Map<String, Value>) -> Result<(), ScimError> {
    let core = kind.core_schema();
    let listed = match key_ci(obj, "schemas") {
        Some(Value::Array(items)) => items.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case(core))
        }),
        // A lone string is read as a one-element list.
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case(core),
        _ => false,
    };
    if listed {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "`schemas` must be an array that includes \"{core}\""
        )))
    }
}

fn container_map<'m>(
    container: Container,
    exts: &[&'static SchemaDef],
    top: &'m mut Map<String, Value>,
    ext_maps: &'m mut [Map<String, Value>],
) -> Option<&'m mut Map<String, Value>> {
    match container {
        Container::Top => Some(top),
        Container::Extension(ext) => {
            let i = exts.iter().position(|e| e.id == ext.id)?;
            ext_maps.get_mut(i)
        }
    }
}

/// Normalise one attribute into `map` under its canonical name, skipping server-owned ones.
fn put_attr(
    map: &mut Map<String, Value>,
    container: Container,
    def: &'static AttrDef,
    value: &Value,
) -> Result<(), ScimError> {
    if matches!(def.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
        return Ok(());
    }
    if let Some(v) = normalize_attr(def, value, &container.qualified(def.name))? {
        map.insert(def.name.to_string(), v);
    }
    Ok(())
}

fn check_required(kind: ResourceKind, top: &Map<String, Value>) -> Result<(), ScimError> {
    let name = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match top.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
        _ => Err(ScimError::invalid_value(format!(
            "{name} is required and must be a non-empty string"
        ))),
    }
}

/// Normalise a whole attribute value (an array for a multi-valued attribute). `Ok(None)`
/// means unassigned. `label` names the attribute in error messages.
pub fn normalize_attr(
    def: &'static AttrDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Null => return Ok(None),
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(v) = normalize_element(def, item, &format!("{label}[{i}]"))? {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        let primaries = out.iter().filter(|v| is_primary(v)).count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "{label} has {primaries} values with \"primary\": true; at most one is allowed \
                 (RFC 7643 §2.4)"
            )));
        }
        return Ok(Some(Value::Array(out)));
    }
    match value {
        // Entra (before its aadOptscim062020 fix) wraps single values in an array.
        Value::Array(items) => match items.as_slice() {
            [] => Ok(None),
            [one] => normalize_element(def, one, label),
            _ => Err(ScimError::invalid_value(format!(
                "{label} is single-valued but got an array of {} values",
                items.len()
            ))),
        },
        other => normalize_element(def, other, label),
    }
}

/// Whether a multi-valued attribute's element is marked `"primary": true`.
pub fn is_primary(element: &Value) -> bool {
    element.get("primary") == Some(&Value::Bool(true))
}

/// Normalise one value of `def`: the value of a single-valued attribute, or one element of a
/// multi-valued one. `Ok(None)` means unassigned.
pub fn normalize_element(
    def: &'static AttrDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    match def.ty {
        AttrType::Complex => normalize_complex(def, value, label),
        ty => {
            // Entra's older `[{"value": x}]` for a simple attribute reaches here as an object.
            // Unwrapped once only, so nesting depth cannot drive recursion.
            let value = match value {
                Value::Object(obj) if obj.len() == 1 => key_ci(obj, "value").unwrap_or(value),
                _ => value,
            };
            if value.is_null() {
                return Ok(None);
            }
            normalize_scalar(ty, value, label).map(Some)
        }
    }
}

fn normalize_complex(
    def: &'static AttrDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let obj = match value {
        Value::Object(obj) => obj,
        // Entra sets `manager` to a bare id; an empty string is its way of clearing it.
        Value::String(s) if def.sub_attr("value").is_some() => {
            if s.is_empty() {
                return Ok(None);
            }
            let mut m = Map::new();
            m.insert("value".into(), value.clone());
            return finish_complex(def, m, label);
        }
        other => {
            return Err(ScimError::invalid_value(format!(
                "{label} must be a JSON object with the sub-attributes {}, got {}",
                sub_names(def),
                json_kind(other)
            )))
        }
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let Some(sub) = def.sub_attr(k) else {
            continue;
        };
        if sub.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(nv) = normalize_attr(sub, v, &format!("{label}.{}", sub.name))? {
            out.insert(sub.name.to_string(), nv);
        }
    }
    finish_complex(def, out, label)
}

fn finish_complex(
    def: &'static AttrDef,
    out: Map<String, Value>,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    if let Some(missing) = def
        .sub_attributes
        .iter()
        .find(|s| s.required && !out.contains_key(s.name))
    {
        return Err(ScimError::invalid_value(format!(
            "{label}.{} is required",
            missing.name
        )));
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn sub_names(def: &AttrDef) -> String {
    def.sub_attributes
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn normalize_scalar(ty: AttrType, value: &Value, label: &str) -> Result<Value, ScimError> {
    let ok = match (ty, value) {
        (AttrType::Boolean, Value::Bool(_)) => true,
        // Entra sends "True"/"False" in PATCH values.
        (AttrType::Boolean, Value::String(s)) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("true") {
                return Ok(Value::Bool(true));
            }
            if t.eq_ignore_ascii_case("false") {
                return Ok(Value::Bool(false));
            }
            false
        }
        (AttrType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (AttrType::Decimal, Value::Number(_)) => true,
        (
            AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary,
            Value::String(_),
        ) => true,
        _ => false,
    };
    if ok {
        return Ok(value.clone());
    }
    let expected = match ty {
        AttrType::Boolean => "a boolean (true or false)",
        AttrType::Integer => "an integer",
        AttrType::Decimal => "a number",
        AttrType::DateTime => "a dateTime string",
        AttrType::Reference => "a URI string",
        AttrType::Binary => "a base64 string",
        AttrType::String | AttrType::Complex => "a string",
    };
    Err(ScimError::invalid_value(format!(
        "{label} must be {expected}, got {}",
        describe(value)
    )))
}

/// The JSON type of a value, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        other => json_kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(extra: Value) -> Value {
        let mut base = json!({
            "schemas": [USER_SCHEMA],
            "userName": "ann@example.com",
        });
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    }

    fn path(urn: Option<&str>, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: urn.map(str::to_string),
            name: name.to_string(),
            sub: sub.map(str::to_string),
        }
    }

    #[test]
    fn tables_are_consistent() {
        for schema in all_schemas() {
            let mut names: Vec<String> = schema
                .attributes
                .iter()
                .map(|a| a.name.to_ascii_lowercase())
                .collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), schema.attributes.len(), "{}", schema.id);
            for a in schema.attributes {
                assert_eq!(
                    a.ty == AttrType::Complex,
                    !a.sub_attributes.is_empty(),
                    "{}",
                    a.name
                );
                for s in a.sub_attributes {
                    assert!(s.sub_attributes.is_empty(), "{}.{}", a.name, s.name);
                    assert!(!s.multi_valued);
                }
            }
        }
        let full = [
            "userName",
            "name",
            "displayName",
            "nickName",
            "profileUrl",
            "title",
            "userType",
            "preferredLanguage",
            "locale",
            "timezone",
            "active",
            "password",
            "emails",
            "phoneNumbers",
            "ims",
            "photos",
            "addresses",
            "groups",
            "entitlements",
            "roles",
            "x509Certificates",
        ];
        for name in full {
            assert!(find_attr(USER.attributes, name).is_some(), "{name}");
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_urn_aware() {
        let k = ResourceKind::User;
        assert_eq!(
            attr_def(k, &path(None, "USERNAME", None)).map(|d| d.name),
            Some("userName")
        );
        assert_eq!(
            attr_def(k, &path(None, "name", Some("givenname"))).map(|d| d.name),
            Some("givenName")
        );
        assert_eq!(
            attr_def(k, &path(Some(ENTERPRISE_USER_SCHEMA), "Department", None)).map(|d| d.name),
            Some("department")
        );
        assert_eq!(
            attr_def(
                k,
                &path(
                    Some("urn:ietf:params:scim:schemas:extension:ENTERPRISE:2.0:User"),
                    "manager",
                    Some("value")
                )
            )
            .map(|d| d.name),
            Some("value")
        );
        assert_eq!(
            attr_def(k, &path(Some(USER_SCHEMA), "name", Some("familyName"))).map(|d| d.name),
            Some("familyName")
        );
        // Unqualified extension attributes are found after the core ones (Entra's
        // `"path": "manager"`); groups have no extension.
        assert_eq!(
            lookup(k, None, "Manager").map(|(c, d)| (c.qualified(d.name), d.ty)),
            Some((
                format!("{ENTERPRISE_USER_SCHEMA}:manager"),
                AttrType::Complex
            ))
        );
        assert!(attr_def(ResourceKind::Group, &path(None, "department", None)).is_none());
        assert!(attr_def(
            ResourceKind::Group,
            &path(Some(ENTERPRISE_USER_SCHEMA), "department", None)
        )
        .is_none());
        assert!(attr_def(k, &path(Some("urn:x:y"), "userName", None)).is_none());
        assert!(attr_def(k, &path(None, "userName", Some("x"))).is_none());
        assert_eq!(
            attr_def(ResourceKind::Group, &path(None, "members", Some("VALUE"))).map(|d| d.name),
            Some("value")
        );
        assert!(attr_def(ResourceKind::Group, &path(None, "userName", None)).is_none());
    }

    #[test]
    fn case_exactness() {
        let k = ResourceKind::User;
        assert!(case_exact(k, &path(None, "id", None)));
        assert!(case_exact(k, &path(None, "externalId", None)));
        assert!(case_exact(k, &path(None, "meta", Some("version"))));
        assert!(!case_exact(k, &path(None, "userName", None)));
        assert!(!case_exact(k, &path(None, "emails", Some("value"))));
        assert!(!case_exact(k, &path(None, "nonsense", None)));
        assert!(case_exact(ResourceKind::Group, &path(None, "ID", None)));
    }

    #[test]
    fn schema_json_has_rfc_shape() {
        let j = schema_json(&USER, "https://h/scim/v2/");
        assert_eq!(j["id"], USER_SCHEMA);
        assert_eq!(j["name"], "User");
        assert_eq!(j["meta"]["resourceType"], "Schema");
        assert_eq!(
            j["meta"]["location"],
            format!("https://h/scim/v2/Schemas/{USER_SCHEMA}")
        );
        let attrs = j["attributes"].as_array().cloned().unwrap_or_default();
        let user_name = attrs
            .iter()
            .find(|a| a["name"] == "userName")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            user_name,
            json!({
                "name": "userName", "type": "string", "multiValued": false,
                "description": user_name["description"], "required": true, "caseExact": false,
                "mutability": "readWrite", "returned": "default", "uniqueness": "server"
            })
        );
        let password = attrs.iter().find(|a| a["name"] == "password");
        assert_eq!(
            password.map(|p| (p["mutability"].clone(), p["returned"].clone())),
            Some((json!("writeOnly"), json!("never")))
        );
        let emails = attrs.iter().find(|a| a["name"] == "emails");
        let emails = emails.cloned().unwrap_or_default();
        assert_eq!(emails["multiValued"], true);
        assert!(emails.get("caseExact").is_none());
        assert_eq!(
            emails["subAttributes"][2]["canonicalValues"],
            json!(["work", "home", "other"])
        );
        let groups = attrs.iter().find(|a| a["name"] == "groups");
        assert_eq!(
            groups.map(|g| g["mutability"].clone()),
            Some(json!("readOnly"))
        );
        let photos = attrs.iter().find(|a| a["name"] == "photos").cloned();
        assert_eq!(
            photos.map(|p| p["subAttributes"][0]["referenceTypes"].clone()),
            Some(json!(["external"]))
        );

        let e = schema_json(&ENTERPRISE_USER, "https://h");
        assert_eq!(
            e["meta"]["location"],
            format!("https://h/Schemas/{ENTERPRISE_USER_SCHEMA}")
        );
        let manager = e["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "manager").cloned())
            .unwrap_or_default();
        let sub: Vec<&str> = manager["subAttributes"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(sub, ["value", "$ref", "displayName"]);

        let g = schema_json(&GROUP, "https://h");
        let members = g["attributes"][1].clone();
        assert_eq!(members["name"], "members");
        let sub: Vec<&str> = members["subAttributes"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(sub, ["value", "$ref", "display", "type"]);
        assert_eq!(
            all_schemas().map(|s| s.id),
            [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA]
        );
    }

    #[test]
    fn okta_create_user() {
        let body = json!({
            "schemas": [USER_SCHEMA],
            "userName": "ann@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"primary": true, "value": "ann@example.com", "type": "work"}],
            "displayName": "Ann Lee",
            "locale": "en-US",
            "externalId": "00u1",
            "groups": [],
            "password": "hunter2!",
            "active": true
        });
        let out = normalize_resource(ResourceKind::User, &body);
        assert_eq!(
            out,
            Ok(json!({
                "schemas": [USER_SCHEMA],
                "userName": "ann@example.com",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"primary": true, "value": "ann@example.com", "type": "work"}],
                "displayName": "Ann Lee",
                "locale": "en-US",
                "externalId": "00u1",
                "active": true
            }))
        );
    }

    #[test]
    fn entra_create_user_with_enterprise_data() {
        let body = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee@testuser.com",
            "active": "True",
            "emails": [{"primary": "true", "type": "work", "value": "Test_User@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "Department": "Tour Operations",
                "manager": "26118915-6090-4610-87e4-49d8ca9f808d"
            }
        });
        let out = normalize_resource(ResourceKind::User, &body);
        assert_eq!(
            out,
            Ok(json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": "Test_User_ab6490ee@testuser.com",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User@testuser.com"}],
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                ENTERPRISE_USER_SCHEMA: {
                    "employeeNumber": "701984",
                    "department": "Tour Operations",
                    "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
                }
            }))
        );
    }

    #[test]
    fn canonicalises_names_and_drops_server_owned_and_unknown() {
        let body = json!({
            "SCHEMAS": ["URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER"],
            "username": "bob",
            "NAME": {"givenname": "Bob", "nonsense": 1},
            "id": "client-chosen",
            "meta": {"created": "x"},
            "favouriteColour": "blue",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:costcenter": "4130",
            "urn:example:custom:2.0:User": {"badge": "7"},
            "EMAILS": {"VALUE": "bob@example.com", "Type": "home"}
        });
        assert_eq!(
            normalize_resource(ResourceKind::User, &body),
            Ok(json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "bob",
                "name": {"givenName": "Bob"},
                "emails": [{"value": "bob@example.com", "type": "home"}],
                ENTERPRISE_USER_SCHEMA: {"costCenter": "4130"}
            }))
        );
    }

    #[test]
    fn enterprise_urn_listed_iff_data_present() {
        let declared_but_empty = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "a",
            ENTERPRISE_USER_SCHEMA: {"manager": {"displayName": "read only"}, "department": null}
        });
        assert_eq!(
            normalize_resource(ResourceKind::User, &declared_but_empty),
            Ok(json!({"schemas": [USER_SCHEMA], "userName": "a"}))
        );
        let undeclared = user(json!({ENTERPRISE_USER_SCHEMA: {"division": "North"}}));
        assert_eq!(
            normalize_resource(ResourceKind::User, &undeclared).map(|v| v["schemas"].clone()),
            Ok(json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]))
        );
    }

    #[test]
    fn nulls_and_empties_are_unassigned() {
        let body = user(json!({
            "displayName": null,
            "emails": [],
            "phoneNumbers": [null, {}],
            "name": {"givenName": null},
            "nickName": "",
        }));
        assert_eq!(
            normalize_resource(ResourceKind::User, &body),
            Ok(json!({"schemas": [USER_SCHEMA], "userName": "ann@example.com", "nickName": ""}))
        );
    }

    #[test]
    fn schemas_errors() {
        let cases = [
            json!({"userName": "a"}),
            json!({"schemas": [], "userName": "a"}),
            json!({"schemas": [GROUP_SCHEMA], "userName": "a"}),
            json!({"schemas": "nonsense", "userName": "a"}),
            json!({"schemas": [1, 2], "userName": "a"}),
            json!("not an object"),
            json!([{"schemas": [USER_SCHEMA]}]),
        ];
        for body in cases {
            let err = normalize_resource(ResourceKind::User, &body).err();
            assert_eq!(
                err.map(|e| e.scim_type),
                Some(Some(super::super::ScimType::InvalidSyntax)),
                "{body}"
            );
        }
        // A lone string is accepted.
        assert!(normalize_resource(
            ResourceKind::User,
            &json!({"schemas": USER_SCHEMA, "userName": "a"})
        )
        .is_ok());
    }

    fn invalid_value(kind: ResourceKind, body: Value, needle: &str) {
        match normalize_resource(kind, &body) {
            Err(e) => {
                assert_eq!(e.status, 400);
                assert_eq!(
                    e.scim_type,
                    Some(super::super::ScimType::InvalidValue),
                    "{e:?}"
                );
                assert!(e.detail.contains(needle), "{:?} lacks {needle:?}", e.detail);
            }
            Ok(v) => panic!("accepted {body} as {v}"),
        }
    }

    #[test]
    fn type_errors_name_the_attribute() {
        let k = ResourceKind::User;
        invalid_value(
            k,
            user(json!({"active": "maybe"})),
            "active must be a boolean",
        );
        invalid_value(k, user(json!({"active": 1})), "active");
        invalid_value(
            k,
            user(json!({"displayName": 42})),
            "displayName must be a string",
        );
        invalid_value(
            k,
            user(json!({"name": "Ann"})),
            "name must be a JSON object",
        );
        invalid_value(
            k,
            user(json!({"emails": [{"value": 7}]})),
            "emails[0].value",
        );
        invalid_value(
            k,
            user(json!({"emails": [{"value": "a", "primary": "yes"}]})),
            "emails[0].primary",
        );
        invalid_value(
            k,
            user(json!({"displayName": ["a", "b"]})),
            "displayName is single-valued",
        );
        invalid_value(
            k,
            user(json!({ENTERPRISE_USER_SCHEMA: {"department": false}})),
            "enterprise:2.0:User:department",
        );
        invalid_value(
            k,
            user(json!({ENTERPRISE_USER_SCHEMA: "Ops"})),
            ENTERPRISE_USER_SCHEMA,
        );
        invalid_value(k, user(json!({"externalId": 5})), "externalId");
    }

    #[test]
    fn required_attributes() {
        let k = ResourceKind::User;
        invalid_value(k, json!({"schemas": [USER_SCHEMA]}), "userName is required");
        invalid_value(
            k,
            json!({"schemas": [USER_SCHEMA], "userName": "  "}),
            "userName",
        );
        invalid_value(
            k,
            json!({"schemas": [USER_SCHEMA], "userName": null}),
            "userName",
        );
        let g = ResourceKind::Group;
        invalid_value(
            g,
            json!({"schemas": [GROUP_SCHEMA]}),
            "displayName is required",
        );
        invalid_value(
            g,
            json!({"schemas": [GROUP_SCHEMA], "displayName": ""}),
            "displayName",
        );
    }

    #[test]
    fn at_most_one_primary() {
        let body = user(json!({"emails": [
            {"value": "a@x", "primary": true},
            {"value": "b@x", "primary": "True"}
        ]}));
        invalid_value(ResourceKind::User, body, "at most one");
        let ok = user(json!({"emails": [
            {"value": "a@x", "primary": true},
            {"value": "b@x", "primary": false}
        ]}));
        assert!(normalize_resource(ResourceKind::User, &ok).is_ok());
    }

    #[test]
    fn entra_group_with_unknown_extension() {
        let body = json!({
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Group1",
            "meta": {"resourceType": "Group"},
            "members": [],
            "schemas": [
                GROUP_SCHEMA,
                "urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
            ],
            "urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group": {"objectId": "x"}
        });
        assert_eq!(
            normalize_resource(ResourceKind::Group, &body),
            Ok(json!({
                "schemas": [GROUP_SCHEMA],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Group1"
            }))
        );
    }

    #[test]
    fn group_members() {
        let body = json!({
            "schemas": [GROUP_SCHEMA],
            "displayName": "Ops",
            "members": [
                {"value": "u1", "$ref": null, "display": "Ann"},
                {"VALUE": "u2", "type": "User"},
                "u3"
            ]
        });
        assert_eq!(
            normalize_resource(ResourceKind::Group, &body).map(|v| v["members"].clone()),
            Ok(json!([
                {"value": "u1", "display": "Ann"},
                {"value": "u2", "type": "User"},
                {"value": "u3"}
            ]))
        );
        let g = ResourceKind::Group;
        let bad = |m: Value| json!({"schemas": [GROUP_SCHEMA], "displayName": "x", "members": m});
        invalid_value(
            g,
            bad(json!([{"display": "no id"}])),
            "members[0].value is required",
        );
        invalid_value(g, bad(json!([{"value": 12}])), "members[0].value");
        invalid_value(g, bad(json!([true])), "members[0]");
    }

    #[test]
    fn normalisation_is_idempotent() {
        let body = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "x",
            "addresses": {"type": "work", "formatted": "1 Main St"},
            "active": "false",
            ENTERPRISE_USER_SCHEMA: {"manager": {"value": "m", "displayName": "M"}}
        });
        let once = normalize_resource(ResourceKind::User, &body);
        let twice = once
            .clone()
            .and_then(|v| normalize_resource(ResourceKind::User, &v));
        assert!(once.is_ok());
        assert_eq!(once, twice);
    }

    #[test]
    fn single_value_wrappers_unwrap_once() {
        let body = user(json!({"title": [{"value": "Guide"}], "nickName": {"Value": null}}));
        assert_eq!(
            normalize_resource(ResourceKind::User, &body),
            Ok(json!({"schemas": [USER_SCHEMA], "userName": "ann@example.com", "title": "Guide"}))
        );
        invalid_value(
            ResourceKind::User,
            user(json!({"title": {"value": {"value": "x"}}})),
            "title must be a string",
        );
    }

    #[test]
    fn urn_prefix_stripping_is_boundary_safe() {
        assert_eq!(strip_urn_prefix("urn:a:b:c", "urn:a:b"), Some("c"));
        assert_eq!(strip_urn_prefix("URN:A:B:c", "urn:a:b"), Some("c"));
        assert_eq!(strip_urn_prefix("urn:a:bc", "urn:a:b"), None);
        assert_eq!(strip_urn_prefix("urn:a", "urn:a:b"), None);
        assert_eq!(strip_urn_prefix("ürn:a:b:c", "urn:a:b"), None);
    }
}
