//! A session's scope: the repos it may touch and the rights it has on them, and the
//! one guard every tool call passes before any backend work.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::model::{MintSpec, RepoId, TokenInfo, rfc3339, unix_now};
use crate::rules::PathSet;
use crate::rules::Rate;

/// A right a tool needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Search, read, list.
    Read,
    /// Update files.
    Write,
    /// Create and revoke tokens.
    Mint,
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Mint => "mint tokens",
        })
    }
}

/// Where a session's scope came from, which decides whether it must be re-checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The operator's own settings; nothing to re-check.
    Operator,
    /// A repo token, checked for revocation and expiry on every call.
    RepoToken(String),
    /// No credential at all (an HTTP request under `--allow-anonymous`).
    Anonymous,
    /// An account key presented by a caller (HTTP or the REST API).
    AccountKey,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Operator => f.write_str("Operator"),
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::AccountKey => f.write_str("AccountKey"),
            // Never print the secret, not even in debug output.
            Credential::RepoToken(_) => f.write_str("RepoToken(<redacted>)"),
        }
    }
}

/// A refusal by the guard.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    /// The repo is not in scope.
    #[error("repo {repo} is outside this session's scope; it may use: {allowed}")]
    OutOfScope {
        /// The repo asked for.
        repo: String,
        /// The repos in scope, comma separated.
        allowed: String,
    },
    /// The session lacks the right.
    #[error("this session may not {right}: {why}")]
    NoRight {
        /// The right asked for.
        right: Right,
        /// Why it is missing.
        why: String,
    },
    /// A token minted by this session would reach further than the session.
    #[error("a token minted by this session cannot be wider than the session's own token: {0}")]
    Widening(String),
    /// The path is outside a path-limited session.
    #[error("`{0}` is outside the paths this session's token may touch")]
    OutsidePaths(String),
}

/// Why a scope is read-only when the operator's `--read-only` made it so.
const OPERATOR_READ_ONLY: &str = "the server runs with --read-only";

/// The repos a session may touch and what it may do there.
#[derive(Debug, Clone)]
pub struct Scope {
    repos: BTreeSet<RepoId>,
    /// Every repo, whether listed in `repos` or not (an account key on the REST API).
    every_repo: bool,
    write: bool,
    mint: bool,
    /// When the session's credential stops working (Unix seconds), if ever.
    expires_at: Option<i64>,
    credential: Credential,
    /// Who commits are attributed to.
    actor: String,
    read_only_reason: &'static str,
    /// Why the scope has no mint right, when it lacks it for a reason other than
    /// read-only.
    no_mint_reason: &'static str,
    /// The paths a path-limited token sees; `None`: every path.
    paths: Option<Arc<PathSet>>,
    /// The account key behind an operator scope, as its name and short id (never the
    /// key), so the audit trail can say which key called.
    account_key: Option<(String, String)>,
    /// The token's own rate limit, when it was minted with one.
    rate: Option<Rate>,
    /// The hash of the token its lineage started from (its farthest ancestor), when it
    /// was minted by a delegating token: the whole lineage spends one rate budget.
    lineage_root: Option<String>,
}

impl Scope {
    /// A scope with read, write and mint rights on `repos`, from the operator's settings.
    pub fn operator(repos: impl IntoIterator<Item = RepoId>) -> Self {
        Self {
            repos: repos.into_iter().collect(),
            every_repo: false,
            write: true,
            mint: true,
            expires_at: None,
            credential: Credential::Operator,
            actor: "scoped-repo-mcp".to_string(),
            read_only_reason: "",
            no_mint_reason: "",
            paths: None,
            account_key: None,
            rate: None,
            lineage_root: None,
        }
    }

    /// The scope of an account key presented by a caller: every right on `repos`.
    pub fn account(repos: impl IntoIterator<Item = RepoId>) -> Self {
        Self {
            credential: Credential::AccountKey,
            ..Self::operator(repos)
        }
    }

    /// The scope of an account key on the REST API: every right on every repo.
    pub fn every_repo() -> Self {
        Self {
            every_repo: true,
            ..Self::account([])
        }
    }

    /// The scope of a request with no credential, under `--allow-anonymous`: read and
    /// write on exactly the operator's `repos`, and never mint or revoke, since a
    /// token minted there would outlive the server and revoking would reach other
    /// agents' tokens.
    pub fn anonymous(repos: impl IntoIterator<Item = RepoId>) -> Self {
        Self {
            repos: repos.into_iter().collect(),
            every_repo: false,
            write: true,
            mint: false,
            expires_at: None,
            credential: Credential::Anonymous,
            actor: "anonymous".to_string(),
            read_only_reason: "",
            no_mint_reason: "a session without a credential cannot create or revoke tokens",
            paths: None,
            account_key: None,
            rate: None,
            lineage_root: None,
        }
    }

    /// A scope from a repo token: what `info` grants (read, and write unless it is
    /// read-only; its paths; mint only when it may delegate), narrowed to `upper` when
    /// the operator gave a repo list.
    pub fn from_token(token: String, info: &TokenInfo, upper: &[RepoId]) -> Self {
        let repos = info
            .repo_ids
            .iter()
            .filter(|r| upper.is_empty() || upper.contains(r))
            .copied()
            .collect();
        let paths = if info.paths.is_empty() {
            None
        } else {
            // Globs that no longer compile (stored by an older version) see nothing.
            Some(Arc::new(
                PathSet::new(&info.paths).unwrap_or_else(|_| PathSet::nothing(&info.paths)),
            ))
        };
        Self {
            repos,
            every_repo: false,
            write: !info.read_only,
            mint: info.can_delegate,
            expires_at: info.expires_at,
            credential: Credential::RepoToken(token),
            actor: if info.name.is_empty() {
                "repo token".to_string()
            } else {
                info.name.clone()
            },
            read_only_reason: if info.read_only {
                "this session's repo token is read-only"
            } else {
                ""
            },
            no_mint_reason: "this session's repo token may not delegate (it was minted without can_delegate)",
            paths,
            account_key: None,
            rate: info.rate,
            lineage_root: info.lineage.last().cloned(),
        }
    }

    /// Say that this operator scope comes from the account key `name` (short id `id`).
    pub fn by_account_key(mut self, name: &str, id: &str) -> Self {
        self.account_key = Some((name.to_string(), id.to_string()));
        self
    }

    /// The account key behind the scope, as its name and short id.
    pub fn account_key(&self) -> Option<(&str, &str)> {
        self.account_key
            .as_ref()
            .map(|(n, i)| (n.as_str(), i.as_str()))
    }

    /// The rate limit of the token behind the scope, when it has one.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// The hash of the token this token's lineage started from, when it has ancestors.
    pub fn lineage_root(&self) -> Option<&str> {
        self.lineage_root.as_deref()
    }

    /// The paths a path-limited session sees; `None`: every path.
    pub fn paths(&self) -> Option<&PathSet> {
        self.paths.as_deref()
    }

    /// The set of visible paths, to hand to a backend query or update.
    pub fn visible(&self) -> Option<Arc<PathSet>> {
        self.paths.clone()
    }

    /// Whether the file at `path` is visible to this session.
    pub fn sees(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|p| p.sees(path))
    }

    /// The token this session runs on, when it runs on one.
    pub fn token(&self) -> Option<&str> {
        match &self.credential {
            Credential::RepoToken(t) => Some(t),
            _ => None,
        }
    }

    /// The delegation rule: what a token minted by this session, as `asked`, may grant.
    /// The repos are checked by [`Scope::admit_all`]; the lifetime by
    /// [`Scope::max_ttl`]. A session on a repo token mints children that are a subset
    /// of itself in every dimension: read-only and paths are inherited when not asked
    /// for, a wider ask is refused, and the child records its parent. Other sessions
    /// (the operator's, an account key's) mint what they ask.
    pub fn child(&self, asked: MintSpec) -> Result<MintSpec, ScopeError> {
        let Some(token) = self.token() else {
            return Ok(MintSpec {
                parent: None,
                ..asked
            });
        };
        let read_only = asked.read_only || !self.write;
        let paths = match (&self.paths, asked.paths.is_empty()) {
            (None, _) => asked.paths,
            (Some(mine), true) => mine.globs().to_vec(),
            (Some(mine), false) => {
                if let Some(wider) = asked.paths.iter().find(|p| !mine.covers(p)) {
                    return Err(ScopeError::Widening(format!(
                        "path glob `{}` is not within this token's paths ({}); give one of them, \
                         or a glob under one of its `dir/**` globs",
                        crate::text::one_line(wider),
                        mine.globs().join(", ")
                    )));
                }
                asked.paths
            }
        };
        let rate = match (self.rate, asked.rate) {
            (None, asked) => asked,
            (Some(mine), None) => Some(mine),
            (Some(mine), Some(asked)) if asked.within(&mine) => Some(asked),
            (Some(mine), Some(asked)) => {
                return Err(ScopeError::Widening(format!(
                    "rate `{asked}` is looser than this token's own `{mine}`; give one no faster and with no larger burst, or leave it out to inherit it"
                )));
            }
        };
        if asked.can_delegate && !self.mint {
            return Err(ScopeError::Widening(
                "can_delegate needs a session that may delegate".into(),
            ));
        }
        Ok(MintSpec {
            read_only,
            paths,
            rate,
            parent: Some(token.to_string()),
            ..asked
        })
    }

    /// Drop the write and mint rights.
    pub fn read_only(mut self) -> Self {
        self.write = false;
        self.mint = false;
        self.read_only_reason = OPERATOR_READ_ONLY;
        self
    }

    /// Whether a credential that granted more could use `right` here: the scope lacks
    /// it because of its repo token, not because of the operator's `--read-only` or for
    /// want of a credential. Such a call is worth a challenge that asks for more scope.
    pub fn lacks_by_credential(&self, right: Right) -> bool {
        !self.has(right)
            && matches!(self.credential, Credential::RepoToken(_))
            && self.read_only_reason != OPERATOR_READ_ONLY
    }

    /// The repos in scope, sorted.
    pub fn repos(&self) -> impl Iterator<Item = &RepoId> {
        self.repos.iter()
    }

    /// Whether the scope holds no repo.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty() && !self.every_repo
    }

    /// Whether the scope has `right` at all.
    pub fn has(&self, right: Right) -> bool {
        match right {
            Right::Read => true,
            Right::Write => self.write,
            Right::Mint => self.mint,
        }
    }

    /// The credential behind the scope.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// When the session's credential expires.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// Who commits are attributed to.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    fn allowed(&self) -> String {
        if self.repos.is_empty() {
            return "(no repos)".to_string();
        }
        self.repos
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check_right(&self, right: Right) -> Result<(), ScopeError> {
        if self.has(right) {
            return Ok(());
        }
        let why = if !self.read_only_reason.is_empty() {
            self.read_only_reason
        } else {
            self.no_mint_reason
        }
        .to_string();
        Err(ScopeError::NoRight { right, why })
    }

    /// The guard: may this session use `right` on `repo`?
    pub fn admit(&self, right: Right, repo: &RepoId) -> Result<(), ScopeError> {
        self.check_right(right)?;
        if self.every_repo || self.repos.contains(repo) {
            Ok(())
        } else {
            Err(ScopeError::OutOfScope {
                repo: repo.to_string(),
                allowed: self.allowed(),
            })
        }
    }

    /// The guard for calls on several repos at once (minting and revoking).
    pub fn admit_all(&self, right: Right, repos: &[RepoId]) -> Result<(), ScopeError> {
        self.check_right(right)?;
        repos.iter().try_for_each(|r| self.admit(right, r))
    }

    /// The longest TTL a token minted by this session may have: the operator's cap,
    /// and never past the session's own credential's expiry.
    pub fn max_ttl(&self, operator_cap: u64) -> u64 {
        match self.expires_at {
            Some(e) => operator_cap.min((e - unix_now()).max(0) as u64),
            None => operator_cap,
        }
    }

    /// A one-line description for logs and instructions (no secrets).
    pub fn describe(&self) -> String {
        let rights = match (self.write, self.mint) {
            (true, true) => "read, write, mint tokens",
            (true, false) => "read, write",
            _ => "read only",
        };
        let expiry = self
            .expires_at
            .map(|e| format!("; credential expires {}", rfc3339(e)))
            .unwrap_or_default();
        format!("{} repo(s), {rights}{expiry}", self.repos.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RepoId {
        format!("00000000-0000-4000-8000-0000000000{n:02x}")
            .parse()
            .unwrap()
    }

    fn info(name: &str, repos: &[RepoId]) -> TokenInfo {
        TokenInfo {
            name: name.into(),
            repo_ids: repos.to_vec(),
            ..TokenInfo::default()
        }
    }

    fn globs(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn children_of_a_token_are_never_wider() {
        let parent = Scope::from_token(
            "rlcr-p".into(),
            &TokenInfo {
                read_only: true,
                paths: globs(&["web/**", "docs/*.md"]),
                can_delegate: false,
                ..info("lead", &[id(1)])
            },
            &[],
        );
        let ask = |paths: &[&str], can_delegate: bool| MintSpec {
            name: "child".into(),
            repo_ids: vec![id(1)],
            paths: globs(paths),
            can_delegate,
            ..MintSpec::default()
        };
        // Inherited when not asked for: read-only and the parent's paths.
        let child = parent.child(ask(&[], false)).unwrap();
        assert!(child.read_only);
        assert_eq!(child.paths, globs(&["web/**", "docs/*.md"]));
        assert_eq!(child.parent.as_deref(), Some("rlcr-p"));
        // Narrower globs are accepted; anything not provably inside is refused.
        assert!(
            parent
                .child(ask(&["web/src/**", "docs/*.md"], false))
                .is_ok()
        );
        for wider in [
            &["**"][..],
            &["web*/**"],
            &["docs/**"],
            &["webx/**"],
            &["*.md"],
        ] {
            assert!(
                matches!(
                    parent.child(ask(wider, false)),
                    Err(ScopeError::Widening(_))
                ),
                "{wider:?}"
            );
        }
        assert!(matches!(
            parent.child(ask(&[], true)),
            Err(ScopeError::Widening(_))
        ));
        // The operator's sessions mint what they ask, with no parent.
        let op = Scope::operator([id(1)]);
        let minted = op.child(ask(&["**"], true)).unwrap();
        assert!(minted.parent.is_none() && minted.can_delegate && !minted.read_only);
    }

    #[test]
    fn a_child_token_inherits_its_parents_rate_and_may_not_loosen_it() {
        let rate = |s: &str| s.parse::<Rate>().unwrap();
        let parent = Scope::from_token(
            "rlcr-p".into(),
            &TokenInfo {
                can_delegate: true,
                rate: Some(rate("60/m,burst=10")),
                ..info("lead", &[id(1)])
            },
            &[],
        );
        let ask = |r: Option<Rate>| MintSpec {
            name: "child".into(),
            repo_ids: vec![id(1)],
            rate: r,
            ..MintSpec::default()
        };
        assert_eq!(parent.rate(), Some(rate("60/m,burst=10")));
        assert_eq!(
            parent.child(ask(None)).unwrap().rate,
            Some(rate("60/m,burst=10"))
        );
        assert_eq!(
            parent.child(ask(Some(rate("1/s,burst=5")))).unwrap().rate,
            Some(rate("1/s,burst=5"))
        );
        for looser in ["2/s,burst=5", "60/m,burst=11"] {
            let e = parent
                .child(ask(Some(rate(looser))))
                .unwrap_err()
                .to_string();
            assert!(e.contains("looser"), "{looser}: {e}");
        }
        // A session on no token mints whatever rate it asks for.
        let operator = Scope::operator([id(1)]);
        assert_eq!(operator.child(ask(None)).unwrap().rate, None);
    }

    #[test]
    fn token_rights_follow_the_token() {
        let ro = Scope::from_token(
            "t".into(),
            &TokenInfo {
                read_only: true,
                ..info("r", &[id(1)])
            },
            &[],
        );
        assert!(ro.admit(Right::Read, &id(1)).is_ok());
        let err = ro.admit(Right::Write, &id(1)).unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        let lead = Scope::from_token(
            "t".into(),
            &TokenInfo {
                can_delegate: true,
                paths: globs(&["web/**"]),
                ..info("l", &[id(1)])
            },
            &[],
        );
        assert!(lead.has(Right::Mint) && lead.has(Right::Write));
        assert!(lead.sees("web/a.ts") && !lead.sees("api/a.ts") && !lead.sees("web"));
    }

    #[test]
    fn admits_only_repos_in_scope_and_names_them_when_refusing() {
        let s = Scope::operator([id(1), id(2)]);
        assert!(s.admit(Right::Write, &id(1)).is_ok());
        let err = s.admit(Right::Read, &id(3)).unwrap_err().to_string();
        assert!(err.contains(&id(3).to_string()), "{err}");
        assert!(
            err.contains(&id(1).to_string()) && err.contains(&id(2).to_string()),
            "{err}"
        );
    }

    #[test]
    fn token_scope_is_narrowed_by_operator_and_cannot_mint() {
        let s = Scope::from_token(
            "rlcr-x".into(),
            &info("agent", &[id(1), id(2)]),
            &[id(2), id(3)],
        );
        assert_eq!(s.repos().copied().collect::<Vec<_>>(), vec![id(2)]);
        assert!(matches!(
            s.admit(Right::Mint, &id(2)),
            Err(ScopeError::NoRight { .. })
        ));
        assert!(!format!("{:?}", s).contains("rlcr-x"));
    }

    #[test]
    fn anonymous_scope_reads_and_writes_but_never_mints() {
        let s = Scope::anonymous([id(1)]);
        assert!(s.admit(Right::Write, &id(1)).is_ok());
        assert!(s.admit(Right::Read, &id(2)).is_err());
        let err = s.admit_all(Right::Mint, &[id(1)]).unwrap_err().to_string();
        assert!(err.contains("without a credential"), "{err}");
    }

    #[test]
    fn read_only_refuses_write_and_mint() {
        let s = Scope::operator([id(1)]).read_only();
        assert!(s.admit(Right::Read, &id(1)).is_ok());
        assert!(s.admit(Right::Write, &id(1)).is_err());
        assert!(s.admit_all(Right::Mint, &[id(1)]).is_err());
    }

    #[test]
    fn minted_ttl_never_outlives_the_session_credential() {
        let s = Scope::from_token(
            "t".into(),
            &TokenInfo {
                expires_at: Some(unix_now() + 100),
                ..info("", &[id(1)])
            },
            &[],
        );
        assert!(s.max_ttl(3600) <= 100);
        assert_eq!(Scope::operator([id(1)]).max_ttl(3600), 3600);
    }
}
