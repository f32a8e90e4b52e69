//! What a call notes while it runs (its credential, a failure, an update's heads, a
//! minted token), and the reasons a record may hold without quoting the caller.

use std::sync::{Arc, Mutex};

use super::{MAX_TEXT_BYTES, Who, repo_column, short_id};
use crate::backend::BackendError;
use crate::credentials::secrets::{ACCOUNT_KEY_PREFIX, REPO_TOKEN_PREFIX};
use crate::model::{RepoId, UpdateOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Ok,
    Refused,
    Error,
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// What a call learned about itself while it ran.
#[derive(Debug, Default)]
pub(super) struct Note {
    pub(super) who: Option<Who>,
    pub(super) failure: Option<(Outcome, String)>,
    /// The repo column, already capped.
    pub(super) repos: Option<String>,
    pub(super) paths: Option<i64>,
    pub(super) head_before: Option<String>,
    pub(super) head_after: Option<String>,
    pub(super) subject: Option<(String, String)>,
    /// The first changed paths by name (see [`super::push::shown_paths`]).
    pub(super) changed_paths: Vec<String>,
    /// A push's outcome, to come once receive-pack has ended.
    pub(super) push: Option<super::push::PendingPush>,
}

tokio::task_local! {
    pub(super) static NOTE: Arc<Mutex<Note>>;
}

pub(super) fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.lock().unwrap_or_else(|p| p.into_inner())));
}

/// The credential the call turned out to carry (the REST API learns it in its
/// extractor, after the record was begun).
pub(crate) fn note_credential(who: Who) {
    note(|n| n.who = Some(who));
}

/// A credential the front door refused: a repo token refused as revoked or expired is
/// named as such in the record (by its short id), not as an unrecognized credential.
pub(crate) fn note_refused_credential(refusal: &crate::credentials::Refusal, secret: Option<&str>) {
    use crate::credentials::Refusal;
    let state = match refusal {
        Refusal::Revoked => "revoked",
        Refusal::Expired => "expired",
        _ => return,
    };
    if let Some(secret) = secret {
        note_credential(Who::Lapsed {
            state,
            id: super::short_id(secret),
        });
    }
}

/// A refusal of the call, with its reason.
pub(crate) fn note_refusal(reason: &str) {
    note(|n| n.failure = Some((Outcome::Refused, reason.to_string())));
}

/// A failure of the backend, written down by its kind only (see [`backend_kind`]),
/// since its message may quote what the caller sent.
pub(crate) fn note_backend_error(e: &BackendError) {
    note(|n| n.failure = Some((Outcome::Error, backend_kind(e))));
}

/// A failure of the server itself (a panic).
pub(crate) fn note_internal_error() {
    note(|n| n.failure = Some((Outcome::Error, "internal".into())));
}

/// An update that landed: its paths and heads.
pub fn note_update(outcome: &UpdateOutcome) {
    note(|n| {
        n.paths = Some(outcome.changed_files.len() as i64);
        n.changed_paths = super::push::shown_paths(outcome.changed_files.iter().cloned());
        n.head_before = outcome.previous_head.clone();
        n.head_after = Some(outcome.head.clone());
    });
}

/// The token a call minted or revoked, by its name and the secret itself (only its
/// short id is kept).
pub fn note_token(name: &str, token: &str) {
    let id = short_id(token);
    note(|n| n.subject = Some((name.to_string(), id)));
}

/// The repos a call reaches, when its route does not name one.
pub fn note_repos(ids: &[RepoId]) {
    let column = repo_column(ids.len(), ids.iter().map(ToString::to_string));
    note(|n| n.repos = column);
}

/// A backend failure as logs may show it: its message, unless that may quote what the
/// caller sent (a pattern that does not compile, an upstream answer echoing a request),
/// in which case only its kind.
pub(crate) fn loggable(e: &BackendError) -> std::borrow::Cow<'static, str> {
    match e {
        // A refusal may quote the pattern or glob; an upstream failure may echo the
        // request.
        BackendError::Refused(_) | BackendError::Unavailable(_) => backend_kind(e).into(),
        _ => e.to_string().into(),
    }
}

fn backend_kind(e: &BackendError) -> String {
    match e {
        BackendError::NotFound(_) => "not found",
        // Not the message: it quotes the head the caller expected.
        BackendError::Conflict(_) => "conflict: the head moved",
        BackendError::Refused(_) => "refused input",
        BackendError::Unavailable(_) => "the backend could not answer",
        BackendError::Internal(_) => "internal",
    }
    .to_string()
}

/// `reason`, cut to [`MAX_TEXT_BYTES`], or withheld when it quotes any of
/// `withheld` (the call's query, glob or token) or holds something shaped like a
/// secret.
pub(super) fn safe_reason(reason: &str, withheld: &[String]) -> String {
    let quotes = |w: &String| {
        let w = w.trim();
        !w.is_empty()
            && (reason.contains(w)
                || w.lines()
                    .map(str::trim)
                    .any(|l| !l.is_empty() && reason.contains(l))
                || reason.contains(format!("{w:?}").trim_matches('"')))
    };
    if withheld.iter().any(quotes) || holds_secret(reason) {
        return "refused; the reason is not recorded because it quotes the call's query, glob or a credential".into();
    }
    let mut end = reason.len().min(MAX_TEXT_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Whether `text` holds something shaped like a token or an account key.
fn holds_secret(text: &str) -> bool {
    [REPO_TOKEN_PREFIX, ACCOUNT_KEY_PREFIX].iter().any(|p| {
        text.match_indices(p).any(|(i, _)| {
            text[i + p.len()..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count()
                >= 8
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_quote_the_query_or_a_secret_are_withheld() {
        let q = vec!["zebra(unclosed".to_string()];
        assert!(
            safe_reason("the regex does not compile: zebra(unclosed", &q).contains("not recorded")
        );
        assert!(safe_reason("bad \"a\\nb\"", &["a\nb".to_string()]).contains("not recorded"));
        let t = format!("{REPO_TOKEN_PREFIX}{}", "ab12".repeat(10));
        assert!(safe_reason(&format!("token {t} is bad"), &[]).contains("not recorded"));
        let kept = "repo 3f2a6c1e is outside this session's scope";
        assert_eq!(safe_reason(kept, &q), kept);
        assert!(safe_reason(&"é".repeat(400), &[]).len() <= MAX_TEXT_BYTES);
    }
}
