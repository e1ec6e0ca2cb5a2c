//! What a test run logs, kept for `.ci/secret_grep.sh` (issue 6: no configured secret in any
//! log line). Without this the in-process servers log nothing at all (no subscriber) and the
//! spawned binaries' stderr vanishes into the tests, so a grep for secrets would pass
//! vacuously.
//!
//! Everything goes to one folder, `<cargo target dir>/test-logs/` (or `$SCIM_RELAY_TEST_LOGS`),
//! with names per test process (`<test binary>-<pid>`):
//! - `<name>.log`: the in-process servers, at `scim_relay=debug,info`, in the format the binary
//!   prints by default, so the grep sees what an operator would;
//! - `<name>.bin-<pid>.stderr.log`, `<name>.bin-<pid>.stdout.log`: each binary spawned
//!   through [`relay_bin`], at the same level;
//! - `secrets-<name>.txt`: `NAME<TAB>SECRET` for every secret the harness configured.
//!
//! `.ci/run` clears the folder before `cargo test`; nothing here removes old files, because
//! the test binaries run one after another and each only adds its own.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Verbose for our own code only: hyper and reqwest at debug would bury it.
pub const LEVEL: &str = "scim_relay=debug,info";

pub fn dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("SCIM_RELAY_TEST_LOGS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // CARGO_TARGET_TMPDIR is `<target>/tmp`, so this honours CARGO_TARGET_DIR.
                PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                    .parent()
                    .expect("the cargo tmp dir is inside the target dir")
                    .join("test-logs")
            });
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create the test log dir {}: {e}", dir.display()));
        dir
    })
    .clone()
}

/// `<test binary>-<pid>`: unique per test process, and says which test file wrote it.
fn process_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "test".into());
    format!("{stem}-{}", std::process::id())
}

fn append(file: PathBuf, text: &str) {
    // Again each time: a developer may clear the folder while a test binary runs.
    let _ = fs::create_dir_all(dir());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot append to {}: {e}", file.display()));
}

/// Adds a secret the harness configured to this process's manifest; `name` is what the
/// grep reports, so that a leak can be named without printing the secret.
pub fn record_secret(name: &str, secret: &str) {
    assert!(
        !name.contains(['\t', '\n']) && !secret.contains(char::is_whitespace),
        "a manifest line is NAME<TAB>SECRET"
    );
    append(
        dir().join(format!("secrets-{}.txt", process_name())),
        &format!("{name}\t{secret}\n"),
    );
}

/// Sends this process's `tracing` events to `<name>.log`. Idempotent; if a test installed
/// another global subscriber first, this one is silently not installed, and the grep's
/// minimum counts catch the missing lines.
pub fn install_subscriber() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let path = dir().join(format!("{}.log", process_name()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        // The builder src/main.rs uses for `format = "pretty"` (the default), minus colours.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(LEVEL))
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Runs `$1` (the binary) with the arguments after `$3`, copying its stderr and stdout to
/// files named by `$2` and its pid; the test still gets both streams as usual. One pair of
/// files per child, because children of parallel tests writing into one file interleave
/// mid-line (`eprintln!` is several writes), which could split a secret past the grep.
/// `token create` prints a new secret on stdout by design: it goes to the manifest `$3`
/// instead of a log. `exec` keeps the binary's pid the child's, so `kill` kills the binary.
const TEE: &str = r#"bin=$1 prefix=$2.bin-$$ manifest=$3
shift 3
mkdir -p "${prefix%/*}"
printf '=== scim-relay %s\n' "$*" >>"$prefix.stderr.log"
case " $* " in
*" token create "*)
    token=$("$bin" "$@" 2> >(tee -a "$prefix.stderr.log" >&2))
    rc=$?
    if [ -n "$token" ]; then
        printf 'cli-token-create\t%s\n' "$token" >>"$manifest"
        printf '%s\n' "$token"
    fi
    exit $rc
    ;;
esac
exec "$bin" "$@" > >(tee -a "$prefix.stdout.log") 2> >(tee -a "$prefix.stderr.log" >&2)
"#;

/// `Command::new(env!("CARGO_BIN_EXE_scim-relay"))` for tests, logging verbosely into the test
/// log folder (see the module docs). Add arguments, stdio and env as usual; an explicit
/// `RUST_LOG` from the caller lowers what the grep gets to see.
pub fn relay_bin() -> Command {
    let bin = env!("CARGO_BIN_EXE_scim-relay");
    let mut cmd = if cfg!(unix) {
        let name = process_name();
        let dir = dir();
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(TEE)
            .arg("scim-relay-tee")
            .arg(bin)
            .arg(dir.join(&name))
            .arg(dir.join(format!("secrets-{name}.txt")));
        cmd
    } else {
        Command::new(bin)
    };
    cmd.env("RUST_LOG", LEVEL).env("NO_COLOR", "1");
    cmd
}
