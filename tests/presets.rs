//! The built-in vendor presets (`connectors/*.toml`), loaded the way an operator uses them:
//! a config with one `[[connectors]]` naming the preset, through `Config::load`, then the
//! resolved mapping applied to a realistic user as Entra ID provisions it to scim-relay.
//! Each test asserts what the vendor's document says the preset sends (see the comments
//! in each preset file for the source).

use std::collections::{BTreeMap, BTreeSet};

use scim_relay::config::{
    Config, ConfigError, ConnectorConfig, ConnectorKind, Deprovision, PRESETS,
};
use scim_relay::connector::mapping::{Expr, Mapping};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const TENANT_URL: &str = "https://tenant.example.com/scim/v2";

/// Presets that take the vendor's per-customer tenant URL from the connector.
const TENANT_URL_PRESETS: &[&str] = &["brellium", "bifrost"];
/// Presets with `[environments]` rather than one URL.
const ENVIRONMENT_PRESETS: &[&str] = &["andmoney-advisors", "andmoney-rooms"];

/// Writes `config.toml` (plus the token file it names) into a fresh folder and loads it.
/// `connector` is the body of the one `[[connectors]]` table; it may end in sub-tables.
fn load(connector: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vendor.token"), "vendor-token-0123456789").expect("token");
    let text = format!(
        "[storage]\npath = \"db/test.db\"\n\n[[connectors]]\ntoken_file = \"vendor.token\"\n{connector}\n"
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("config");
    let config = Config::load(&path);
    (dir, config)
}

/// The connector table an operator would write for `preset`.
fn connector_for(preset: &str) -> String {
    let mut out = format!("name = \"{preset}-test\"\npreset = \"{preset}\"\n");
    if ENVIRONMENT_PRESETS.contains(&preset) {
        out.push_str("environment = \"test\"\n");
    }
    if TENANT_URL_PRESETS.contains(&preset) {
        out.push_str(&format!("url = \"{TENANT_URL}\"\n"));
    }
    out
}

fn load_preset(preset: &str) -> ConnectorConfig {
    let (_dir, config) = load(&connector_for(preset));
    let config = config.unwrap_or_else(|e| panic!("preset {preset}: config does not load: {e}"));
    assert_eq!(config.connectors.len(), 1);
    config.connectors[0].clone()
}

/// The connector's mapping, built the way the SCIM connector builds it.
fn mapping_of(c: &ConnectorConfig) -> Mapping {
    let targets: BTreeMap<String, Expr> = c
        .scim
        .mapping
        .iter()
        .map(|(target, value)| {
            let expr = value
                .clone()
                .try_into::<Expr>()
                .unwrap_or_else(|e| panic!("{}: mapping.{target}: {e}", c.name));
            (target.clone(), expr)
        })
        .collect();
    Mapping::new(&targets, &c.scim.allowed_values)
        .unwrap_or_else(|e| panic!("{}: mapping is invalid: {e}", c.name))
}

/// A user as Entra ID provisions it to scim-relay (its default attribute mappings plus the
/// enterprise extension, manager and group memberships), rendered the way the gateway
/// renders a stored user: every attribute a preset might pick from, and many none should.
fn entra_user() -> Value {
    json!({
        "schemas": [CORE, ENTERPRISE],
        "id": "5f0b7a52-8a8e-4b7b-9d0e-1c3c1f3f2a10",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "ann.lee@contoso.com",
        "active": true,
        "displayName": "Ann Lee",
        "nickName": "ann",
        "title": "Senior Advisor",
        "userType": "Manager",
        "preferredLanguage": "da-DK",
        "locale": "da-DK",
        "timezone": "Europe/Copenhagen",
        "name": {
            "formatted": "Ann Lee",
            "givenName": "Ann",
            "familyName": "Lee"
        },
        "emails": [
            {"type": "work", "value": "ann@contoso.com", "primary": true},
            {"type": "home", "value": "ann.lee@example.net"}
        ],
        "addresses": [
            {
                "type": "work",
                "formatted": "Copenhagen HQ, 3rd floor",
                "streetAddress": "Havnegade 1",
                "locality": "Copenhagen",
                "postalCode": "1058",
                "country": "DK",
                "primary": true
            }
        ],
        "phoneNumbers": [
            {"type": "work", "value": "+45 33 00 00 00"},
            {"type": "mobile", "value": "+45 20 00 00 00"}
        ],
        ENTERPRISE: {
            "employeeNumber": "E-1042",
            "costCenter": "CC-310",
            "organization": "Contoso A/S",
            "division": "Retail Banking",
            "department": "Advisory",
            "manager": {
                "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                "displayName": "Bo Berg"
            }
        },
        "groups": [
            {
                "value": "9c1d5c3e-4b8f-4f3b-8c51-0d1f7b2d6a11",
                "$ref": "/Groups/9c1d5c3e-4b8f-4f3b-8c51-0d1f7b2d6a11",
                "display": "Advisors",
                "type": "direct"
            }
        ],
        "meta": {
            "resourceType": "User",
            "created": "2026-11-02T09:00:00Z",
            "lastModified": "2026-11-02T09:05:00Z",
            "version": "W/\"3\""
        }
    })
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What each preset sends for `entra_user()`: top-level attributes, and enterprise ones.
fn expected(preset: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    match preset {
        "andmoney-advisors" => (
            set(&[
                "schemas",
                "active",
                "userName",
                "displayName",
                "name",
                "addresses",
                "externalId",
            ]),
            set(&[]),
        ),
        "andmoney-rooms" => (
            set(&[
                "schemas",
                "active",
                "userName",
                "displayName",
                "addresses",
                "externalId",
            ]),
            set(&[]),
        ),
        "brellium" => (
            set(&[
                "schemas",
                "userName",
                "emails",
                "name",
                "active",
                "title",
                "userType",
                "timezone",
                "externalId",
                ENTERPRISE,
            ]),
            set(&[
                "employeeNumber",
                "department",
                "division",
                "organization",
                "manager",
            ]),
        ),
        "bruno" => (
            set(&[
                "schemas",
                "userName",
                "active",
                "displayName",
                "emails",
                "name",
            ]),
            set(&[]),
        ),
        "bifrost" => (
            set(&[
                "schemas",
                "userName",
                "active",
                "displayName",
                "name",
                "emails",
                ENTERPRISE,
            ]),
            set(&["employeeNumber", "department", "costCenter"]),
        ),
        other => panic!("preset {other:?} has no expectations in tests/presets.rs: add them"),
    }
}

#[test]
fn every_preset_loads_and_sends_exactly_its_documented_attributes() {
    assert_eq!(
        PRESETS.iter().map(|(n, _)| *n).collect::<BTreeSet<_>>(),
        set(&[
            "andmoney-advisors",
            "andmoney-rooms",
            "brellium",
            "bruno",
            "bifrost"
        ])
        .iter()
        .map(String::as_str)
        .collect(),
        "the built-in presets changed; update tests/presets.rs"
    );
    let user = entra_user();
    for (preset, _) in PRESETS {
        let c = load_preset(preset);
        assert_eq!(c.kind, ConnectorKind::Scim, "{preset}");
        assert_eq!(c.preset.as_deref(), Some(*preset));
        let description = c.description.as_deref().unwrap_or("");
        assert!(
            !description.is_empty() && !description.contains('\n'),
            "{preset}: a one-line description"
        );
        let doc = mapping_of(&c)
            .apply(&user)
            .unwrap_or_else(|e| panic!("{preset}: mapping fails: {e}"));
        let (top, enterprise) = expected(preset);
        assert_eq!(keys(&doc), top, "{preset}: top-level attributes sent");
        assert_eq!(
            keys(doc.get(ENTERPRISE).unwrap_or(&Value::Null)),
            enterprise,
            "{preset}: enterprise extension attributes sent"
        );
        let mut schemas = vec![json!(CORE)];
        if !enterprise.is_empty() {
            schemas.push(json!(ENTERPRISE));
        }
        assert_eq!(doc["schemas"], Value::Array(schemas), "{preset}: schemas");
        // Every preset manages `active`, and the user's own value goes out.
        assert_eq!(doc["active"], json!(true), "{preset}");
        assert_eq!(doc["userName"], json!("ann.lee@contoso.com"), "{preset}");
        // Nobody receives the gateway's own id, meta, groups or a password.
        for never in ["id", "meta", "groups", "password"] {
            assert!(doc.get(never).is_none(), "{preset} must not send {never}");
        }
    }
}

#[test]
fn presets_resolve_their_documented_endpoints() {
    for (preset, _) in PRESETS {
        let c = load_preset(preset);
        let want = match *preset {
            "andmoney-advisors" => "https://api.test-env.booking.andmoney.dk/advisors/scim",
            "andmoney-rooms" => "https://api.test-env.booking.andmoney.dk/rooms/scim",
            "bruno" => "https://license.usebruno.com/scim/v2",
            "brellium" | "bifrost" => TENANT_URL,
            other => panic!("no expected URL for preset {other:?}"),
        };
        assert_eq!(c.url, want, "{preset}");
    }
    for (preset, path) in [
        ("andmoney-advisors", "advisors"),
        ("andmoney-rooms", "rooms"),
    ] {
        let (_dir, config) = load(&format!(
            "name = \"p\"\npreset = \"{preset}\"\nenvironment = \"production\""
        ));
        let config = config.expect("production environment loads");
        assert_eq!(
            config.connectors[0].url,
            format!("https://api.booking.andmoney.dk/{path}/scim")
        );
        // Neither environment is a default: the operator must choose one.
        let (_dir, config) = load(&format!("name = \"p\"\npreset = \"{preset}\""));
        let err = config.expect_err("no environment chosen").to_string();
        assert!(err.contains("environment"), "{err}");
        assert!(err.contains("production") && err.contains("test"), "{err}");
        // A connector's own url still wins over the preset's environments.
        let (_dir, config) = load(&format!(
            "name = \"p\"\npreset = \"{preset}\"\nurl = \"https://mock.example.com/scim\""
        ));
        assert_eq!(
            config.expect("url override loads").connectors[0].url,
            "https://mock.example.com/scim"
        );
    }
}

#[test]
fn tenant_url_presets_need_the_connector_to_set_url() {
    for preset in TENANT_URL_PRESETS {
        let (_dir, config) = load(&format!("name = \"t\"\npreset = \"{preset}\""));
        let err = config.expect_err("a tenant-URL preset without url must not load");
        let text = err.to_string();
        assert!(
            matches!(&err, ConfigError::Value { key, .. } if key == "connectors[0].url"),
            "{preset}: {text}"
        );
        assert!(text.contains("url"), "{preset}: {text}");
    }
}

#[test]
fn lifecycle_settings_follow_the_vendor_documents() {
    let expect = |preset: &str, deprovision, on_delete, groups| {
        let c = load_preset(preset);
        assert_eq!(c.scim.deprovision, deprovision, "{preset}: deprovision");
        assert_eq!(c.scim.on_delete, on_delete, "{preset}: on_delete");
        assert_eq!(c.scim.groups, groups, "{preset}: groups");
    };
    use Deprovision::{Deactivate, Delete};
    // &Money and Bruno: unassigning deactivates (Switch([IsSoftDeleted], …)); Entra deletes
    // hard-deleted users, and Bruno enables Delete among its Target Object Actions.
    expect("andmoney-advisors", Deactivate, Delete, false);
    expect("andmoney-rooms", Deactivate, Delete, false);
    expect("bruno", Deactivate, Delete, false);
    // Brellium documents deactivation only (no delete among its supported features).
    expect("brellium", Deactivate, Deactivate, false);
    // Bifrost provisions users and groups.
    expect("bifrost", Deactivate, Delete, true);
}

#[test]
fn bruno_sends_exactly_its_six_attributes_with_the_upn_as_work_email() {
    let c = load_preset("bruno");
    let doc = mapping_of(&c).apply(&entra_user()).expect("maps");
    assert_eq!(
        doc,
        json!({
            "schemas": [CORE],
            "userName": "ann.lee@contoso.com",
            "active": true,
            "displayName": "Ann Lee",
            // Bruno: emails[type eq "work"].value "must also map to userPrincipalName".
            "emails": [{"type": "work", "value": "ann.lee@contoso.com"}],
            "name": {"givenName": "Ann", "familyName": "Lee"}
        })
    );
}

#[test]
fn andmoney_advisors_get_a_name_and_rooms_do_not() {
    let user = entra_user();
    let advisors = mapping_of(&load_preset("andmoney-advisors"))
        .apply(&user)
        .expect("maps");
    assert_eq!(
        advisors,
        json!({
            "schemas": [CORE],
            "active": true,
            "userName": "ann.lee@contoso.com",
            "displayName": "Ann Lee",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "addresses": [{"type": "work", "formatted": "Copenhagen HQ, 3rd floor"}],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
        })
    );
    let rooms = mapping_of(&load_preset("andmoney-rooms"))
        .apply(&user)
        .expect("maps");
    assert!(rooms.get("name").is_none(), "{rooms}");
    let mut without_name = advisors.clone();
    without_name.as_object_mut().unwrap().remove("name");
    assert_eq!(rooms, without_name);
}

#[test]
fn brellium_sends_its_attributes_and_accepts_only_its_user_types() {
    let c = load_preset("brellium");
    let mapping = mapping_of(&c);
    let mut user = entra_user();
    let doc = mapping
        .apply(&user)
        .expect("Manager is a valid Brellium userType");
    assert_eq!(doc["userType"], json!("manager"));
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "primary": true, "value": "ann@contoso.com"}])
    );
    assert_eq!(
        doc["name"],
        json!({"givenName": "Ann", "familyName": "Lee"})
    );
    assert_eq!(doc["title"], json!("Senior Advisor"));
    assert_eq!(doc["timezone"], json!("Europe/Copenhagen"));
    assert_eq!(
        doc[ENTERPRISE],
        json!({
            "employeeNumber": "E-1042",
            "department": "Advisory",
            "division": "Retail Banking",
            "organization": "Contoso A/S",
            // The gateway's id of the manager, unchanged (see connectors/brellium.toml).
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        })
    );

    for (given, sent) in [("employee", "employee"), ("OPERATIONS", "operations")] {
        user["userType"] = json!(given);
        assert_eq!(mapping.apply(&user).expect(given)["userType"], json!(sent));
    }

    user["userType"] = json!("Contractor");
    let err = mapping
        .apply(&user)
        .expect_err("Contractor is not a Brellium userType")
        .to_string();
    assert!(err.contains("userType"), "{err}");
    assert!(err.contains("contractor"), "{err}");
    assert!(err.contains("employee, operations, manager"), "{err}");

    // No userType at all: nothing to check, and none is invented.
    user.as_object_mut().unwrap().remove("userType");
    let doc = mapping.apply(&user).expect("maps");
    assert!(doc.get("userType").is_none(), "{doc}");
}

#[test]
fn a_connector_overrides_preset_mappings_key_by_key() {
    let (_dir, config) = load(&format!(
        "name = \"brellium\"\npreset = \"brellium\"\nurl = \"{TENANT_URL}\"\n\
         [connectors.mapping]\n\
         \"{ENTERPRISE}:manager.value\" = {{ literal = \"\" }}\n\
         userType = {{ literal = \"employee\" }}\n"
    ));
    let c = config.expect("loads").connectors[0].clone();
    let doc = mapping_of(&c).apply(&entra_user()).expect("maps");
    assert_eq!(doc["userType"], json!("employee"));
    assert!(doc[ENTERPRISE].get("manager").is_none(), "{doc}");
    // The rest of the preset's mapping is still there.
    assert_eq!(doc[ENTERPRISE]["department"], json!("Advisory"));
    assert_eq!(doc["title"], json!("Senior Advisor"));
}
