//! The audit trail: one record for every MCP tool call, REST request, token mint and
//! revocation, in the store's database.
//!
//! A record says who called (a token's name and short id, an account key's name,
//! `operator` or `anonymous`), where (the surface), what (the tool, the route template
//! or the command), on which repo, with what outcome and how long it took; for writes,
//! the paths touched (the first few by name, and how many in all), the heads before
//! and after, and for a push the refs it named. It never holds a secret, a file's
//! content or a query: only words this module builds from known fields are written.
//!
//! Writing stays off every call's path: a call hands its record to a bounded channel,
//! and one thread per process writes batches in a transaction. When the channel is
//! full, or the database cannot be written (a full disk, a lock held too long), records
//! are dropped and counted, a warning is logged once, and the call goes on unharmed;
//! once writing works again a record says how many went missing.
//!
//! What a call learns while it runs (the credential the REST API resolved, a failure's
//! kind, an update's heads, a minted token's id) reaches its record through a task-local
//! [`Note`](note::Note)-taking scope that the call's entry point sets up: the handlers
//! deep inside call the `note_*` functions, which do nothing outside such a scope.
//!
//! This file holds what every record shares (the surface, who called, the columns'
//! limits); the rest has a room each: `trail` (the trail and its writer thread),
//! `note` (what a call notes, and the reasons a record may hold), `tool_call` (MCP tool
//! calls), `rest` (REST and git requests), `push` (a git push's outcome, known after
//! its answer began) and `command` (administration commands).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::credentials::secrets;
use crate::scope::{Credential, Scope};

mod command;
mod note;
mod push;
mod rest;
mod tool_call;
mod trail;

/// Where a call came in: the front door's surfaces, and the administration commands.
pub use crate::credentials::Surface;
pub use command::command_row;
pub(crate) use note::note_refused_credential;
pub(crate) use note::{
    loggable, note_backend_error, note_credential, note_internal_error, note_refusal,
};
pub use note::{note_repos, note_token, note_update};
pub use push::{PushOutcome, PushRecorded, PushReporter, PushVerdict, note_push};
pub use rest::{RefusalNote, rest_request};
pub use tool_call::Recorder;
pub(crate) use tool_call::ToolCall;
pub use trail::Trail;

/// The longest text written in any column, in bytes: every column is cut to it, so no
/// caller can make a record larger than a few kilobytes, whatever it sends.
const MAX_TEXT_BYTES: usize = 400;
/// Changed paths a record names, at most; its `paths` column counts them all.
const MAX_CHANGED_PATHS: usize = 20;
/// Repo ids written in a record, at most; past them the column says how many more.
const MAX_REPO_IDS: usize = 8;

/// Who made a call, in words safe to write down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The operator's own settings or command line.
    Operator,
    /// No credential.
    Anonymous,
    /// A credential was presented and not accepted.
    Unrecognized,
    /// A repo token.
    Token {
        /// Its name.
        name: String,
        /// Its short id.
        id: String,
    },
    /// An account key.
    AccountKey {
        /// Its name.
        name: String,
        /// Its short id.
        id: String,
    },
    /// A repo token refused as revoked or expired: named by its short id, so the trail
    /// says which grant was still in use.
    Lapsed {
        /// `revoked` or `expired`.
        state: &'static str,
        /// Its short id.
        id: String,
    },
}

impl Who {
    /// Who is behind `scope`.
    pub fn of_scope(scope: &Scope) -> Self {
        match scope.credential() {
            Credential::RepoToken(token) => Who::Token {
                name: scope.actor().to_string(),
                id: short_id(token),
            },
            Credential::Anonymous => Who::Anonymous,
            Credential::Operator | Credential::AccountKey => match scope.account_key() {
                Some((name, id)) => Who::AccountKey {
                    name: name.to_string(),
                    id: id.to_string(),
                },
                None => Who::Operator,
            },
        }
    }

    /// The credential column and the short id column.
    fn columns(&self) -> (String, Option<String>) {
        match self {
            Who::Operator => ("operator".into(), None),
            Who::Anonymous => ("anonymous".into(), None),
            Who::Unrecognized => ("unrecognized credential".into(), None),
            Who::Token { name, id } => (format!("token {name}"), Some(id.clone())),
            Who::AccountKey { name, id } => (format!("account key {name}"), Some(id.clone())),
            Who::Lapsed { state, id } => (format!("{state} token"), Some(id.clone())),
        }
    }
}

/// The short id of a secret, as `token list` and `key list` show it: the first 12 hex
/// digits of its hash, which reveal nothing of it.
pub fn short_id(secret: &str) -> String {
    secrets::hash(secret)[..12].to_string()
}

/// Milliseconds since the Unix epoch, the trail's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Cut `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// The repo column: the first [`MAX_REPO_IDS`] of `ids`, then how many more the call
/// named (`total` in all), so a call naming thousands of repos leaves a short record.
fn repo_column(total: usize, ids: impl Iterator<Item = String>) -> Option<String> {
    let shown: Vec<String> = ids.take(MAX_REPO_IDS).collect();
    if total == 0 {
        return None;
    }
    let mut column = shown.join(",");
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        if !column.is_empty() {
            column.push(' ');
        }
        column.push_str(&format!("+{more} more"));
    }
    Some(column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repo_column_names_a_few_and_counts_the_rest() {
        let ids = || (0..20).map(|i| format!("id{i}"));
        assert_eq!(repo_column(0, ids().take(0)), None);
        assert_eq!(repo_column(2, ids().take(2)).unwrap(), "id0,id1");
        assert_eq!(
            repo_column(20, ids()).unwrap(),
            "id0,id1,id2,id3,id4,id5,id6,id7 +12 more"
        );
        // Named but none of them a repo id.
        assert_eq!(repo_column(3, ids().take(0)).unwrap(), "+3 more");
        let mut long = "é".repeat(1000);
        cut(&mut long, MAX_TEXT_BYTES);
        assert!(long.len() <= MAX_TEXT_BYTES && long.len() > MAX_TEXT_BYTES - 2);
    }
}
