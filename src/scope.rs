//! A session's scope: the repos it may touch and the rights it has on them, and the
//! one guard every tool call passes before any backend work.

use std::collections::BTreeSet;
use std::fmt;

use crate::model::{RepoId, rfc3339, unix_now};

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
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Operator => f.write_str("Operator"),
            Credential::Anonymous => f.write_str("Anonymous"),
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
}

/// The repos a session may touch and what it may do there.
#[derive(Debug, Clone)]
pub struct Scope {
    repos: BTreeSet<RepoId>,
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
    /// The account key behind an operator scope, as its name and short id (never the
    /// key), so the audit trail can say which key called.
    account_key: Option<(String, String)>,
}

impl Scope {
    /// A scope with read, write and mint rights on `repos`, from the operator's settings.
    pub fn operator(repos: impl IntoIterator<Item = RepoId>) -> Self {
        Self {
            repos: repos.into_iter().collect(),
            write: true,
            mint: true,
            expires_at: None,
            credential: Credential::Operator,
            actor: "scoped-repo-mcp".to_string(),
            read_only_reason: "",
            no_mint_reason: "",
            account_key: None,
        }
    }

    /// The scope of a request with no credential, under `--allow-anonymous`: read and
    /// write on exactly the operator's `repos`, and never mint or revoke, since a
    /// token minted there would outlive the server and revoking would reach other
    /// agents' tokens.
    pub fn anonymous(repos: impl IntoIterator<Item = RepoId>) -> Self {
        Self {
            repos: repos.into_iter().collect(),
            write: true,
            mint: false,
            expires_at: None,
            credential: Credential::Anonymous,
            actor: "anonymous".to_string(),
            read_only_reason: "",
            no_mint_reason: "a session without a credential cannot create or revoke tokens",
            account_key: None,
        }
    }

    /// A scope from a repo token: read and write on its repos, narrowed to `upper` when
    /// the operator gave a repo list; tokens cannot mint tokens.
    pub fn from_token(
        token: String,
        name: &str,
        token_repos: &[RepoId],
        expires_at: Option<i64>,
        upper: &[RepoId],
    ) -> Self {
        let repos = token_repos
            .iter()
            .filter(|r| upper.is_empty() || upper.contains(r))
            .copied()
            .collect();
        Self {
            repos,
            write: true,
            mint: false,
            expires_at,
            credential: Credential::RepoToken(token),
            actor: if name.is_empty() {
                "repo token".to_string()
            } else {
                name.to_string()
            },
            read_only_reason: "",
            no_mint_reason: "a session authorized by a repo token cannot create or revoke tokens",
            account_key: None,
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

    /// Drop the write and mint rights.
    pub fn read_only(mut self) -> Self {
        self.write = false;
        self.mint = false;
        self.read_only_reason = "the server runs with --read-only";
        self
    }

    /// The repos in scope, sorted.
    pub fn repos(&self) -> impl Iterator<Item = &RepoId> {
        self.repos.iter()
    }

    /// Whether the scope holds no repo.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
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
        if self.repos.contains(repo) {
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
            "agent",
            &[id(1), id(2)],
            None,
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
        let s = Scope::from_token("t".into(), "", &[id(1)], Some(unix_now() + 100), &[]);
        assert!(s.max_ttl(3600) <= 100);
        assert_eq!(Scope::operator([id(1)]).max_ttl(3600), 3600);
    }
}
