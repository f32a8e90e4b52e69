//! Checking a stored repo against the store's own rules, for `repo check`: every commit
//! of `main`'s history as a push's commits are checked, and the objects that history
//! does not reference counted (they were never checked, and a repo keeps none on
//! purpose).

use git2::Repository;

use super::push::{HistoryCheck, HistoryRules};
use super::{BRANCH_REF, Store, StoreError, git};
use crate::model::RepoId;

/// What checking one repo against the store's rules found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// The first commit of `main` that breaks a rule, in words; `None`: none does.
    pub broken: Option<String>,
    /// How many objects no commit of `main` references.
    pub unreferenced: usize,
}

impl Store {
    /// Check every commit of repo `id`'s `main`, oldest first, under the rules a push
    /// obeys (without a push's size cap on the whole), and count the objects outside
    /// that history.
    pub fn check_rules(&self, id: &RepoId) -> Result<RuleReport, StoreError> {
        let dir = self.git_dir(id);
        let repo = Repository::open_bare(&dir).map_err(git::git_err)?;
        let head = repo.refname_to_id(BRANCH_REF).map_err(git::git_err)?;
        let mut check = HistoryCheck::new(&repo, None, HistoryRules::audit(&self.limits))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let broken = check.history(head, None).err().map(|e| e.to_string());
        let unreferenced = if broken.is_none() {
            check
                .count_unreferenced(&dir.join("objects"))
                .map_err(|e| StoreError::Invalid(e.to_string()))?
        } else {
            0
        };
        Ok(RuleReport {
            broken,
            unreferenced,
        })
    }
}
