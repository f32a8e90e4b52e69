//! The record of a git push: written once receive-pack has ended, so it says what the
//! push came to (landed, with the old and new head and the changed paths; refused, and
//! why; or failed), not merely that git's answer began.
//!
//! A push's answer streams while receive-pack still runs, so the request's record
//! cannot be finished when its handler returns. The handler asks for a
//! [`PushReporter`]; the REST middleware ([`super::rest_request`]) then holds the
//! record until the reporter reports (or is dropped: the record then says what the
//! status said), and acknowledges once it is written, so a pusher whose `git push` has
//! returned finds the record there.

use std::time::Duration;

use tokio::sync::oneshot;

use super::note::{Outcome, safe_reason};
use super::{MAX_CHANGED_PATHS, MAX_TEXT_BYTES, cut};
use crate::store::AuditRow;

/// What a push came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushVerdict {
    /// The ref moved from `before` to `after`, changing `paths` (all of them; the record
    /// keeps the first few and counts the rest).
    Landed {
        /// The head before.
        before: String,
        /// The head after.
        after: String,
        /// Every path the push changed.
        paths: Vec<String>,
    },
    /// Refused (by the store's rules, the gate, or git), with why.
    Refused(String),
    /// git failed, or its outcome could not be read.
    Failed(String),
}

/// A push's outcome: the refs it named, and what it came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The full ref names of the push's commands.
    pub refs: Vec<String>,
    /// What the push came to.
    pub verdict: PushVerdict,
}

type Report = (PushOutcome, oneshot::Sender<()>);

/// The handle a push's handler reports its outcome through (see the module's words).
pub struct PushReporter(Option<oneshot::Sender<Report>>);

/// Waits until a push's record is written.
pub struct PushRecorded(Option<oneshot::Receiver<()>>);

/// How long a push's answer is held open for its record to be written.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// A reporter for the push being handled, within a request the audit middleware
/// records; outside one (the trail off), its reports go nowhere.
pub fn note_push() -> PushReporter {
    let (tx, rx) = oneshot::channel();
    let mut rx = Some(rx);
    super::note::note(|n| n.push = rx.take());
    PushReporter(rx.is_none().then_some(tx))
}

impl PushReporter {
    /// Hand the outcome to the push's record.
    pub fn report(mut self, outcome: PushOutcome) -> PushRecorded {
        let Some(tx) = self.0.take() else {
            return PushRecorded(None);
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        match tx.send((outcome, ack_tx)) {
            Ok(()) => PushRecorded(Some(ack_rx)),
            Err(_) => PushRecorded(None),
        }
    }
}

impl PushRecorded {
    /// Wait until the record is written (at most a few seconds: a trail that cannot
    /// write must not hold the pusher).
    pub async fn written(self) {
        if let Some(rx) = self.0 {
            let _ = tokio::time::timeout(RECORD_WAIT, rx).await;
        }
    }
}

/// The middleware's side: the report, once it comes.
pub(super) type PendingPush = oneshot::Receiver<Report>;

/// `row` (made from the response's status) with the push's `outcome` written in.
pub(super) fn apply(row: &mut AuditRow, outcome: PushOutcome) {
    let mut refs = outcome.refs.join(",");
    cut(&mut refs, MAX_TEXT_BYTES);
    row.refs = (!refs.is_empty()).then_some(refs);
    match outcome.verdict {
        PushVerdict::Landed {
            before,
            after,
            paths,
        } => {
            row.outcome = Outcome::Ok.as_str().into();
            row.reason = None;
            row.head_before = Some(before);
            row.head_after = Some(after);
            row.paths = Some(paths.len() as i64);
            row.changed_paths = shown_paths(paths);
        }
        PushVerdict::Refused(why) => {
            row.outcome = Outcome::Refused.as_str().into();
            row.reason = Some(safe_reason(&why, &[]));
        }
        PushVerdict::Failed(why) => {
            row.outcome = Outcome::Error.as_str().into();
            row.reason = Some(safe_reason(&why, &[]));
        }
    }
}

/// The paths a record names: the first [`MAX_CHANGED_PATHS`], each whole (a path
/// longer than a column is left out rather than cut, and counted with the rest).
pub(super) fn shown_paths(paths: impl IntoIterator<Item = String>) -> Vec<String> {
    paths
        .into_iter()
        .filter(|p| p.len() <= MAX_TEXT_BYTES)
        .take(MAX_CHANGED_PATHS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_landed_push_names_its_heads_refs_and_first_paths() {
        let mut row = AuditRow {
            outcome: "ok".into(),
            ..Default::default()
        };
        let paths: Vec<String> = (0..50).map(|i| format!("src/f{i:02}.rs")).collect();
        apply(
            &mut row,
            PushOutcome {
                refs: vec!["refs/heads/main".into()],
                verdict: PushVerdict::Landed {
                    before: "a".repeat(40),
                    after: "b".repeat(40),
                    paths: paths.clone(),
                },
            },
        );
        assert_eq!(row.refs.as_deref(), Some("refs/heads/main"));
        assert_eq!(row.paths, Some(50));
        assert_eq!(row.changed_paths, paths[..MAX_CHANGED_PATHS].to_vec());
        assert_eq!(row.head_after, Some("b".repeat(40)));
    }

    #[test]
    fn a_refused_push_says_why_without_a_secret() {
        let mut row = AuditRow {
            outcome: "ok".into(),
            ..Default::default()
        };
        let why = format!("bad rlcr-{}", "ab".repeat(20));
        apply(
            &mut row,
            PushOutcome {
                refs: vec!["refs/heads/main".into()],
                verdict: PushVerdict::Refused(why),
            },
        );
        assert_eq!(row.outcome, "refused");
        assert!(row.reason.unwrap().contains("not recorded"));
        assert!(row.head_after.is_none() && row.changed_paths.is_empty());
    }
}
