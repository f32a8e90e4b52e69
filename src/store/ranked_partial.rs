//! The answer to a ranked question while its index is still being built: what the line
//! index can say at once. Each of the question's terms (as the ranked index splits and
//! stems them) is searched for as a case-insensitive literal, and files are ordered by
//! how many distinct terms they hold, then by how many lines match; each comes with the
//! lines around its line holding the most terms. It is marked partial, so a caller
//! knows to ask again for the ranking.

use std::collections::{BTreeMap, HashSet};

use super::{Store, StoreError};
use crate::model::{IndexBuilding, LineQuery, RankedHit, RankedQuery, RankedResults, RepoId};
use crate::rules::MAX_SEARCH_RESULTS;

/// Most terms of a question searched for: each is a line search of its own.
const MAX_TERMS: usize = 8;
/// Lines of context on each side of a file's best line.
const CONTEXT: usize = 3;
/// Terms shorter than this match nearly every file as a substring.
const MIN_TERM: usize = 3;

/// One file's matches: its lines holding any term, with which terms each holds.
#[derive(Default)]
struct FileMatches {
    /// Line number to (terms held as bits, the line with its context).
    lines: BTreeMap<u64, (u32, Vec<String>, u64)>,
}

impl FileMatches {
    fn terms(&self) -> u32 {
        self.lines.values().fold(0, |acc, (bits, _, _)| acc | bits)
    }

    /// The line holding the most distinct terms (the first of equals), its context
    /// and its first line's number.
    fn best(&self) -> Option<(&Vec<String>, u64)> {
        self.lines
            .iter()
            .max_by(|a, b| {
                a.1.0
                    .count_ones()
                    .cmp(&b.1.0.count_ones())
                    .then(b.0.cmp(a.0))
            })
            .map(|(_, (_, text, first))| (text, *first))
    }
}

/// The terms of `text` a partial answer searches for: distinct, long enough, in order.
fn search_terms(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    crate::ranked::terms::terms(text)
        .into_iter()
        .filter(|t| t.chars().count() >= MIN_TERM && seen.insert(t.clone()))
        .take(MAX_TERMS)
        .collect()
}

impl Store {
    /// Repo `id`'s files best matching `query`'s terms by line search, as a partial
    /// ranked answer while its index is `building`.
    pub(super) fn partial_ranked(
        &self,
        id: &RepoId,
        query: &RankedQuery,
        building: IndexBuilding,
    ) -> Result<RankedResults, StoreError> {
        let terms = search_terms(&query.text);
        let mut files: BTreeMap<String, FileMatches> = BTreeMap::new();
        let mut head = String::new();
        let mut searched = 0;
        let mut cut = false;
        for (i, term) in terms.iter().enumerate() {
            let found = self.search_lines(
                id,
                &LineQuery {
                    pattern: term.clone(),
                    regex: false,
                    case_sensitive: false,
                    path_glob: query.path_glob.clone(),
                    visible: query.visible.clone(),
                    max_results: MAX_SEARCH_RESULTS,
                    context_lines: CONTEXT,
                },
            )?;
            head = found.head;
            searched = searched.max(found.files_searched);
            cut |= found.truncated;
            for hit in found.hits {
                let first = hit.line - hit.before.len() as u64;
                let entry = files
                    .entry(hit.path)
                    .or_default()
                    .lines
                    .entry(hit.line)
                    .or_insert_with(|| {
                        let mut text = hit.before;
                        text.push(hit.text);
                        text.extend(hit.after);
                        (0, text, first)
                    });
                entry.0 |= 1 << i;
            }
        }
        if head.is_empty() {
            // No term to search for: the head still names what was asked of.
            head = self.head(id)?;
        }
        let mut ranked: Vec<(&String, &FileMatches)> = files.iter().collect();
        ranked.sort_by(|a, b| {
            b.1.terms()
                .count_ones()
                .cmp(&a.1.terms().count_ones())
                .then(b.1.lines.len().cmp(&a.1.lines.len()))
                .then(a.0.cmp(b.0))
        });
        let mut budget = query.token_limit.saturating_mul(4);
        let mut hits = Vec::new();
        let mut truncated = false;
        for (path, m) in ranked.into_iter().take(query.max_results) {
            let Some((lines, first)) = m.best() else {
                continue;
            };
            let snippet = lines.join("\n");
            if snippet.len() > budget {
                truncated = true;
                break;
            }
            budget -= snippet.len();
            hits.push(RankedHit {
                path: path.clone(),
                // Distinct terms held, then a fraction for the lines matching.
                score: m.terms().count_ones() as f32
                    + m.lines.len() as f32 / (m.lines.len() as f32 + 1.0),
                start_line: first,
                end_line: first + lines.len() as u64 - 1,
                snippet,
                role: crate::ranked::role::role(path).name().to_string(),
            });
        }
        tracing::debug!(repo = %id, terms = terms.len(), files = files.len(), cut, "partial ranked answer");
        Ok(RankedResults {
            head,
            hits,
            truncated,
            files_indexed: searched,
            partial: Some(building),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_searches_its_distinct_content_terms() {
        let t = search_terms("Where is the retry backoff computed for retries?");
        assert!(t.contains(&"retry".to_string()), "{t:?}");
        assert!(t.iter().any(|w| w.starts_with("backoff")), "{t:?}");
        assert!(!t.iter().any(|w| w == "the" || w == "is" || w == "where"));
        let distinct: HashSet<_> = t.iter().collect();
        assert_eq!(distinct.len(), t.len());
    }
}
