//! A real third-party SCIM 2.0 service provider for the integration tests: `scim2-server`
//! (PyPI, python-scim), pinned, installed on demand into a venv under the cargo target dir,
//! run on a free loopback port with a random bearer token.
//!
//! ```ignore
//! let mut target = Scim2Server::start();      // data survives stop()/restart()
//! // point a connector at target.base_url with target.token ...
//! target.stop();                              // the target is down (killed)
//! target.restart();                           // same port, same token, same data
//! let users = target.users().await;
//! ```
//!
//! `start*`, `stop` and `restart` are blocking (a start takes ~0.5 s, bounded by 30 s);
//! calling them from a `#[tokio::test]` is fine, but on a current-thread runtime the tasks
//! of that runtime (e.g. a relay server spawned in the test) pause meanwhile. The HTTP
//! helpers are async (reqwest, no proxy, 15 s per request) and panic on transport errors.
//! The server's output is in [`Scim2Server::log_path`]; its last lines are printed when a
//! test panics.
//!
//! # Storage and restarts
//!
//! `scim2-server` 0.8.3 keeps its resources **in memory only** (`InMemoryStorage`; its help
//! says "Serve SCIM resources from memory"). It has no option to load resources at start:
//! `--dump-resources FILE` only writes them out when the server stops on Ctrl-C. So the
//! unmodified command loses every user and group on a restart, and
//! [`Scim2Server::start_in_memory`] behaves that way.
//!
//! [`Scim2Server::start`] (the default) runs the same command through a small launcher
//! ([`LAUNCHER_PY`]): it calls the package's own `scim2_server.testserver.cli.main()` (same
//! options, WSGI application, service and storage logic), with the storage subclassed so that
//! every create/update/delete is appended as a JSON line to a journal file *before* the
//! response is sent, and the journal is replayed at start. Ids, `meta` (created,
//! lastModified, version) and uniqueness survive a kill (`stop`, SIGKILL) and a `restart`,
//! like on a real service provider; ETag versions keep increasing across restarts. The
//! launcher also exits when its parent (the test binary) dies, so an aborted test leaves no
//! server behind.
//!
//! # What scim2-server 0.8.3 accepts (checked by tests/scim2_harness.rs against a real instance)
//!
//! Discovery and auth:
//! - `GET /ServiceProviderConfig`: patch, bulk (maxOperations 1000), filter (maxResults
//!   1000), sort, etag, changePassword all supported; authenticationSchemes lists the bearer
//!   token scheme. Without the token, or with a wrong one: `401`.
//! - Resource types: only `User` (endpoint `/Users`, with the enterprise extension
//!   `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`, required false) and
//!   `Group` (`/Groups`). Schemas: exactly core User, core Group and the enterprise User
//!   extension. Other schemas/resource types only through `--schema FILE` /
//!   `--resource-type FILE` (each *replaces* the default list, so the file must also hold
//!   the defaults): see [`Scim2Options::with_user_extension`].
//!
//! Writes:
//! - `POST /Users` → `201` with the resource. `schemas` is NOT required (a body of just
//!   `{"userName":"x"}` is accepted, `schemas` is filled in); `userName` is required (`400`
//!   invalidValue). An enterprise-extension object in the body is accepted, with or
//!   without its URN in `schemas`. Core attributes incl. `name`, `emails`, `addresses`,
//!   `externalId`, `active`, `title` are stored. An attribute or extension the schemas do not
//!   declare is REJECTED: `400` invalidSyntax "Extra inputs are not permitted: …".
//! - Duplicate `userName` → `409` scimType `uniqueness`, case-insensitively (`ALICE` clashes
//!   with `alice`), on POST, PUT and PATCH alike. `Group.displayName` is NOT unique.
//! - Content-Type `application/scim+json` or `application/json` accepted; `text/plain` → `415`.
//! - `PATCH` (with or without the PatchOp `schemas`) → `204 No Content`, empty body
//!   (`200` with the resource only when `?attributes=` is given).
//!   Works: `replace` with top-level paths (`active`, `emails` with a whole list,
//!   `displayName`, `title`), sub-attribute paths (`name.familyName`), extension attribute
//!   paths (`urn:…:enterprise:2.0:User:department`, which also adds the extension URN to
//!   `schemas`), `replace` without a path (object of attributes), `add` to multi-valued
//!   (`emails`, Group `members`), `remove` of top-level attributes (`addresses`,
//!   `displayName`), of extension attributes, of the whole extension (path = extension
//!   URN), and with value filters (`emails[type eq "home"]`, `members[value eq "…"]`).
//!   The op name is case-insensitive (`Replace`). `remove` of an attribute that is not
//!   set → `204`. Unknown path → `400` invalidPath;
//!   read-only (`id`) → `400` mutability; unknown id → `404`. A PATCH whose later
//!   operation fails changes nothing.
//! - `PUT /Users/{id}` → `200` with the resource; it replaces the whole resource (attributes
//!   left out are dropped); `schemas` not required; `id` in the body ignored; unknown id →
//!   `404`; no `userName` → `400`.
//! - `DELETE /Users/{id}` → `204`; again → `404`.
//! - `If-Match` with a stale version → `412`.
//!
//! Reads:
//! - `filter=userName eq "x"` works and matches case-insensitively (userName is
//!   caseExact=false); `externalId eq` is case-exact; `emails[value eq "…"]`,
//!   `emails.value eq`, `sw`, `or` work; unknown attribute or bad syntax → `400`
//!   invalidFilter.
//! - Paging with `startIndex`/`count` (1-based; `startIndex=0` is read as 1).
//!
//! Groups:
//! - `members` values are NOT checked (a member id that does not exist is stored), deleting a
//!   user does NOT remove it from groups, and users carry no `groups` attribute.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

// By path, because tests/scim2_harness.rs includes this file without the rest of `common`;
// the rest of `common` reaches it as `common::logs`.
#[path = "logs.rs"]
pub mod logs;

/// The scim2-server version the tests run against.
pub const SCIM2_SERVER_VERSION: &str = "0.8.3";

/// What goes into the venv: scim2-server and its whole dependency set, pinned, so every
/// machine runs the same server.
const PINNED: &[&str] = &[
    "scim2-server==0.8.3",
    "scim2-models==0.12.3",
    "pydantic==2.14.3",
    "pydantic-core==2.50.4",
    "annotated-types==0.8.0",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
    "email-validator==2.4.0",
    "dnspython==2.9.2",
    "idna==3.20",
    "lark==1.3.1",
];

/// How long one installation (venv + pip) may take, and how long to wait for another
/// process that is installing.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a server may take to answer its first `GET /ServiceProviderConfig`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout of the helpers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

// ---------------------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------------------

/// The venv the harness installs scim2-server into.
pub fn scim2_venv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scim2-venv")
}

fn venv_bin(venv: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    }
}

/// The Python interpreter of the venv (scim2-server's dependencies are importable from it).
pub fn scim2_python() -> PathBuf {
    scim2_server_bin();
    venv_bin(&scim2_venv_dir(), "python")
}

/// Ensures the venv with the pinned scim2-server exists (creating it on first use, with
/// `python3 -m venv` and pip) and returns the path of its `scim2-server` executable.
///
/// Safe to call from many threads (a process-wide `OnceLock`) and many test binaries at once
/// (a lock file next to the venv). Panics with pip's output if the installation fails.
pub fn scim2_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(install).clone()
}

fn install() -> PathBuf {
    let venv = scim2_venv_dir();
    let bin = venv_bin(&venv, "scim2-server");
    // The marker is written last: a venv without it (an interrupted install) is redone.
    let marker = venv.join(".scim-relay-pins");
    let wanted = PINNED.join("\n");
    let ready = || bin.is_file() && fs::read_to_string(&marker).ok().as_deref() == Some(&wanted);
    if ready() {
        return bin;
    }
    fs::create_dir_all(venv.parent().expect("venv parent")).expect("create the cargo tmp dir");
    let _lock = FileLock::acquire(&venv.with_extension("lock"), INSTALL_TIMEOUT);
    if ready() {
        return bin;
    }

    let started = Instant::now();
    if venv.exists() {
        fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("cannot remove the stale venv {}: {e}", venv.display()));
    }
    let python = std::env::var_os("SCIM2_PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let logs = venv.with_extension("install-log");
    fs::create_dir_all(&logs).expect("install log dir");
    run_bounded(
        Command::new(&python).arg("-m").arg("venv").arg(&venv),
        &logs,
        "venv",
        &format!(
            "`{} -m venv {}` (scim2-server needs Python >= 3.11 with the venv module; \
             set SCIM2_PYTHON to use another interpreter)",
            python.to_string_lossy(),
            venv.display()
        ),
    );
    run_bounded(
        Command::new(venv_bin(&venv, "python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PINNED)
            .env("PIP_NO_INPUT", "1"),
        &logs,
        "pip",
        &format!("pip install {}", PINNED.join(" ")),
    );
    if !bin.is_file() {
        panic!(
            "pip installed scim2-server but {} does not exist",
            bin.display()
        );
    }
    fs::write(&marker, &wanted).expect("write the venv marker");
    eprintln!(
        "scim2 harness: installed scim2-server {SCIM2_SERVER_VERSION} into {} in {:.1?}",
        venv.display(),
        started.elapsed()
    );
    bin
}

/// Runs an installation step with its output in files under `logs`, killed after
/// [`INSTALL_TIMEOUT`]; panics with its output if it fails.
fn run_bounded(cmd: &mut Command, logs: &Path, name: &str, what: &str) {
    let out_path = logs.join(format!("{name}.stdout"));
    let err_path = logs.join(format!("{name}.stderr"));
    let out = fs::File::create(&out_path).expect("install stdout file");
    let err = fs::File::create(&err_path).expect("install stderr file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("PIP_USER")
        .env_remove("PIP_TARGET")
        .env_remove("PIP_PREFIX");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the install step") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {INSTALL_TIMEOUT:?}\nstderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(100));
    };
    if !status.success() {
        panic!(
            "{what} failed ({status})\nstderr:\n{}\nstdout:\n{}",
            fs::read_to_string(&err_path).unwrap_or_default(),
            fs::read_to_string(&out_path).unwrap_or_default()
        );
    }
}

/// A lock file shared by processes: created atomically (a hard link of a file holding our
/// pid, which fails if the lock exists), removed on drop. A lock whose holder process is
/// gone, or older than twice the install timeout, is broken.
struct FileLock {
    path: PathBuf,
}

impl FileLock {
    fn acquire(path: &Path, wait: Duration) -> FileLock {
        let me = std::process::id();
        let deadline = Instant::now() + wait;
        let candidate = path.with_extension(format!("lock.{me}.{}", unique()));
        fs::write(&candidate, format!("{me}\n")).expect("write the lock candidate");
        loop {
            match fs::hard_link(&candidate, path) {
                Ok(()) => {
                    let _ = fs::remove_file(&candidate);
                    return FileLock {
                        path: path.to_path_buf(),
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let _ = fs::remove_file(&candidate);
                    panic!("cannot create the lock {}: {e}", path.display());
                }
            }
            if let Some(holder) = Self::stale_holder(path) {
                Self::break_stale(path, &holder);
                continue;
            }
            if Instant::now() > deadline {
                let _ = fs::remove_file(&candidate);
                panic!(
                    "waited {wait:?} for {} (another test process installing scim2-server); \
                     remove it if no such process runs",
                    path.display()
                );
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// The content of the lock if its holder is gone (or the lock is very old).
    fn stale_holder(path: &Path) -> Option<String> {
        let content = fs::read_to_string(path).ok()?;
        let dead = match content.trim().parse::<u32>() {
            Ok(pid) => cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        };
        let age = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        (dead || age > 2 * INSTALL_TIMEOUT).then_some(content)
    }

    /// Removes a stale lock, unless another process replaced it meanwhile: the lock is moved
    /// aside atomically and put back if it is not the stale one.
    fn break_stale(path: &Path, stale: &str) {
        let aside = path.with_extension(format!("lock.stale.{}.{}", std::process::id(), unique()));
        if fs::rename(path, &aside).is_err() {
            return;
        }
        if fs::read_to_string(&aside).ok().as_deref() != Some(stale) {
            // Someone else's live lock: restore it (fails harmlessly if a new one exists).
            let _ = fs::hard_link(&aside, path);
        }
        let _ = fs::remove_file(&aside);
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

// ---------------------------------------------------------------------------------------
// The launcher
// ---------------------------------------------------------------------------------------

/// Runs `scim2_server.testserver.cli.main()` (the `scim2-server` command itself), adding a
/// journal of the writes when `SCIM2_HARNESS_STATE` names a file, and exiting when the
/// parent process is gone. See the module docs.
pub const LAUNCHER_PY: &str = r#""""scim2-server's own command, for scim-relay's tests (tests/common/scim2.rs).

When SCIM2_HARNESS_STATE names a file, each write of the in-memory storage is appended
to it as a JSON line before the response is sent, and the file is replayed at start,
so the resources survive a kill and a restart. The process exits when its parent is gone.
"""

import json
import os
import re
import sys
import threading
import time

from scim2_server.memory import InMemoryStorage
from scim2_server.testserver import cli

STATE = os.environ.get("SCIM2_HARNESS_STATE") or None
PARENT = int(os.environ.get("SCIM2_HARNESS_PARENT") or os.getppid())


def watch_parent():
    while True:
        if os.getppid() != PARENT:
            os._exit(0)
        time.sleep(0.5)


class JournaledStorage(InMemoryStorage):
    journal = None

    def load(self, provider):
        by_name = {rt.name: rt for rt in provider.resource_types}
        records = {}
        try:
            with open(STATE, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # torn by a kill: never acknowledged
                    entry = json.loads(line)
                    key = (entry["type"], entry["id"])
                    if entry["op"] == "put":
                        records[key] = entry["resource"]
                    else:
                        records.pop(key, None)
        except FileNotFoundError:
            pass
        resources = []
        highest = 0
        for (type_name, _), data in records.items():
            model = provider.model_for(by_name[type_name])
            resources.append(model.model_validate(data))
            found = re.search(r"\d+", (data.get("meta") or {}).get("version") or "")
            if found:
                highest = max(highest, int(found.group()))
        with self.lock:
            self.resources = resources
            self.versions = iter(range(highest + 1, sys.maxsize))
            tmp = STATE + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                for resource in resources:
                    f.write(self._line("put", resource))
            os.replace(tmp, STATE)
            self.journal = open(STATE, "a", encoding="utf-8")

    @staticmethod
    def _line(op, resource, type_name=None, resource_id=None):
        if resource is not None:
            entry = {
                "op": op,
                "type": resource.meta.resource_type,
                "id": resource.id,
                "resource": resource.model_dump(mode="json"),
            }
        else:
            entry = {"op": op, "type": type_name, "id": resource_id}
        return json.dumps(entry) + "\n"

    def _append(self, line):
        if self.journal is not None:
            self.journal.write(line)
            self.journal.flush()

    def create(self, resource_type, resource):
        with self.lock:
            stored = super().create(resource_type, resource)
            self._append(self._line("put", stored))
            return stored

    def update(self, resource_type, resource, *, expected_version=None):
        with self.lock:
            stored = super().update(
                resource_type, resource, expected_version=expected_version
            )
            self._append(self._line("put", stored))
            return stored

    def delete(self, resource_type, resource_id, *, expected_version=None):
        with self.lock:
            super().delete(resource_type, resource_id, expected_version=expected_version)
            self._append(self._line("delete", None, resource_type.name, resource_id))


class JournaledApplication(cli.BearerTokenApplication):
    def __init__(self, storage, provider, *args, **kwargs):
        super().__init__(storage, provider, *args, **kwargs)
        if isinstance(storage, JournaledStorage):
            storage.load(provider)


if __name__ == "__main__":
    threading.Thread(target=watch_parent, daemon=True).start()
    if STATE is not None:
        cli.InMemoryStorage = JournaledStorage
        cli.BearerTokenApplication = JournaledApplication
    sys.argv[0] = "scim2-server"
    cli.main()
"#;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// How to run a [`Scim2Server`].
#[derive(Clone, Debug)]
pub struct Scim2Options {
    /// Keep the resources across `stop()`/`restart()` (the journal, see the module docs).
    /// Without it a restart starts empty, as the unmodified command does.
    pub persistent: bool,
    /// Replaces the default schemas (`--schema`): must hold the core ones too.
    pub schemas: Option<Vec<Value>>,
    /// Replaces the default resource types (`--resource-type`).
    pub resource_types: Option<Vec<Value>>,
    /// More command-line arguments for `scim2-server`.
    pub extra_args: Vec<String>,
}

impl Default for Scim2Options {
    fn default() -> Self {
        Scim2Options {
            persistent: true,
            schemas: None,
            resource_types: None,
            extra_args: Vec::new(),
        }
    }
}

impl Scim2Options {
    pub fn in_memory() -> Self {
        Scim2Options {
            persistent: false,
            ..Self::default()
        }
    }

    /// Adds a schema (a full RFC 7643 §7 schema resource, with `id` = its URN) to the
    /// default ones and declares it as an optional extension of the User resource type.
    pub fn with_user_extension(mut self, schema: Value) -> Self {
        let urn = schema["id"]
            .as_str()
            .expect("the extension schema has an id")
            .to_string();
        let mut schemas = self.schemas.take().unwrap_or_else(default_schemas);
        schemas.push(schema);
        let mut types = self
            .resource_types
            .take()
            .unwrap_or_else(default_resource_types);
        let user = types
            .iter_mut()
            .find(|t| t["name"] == "User")
            .expect("a User resource type");
        if !user["schemaExtensions"].is_array() {
            user["schemaExtensions"] = json!([]);
        }
        user["schemaExtensions"]
            .as_array_mut()
            .expect("array")
            .push(json!({"schema": urn, "required": false}));
        self.schemas = Some(schemas);
        self.resource_types = Some(types);
        self
    }
}

/// A one-attribute-list schema resource, for [`Scim2Options::with_user_extension`]: each
/// attribute a single-valued, optional, readWrite string.
pub fn string_extension_schema(urn: &str, name: &str, attributes: &[&str]) -> Value {
    let attributes: Vec<Value> = attributes
        .iter()
        .map(|a| {
            json!({
                "name": a, "type": "string", "multiValued": false, "required": false,
                "caseExact": false, "mutability": "readWrite", "returned": "default",
                "uniqueness": "none"
            })
        })
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": urn,
        "name": name,
        "description": name,
        "attributes": attributes,
    })
}

fn package_resource(name: &str) -> Vec<Value> {
    let out = Command::new(scim2_python())
        .args([
            "-c",
            "import importlib.resources, sys; \
             sys.stdout.write((importlib.resources.files('scim2_server') / 'resources' / sys.argv[1]).read_text())",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "reading {name} from scim2_server failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

/// scim2-server's default schemas (core User, core Group, enterprise User).
pub fn default_schemas() -> Vec<Value> {
    package_resource("default-schemas.json")
}

/// scim2-server's default resource types (User with the enterprise extension, Group).
pub fn default_resource_types() -> Vec<Value> {
    package_resource("default-resource-types.json")
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// A reply of the server: status, headers, and the body as JSON (`Null` when empty, a JSON
/// string when it is not JSON).
#[derive(Debug)]
pub struct Scim2Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A running `scim2-server` on `127.0.0.1`. Killed on drop.
pub struct Scim2Server {
    /// `http://127.0.0.1:PORT/v2`
    pub base_url: String,
    /// The bearer token it accepts (the only one).
    pub token: String,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    options: Scim2Options,
    client: reqwest::Client,
}

impl Scim2Server {
    /// Starts a server whose data survives [`stop`](Self::stop) and
    /// [`restart`](Self::restart). Blocks until it answers (at most 30 s).
    pub fn start() -> Scim2Server {
        Self::start_with(Scim2Options::default())
    }

    /// Starts a server that loses its data on a restart, like the unmodified command.
    pub fn start_in_memory() -> Scim2Server {
        Self::start_with(Scim2Options::in_memory())
    }

    pub fn start_with(options: Scim2Options) -> Scim2Server {
        scim2_server_bin();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&base).expect("cargo tmp dir");
        let dir = tempfile::Builder::new()
            .prefix("scim2-server-")
            .tempdir_in(&base)
            .expect("temp dir for scim2-server");
        fs::write(dir.path().join("launcher.py"), LAUNCHER_PY).expect("write the launcher");
        if let Some(schemas) = &options.schemas {
            fs::write(
                dir.path().join("schemas.json"),
                serde_json::to_vec_pretty(schemas).expect("json"),
            )
            .expect("write schemas.json");
        }
        if let Some(types) = &options.resource_types {
            fs::write(
                dir.path().join("resource-types.json"),
                serde_json::to_vec_pretty(types).expect("json"),
            )
            .expect("write resource-types.json");
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("reqwest client");
        let token = format!("scim2-{}", unique());
        logs::record_secret("scim2-target-token", &token);
        let mut server = Scim2Server {
            base_url: String::new(),
            token,
            port: 0,
            child: None,
            dir,
            options,
            client,
        };
        // A free port can be taken by someone else before the server binds it: retry.
        let mut attempts = 0;
        loop {
            attempts += 1;
            server.port = free_port();
            server.base_url = format!("http://127.0.0.1:{}/v2", server.port);
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if attempts < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "scim2-server did not start on 127.0.0.1:{}\n--- {} ---\n{log}",
                    server.port,
                    server.log_path().display()
                ),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's stdout and stderr go (all its runs, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL) and waits for it: the target is down, connections to its
    /// port are refused. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port with the same token.
    /// With a persistent server (the default) the data is kept. Blocks until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The port may briefly be held (or taken by another process): retry.
                Err(log) if Instant::now() < deadline && log.contains("Address already in use") => {
                    sleep(Duration::from_millis(200))
                }
                Err(log) => panic!(
                    "scim2-server did not restart on 127.0.0.1:{}\n--- {} ---\n{log}",
                    self.port,
                    self.log_path().display()
                ),
            }
        }
    }

    /// Spawns the server on `self.port` and waits until `GET /ServiceProviderConfig`
    /// answers 200. On failure the child is reaped and the log is returned.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let python = venv_bin(&scim2_venv_dir(), "python");
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the server log");
        let mut log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(python);
        cmd.arg(self.dir.path().join("launcher.py"))
            .args(["--hostname", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--bearer-token", &self.token]);
        if self.options.schemas.is_some() {
            cmd.arg("--schema")
                .arg(self.dir.path().join("schemas.json"));
        }
        if self.options.resource_types.is_some() {
            cmd.arg("--resource-type")
                .arg(self.dir.path().join("resource-types.json"));
        }
        cmd.args(&self.options.extra_args)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("SCIM2_HARNESS_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        if self.options.persistent {
            cmd.env("SCIM2_HARNESS_STATE", self.dir.path().join("state.jsonl"));
        } else {
            cmd.env_remove("SCIM2_HARNESS_STATE");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn scim2-server: {e}"));
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("try_wait");
            if let Some(status) = exited {
                self.child = None;
                let text = self.log();
                log_start = log_start.min(text.len() as u64);
                return Err(format!(
                    "(exited: {status})\n{}",
                    &text[log_start as usize..]
                ));
            }
            if probe_ready(self.port, &self.token) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "(no 200 from GET /v2/ServiceProviderConfig within {START_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    // ---- HTTP helpers (async, reqwest) ----------------------------------------------------

    /// The URL of `path` (e.g. `/Users/abc`, `/Users?count=1`) under the base URL.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{}", self.base_url, path)).expect("a valid URL")
    }

    /// A request with the bearer token; the body, if any, as `application/scim+json`.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Scim2Reply {
        self.send(method, self.url(path), body, &[]).await
    }

    /// Like [`request`](Self::request), to a full URL, with extra headers.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Scim2Reply {
        let mut req = self
            .client
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(body).expect("json"));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("scim2-server: {method} {url}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("scim2-server response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Scim2Reply {
            status,
            headers,
            body,
        }
    }

    /// Every resource of an endpoint (`/Users`, `/Groups`) matching `filter`, reading the
    /// pages (count=1000) until all are read.
    pub async fn list(&self, endpoint: &str, filter: Option<&str>) -> Vec<Value> {
        let mut all = Vec::new();
        let mut start = 1u64;
        // Bounded: at most 1000 pages.
        for _ in 0..1000 {
            let mut url = self.url(endpoint);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("startIndex", &start.to_string());
                q.append_pair("count", "1000");
                if let Some(f) = filter {
                    q.append_pair("filter", f);
                }
            }
            let reply = self.send(Method::GET, url, None, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "scim2-server: GET {endpoint}: {}",
                reply.body
            );
            let total = reply.body["totalResults"].as_u64().unwrap_or(0);
            let page = reply.body["Resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let n = page.len() as u64;
            all.extend(page);
            if n == 0 || all.len() as u64 >= total {
                return all;
            }
            start += n;
        }
        panic!("scim2-server: more than 1000 pages of {endpoint}");
    }

    /// All users.
    pub async fn users(&self) -> Vec<Value> {
        self.list("/Users", None).await
    }

    /// All groups.
    pub async fn groups(&self) -> Vec<Value> {
        self.list("/Groups", None).await
    }

    /// The user with this userName (`filter=userName eq "…"`; the server compares
    /// case-insensitively, as userName is caseExact=false).
    pub async fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let filter = format!("userName eq {}", scim_string(user_name));
        let mut found = self.list("/Users", Some(&filter)).await;
        assert!(
            found.len() <= 1,
            "several users named {user_name}: {found:?}"
        );
        found.pop()
    }

    /// The group with this displayName (displayName is not unique on scim2-server: the
    /// first one).
    pub async fn group_by_name(&self, display_name: &str) -> Option<Value> {
        let filter = format!("displayName eq {}", scim_string(display_name));
        self.list("/Groups", Some(&filter)).await.into_iter().next()
    }

    /// `GET /Users/{id}`: `None` on 404.
    pub async fn user(&self, id: &str) -> Option<Value> {
        self.get_resource("/Users", id).await
    }

    /// `GET /Groups/{id}`: `None` on 404.
    pub async fn group(&self, id: &str) -> Option<Value> {
        self.get_resource("/Groups", id).await
    }

    async fn get_resource(&self, endpoint: &str, id: &str) -> Option<Value> {
        let reply = self
            .request(Method::GET, &format!("{endpoint}/{id}"), None)
            .await;
        match reply.status {
            StatusCode::OK => Some(reply.body),
            StatusCode::NOT_FOUND => None,
            other => panic!("scim2-server: GET {endpoint}/{id}: {other} {}", reply.body),
        }
    }

    /// `POST /Users`; panics unless 201. Returns the created user (with its `id`).
    /// `schemas` is added if the body has none.
    pub async fn create_user(&self, body: Value) -> Value {
        self.create("/Users", USER_SCHEMA, body).await
    }

    /// `POST /Groups`; panics unless 201.
    pub async fn create_group(&self, body: Value) -> Value {
        self.create("/Groups", GROUP_SCHEMA, body).await
    }

    async fn create(&self, endpoint: &str, schema: &str, mut body: Value) -> Value {
        if body.get("schemas").is_none() {
            body["schemas"] = json!([schema]);
        }
        let reply = self.request(Method::POST, endpoint, Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "scim2-server: POST {endpoint} {body}: {}",
            reply.body
        );
        reply.body
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            eprintln!(
                "--- scim2-server {} log (last 40 lines) ---\n{tail}",
                self.base_url
            );
        }
    }
}

/// A SCIM filter string literal (JSON string syntax, as RFC 7644 §3.4.2.2 uses).
pub fn scim_string(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One blocking `GET /v2/ServiceProviderConfig` over plain TCP, true on 200.
fn probe_ready(port: u16, token: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /v2/ServiceProviderConfig HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {token}\r\nAccept: application/scim+json\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let head = String::from_utf8_lossy(&head[..read]);
    head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")
}

/// A PatchOp body.
pub fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}
