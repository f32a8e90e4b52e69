//! The pre-receive hook's rules: git's receive-pack runs the hook in the repo's
//! directory with the push's objects in quarantine; the hook checks the push
//! ([`super::push::check_push`]) within the limits the server handed it, passes the
//! caller's gate, and then makes sure `main` has not moved meanwhile.

use std::path::{Path, PathBuf};

use super::git::BRANCH_REF;
use super::push::{RefUpdate, check_push};
use crate::rules::Limits;

/// Environment variables that hand the store's limits to the hook (none of them
/// secret).
const ENV_MAX_FILE: &str = "SCOPED_REPO_MCP_MAX_FILE_BYTES";
const ENV_MAX_PUSH: &str = "SCOPED_REPO_MCP_MAX_PUSH_BYTES";
const ENV_MAX_OPS: &str = "SCOPED_REPO_MCP_MAX_OPERATIONS";
const ENV_MAX_REPO: &str = "SCOPED_REPO_MCP_MAX_REPO_BYTES";

/// The environment that hands `limits` to the hook, for receive-pack's command.
pub fn limits_env(limits: &Limits) -> [(&'static str, String); 4] {
    [
        (ENV_MAX_FILE, limits.max_file_bytes.to_string()),
        (ENV_MAX_PUSH, limits.max_update_bytes.to_string()),
        (ENV_MAX_OPS, limits.max_operations.to_string()),
        (ENV_MAX_REPO, limits.max_repo_bytes.to_string()),
    ]
}

/// The limits handed to the hook, each the default when it is missing or unreadable.
fn limits_from_env() -> Limits {
    fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    let defaults = Limits::default();
    Limits {
        max_file_bytes: env_num(ENV_MAX_FILE, defaults.max_file_bytes),
        max_update_bytes: env_num(ENV_MAX_PUSH, defaults.max_update_bytes),
        max_operations: env_num(ENV_MAX_OPS, defaults.max_operations),
        max_repo_bytes: env_num(ENV_MAX_REPO, defaults.max_repo_bytes),
    }
}

/// The pre-receive hook, run by receive-pack in the repo's directory: read the ref
/// updates from `input`, check the push, pass `gate` (which takes the writer lock for
/// the rest of the push), and write any refusal to `err` (git relays it to the pusher
/// as `remote: …`). True: accept.
pub fn pre_receive<E: std::fmt::Display>(
    input: &str,
    err: &mut dyn std::io::Write,
    gate: impl FnOnce() -> Result<(), E>,
) -> bool {
    let limits = limits_from_env();
    let quarantine = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from);
    let checked = match std::env::current_dir() {
        Ok(dir) => RefUpdate::parse_lines(input).and_then(|updates| {
            check_push(&dir, quarantine.as_deref(), &updates, &limits).map(|()| updates)
        }),
        Err(e) => {
            let _ = writeln!(err, "push refused: the repository could not be found: {e}");
            return false;
        }
    };
    let updates = match checked {
        Ok(updates) => updates,
        Err(refused) => {
            let _ = writeln!(err, "push refused, nothing changed: {refused}");
            return false;
        }
    };
    // The pack is whole and checked: only now the writer lock, and the credential
    // admitted again, right before git moves the ref.
    if let Err(refused) = gate() {
        let _ = writeln!(err, "push refused, nothing changed: {refused}");
        return false;
    }
    // Under the lock: `main` is still where the check found it, so the check holds.
    match std::env::current_dir()
        .map_err(|e| e.to_string())
        .and_then(|dir| still_at(&dir, &updates))
    {
        Ok(()) => true,
        Err(refused) => {
            let _ = writeln!(err, "push refused, nothing changed: {refused}");
            false
        }
    }
}

/// Whether `main` is still where each update found it.
fn still_at(dir: &Path, updates: &[RefUpdate]) -> Result<(), String> {
    let repo = git2::Repository::open_bare(dir).map_err(|e| e.message().to_string())?;
    let head = repo
        .refname_to_id(BRANCH_REF)
        .map_err(|e| e.message().to_string())?;
    match updates.iter().find(|u| u.old != head) {
        None => Ok(()),
        Some(u) => Err(format!(
            "`main` is at {} now, not {}: it moved while the push arrived; pull and push again",
            &head.to_string()[..12],
            &u.old.to_string()[..12]
        )),
    }
}
