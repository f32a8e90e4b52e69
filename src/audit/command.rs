//! The record of an administration command (`repo`, `token`, `key`).

use super::note::{Outcome, safe_reason};
use super::{Surface, now_ms, repo_column, short_id};
use crate::credentials::secrets::{ACCOUNT_KEY_PREFIX, REPO_TOKEN_PREFIX};
use crate::model::RepoId;
use crate::store::AuditRow;

/// The record of an administration command, written at once (the command exits
/// right after). `subject` is the token's name and its secret or short id.
pub fn command_row(
    action: &str,
    repos: &[RepoId],
    ok: Result<(), &str>,
    subject: Option<(&str, &str)>,
) -> AuditRow {
    let subject = subject.map(|(name, token)| {
        let id = if token.starts_with(REPO_TOKEN_PREFIX) || token.starts_with(ACCOUNT_KEY_PREFIX) {
            short_id(token)
        } else {
            // The short id (or its start) as `token list` shows it.
            token
                .chars()
                .take(12)
                .filter(char::is_ascii_hexdigit)
                .collect::<String>()
                .to_ascii_lowercase()
        };
        (name.to_string(), id)
    });
    let (outcome, reason) = match ok {
        Ok(()) => (Outcome::Ok, None),
        Err(why) => (Outcome::Error, Some(safe_reason(why, &[]))),
    };
    AuditRow {
        at_ms: now_ms(),
        pid: std::process::id() as i64,
        surface: Surface::Cli.as_str().into(),
        credential: "operator".into(),
        action: action.into(),
        repo: repo_column(repos.len(), repos.iter().map(ToString::to_string)),
        outcome: outcome.as_str().into(),
        reason,
        subject: subject.as_ref().map(|s| s.0.clone()),
        subject_id: subject.map(|s| s.1),
        ..Default::default()
    }
}
