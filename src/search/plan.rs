//! What a pattern needs of a file before it can match there: a boolean query over
//! trigrams (three-byte substrings), derived from the pattern's syntax tree in the
//! manner of Russ Cox's codesearch.
//!
//! The query is a necessary condition, never a sufficient one: a file it rejects cannot
//! hold a match, a file it accepts still goes through the regex. Trigrams are ASCII
//! case-folded here and in the index, so one index serves case-sensitive and
//! case-insensitive searches alike, and never span a line break, since a line search
//! never matches one.

use std::collections::BTreeSet;

use regex_syntax::hir::{Class, Hir, HirKind};

/// Most strings a set of exact matches may hold before it is turned into a query; past
/// it the cross products of concatenations grow faster than they narrow.
const MAX_SET: usize = 64;
/// Most characters a class may hold and still be enumerated (`[abc]`, `(?i)k`).
const MAX_CLASS: u32 = 16;

/// A condition on the trigrams of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrigramQuery {
    /// Every file qualifies: the index cannot narrow this pattern.
    All,
    /// The file holds this (case-folded) trigram.
    Trigram(u32),
    /// Every sub-condition holds.
    And(Vec<TrigramQuery>),
    /// At least one sub-condition holds.
    Or(Vec<TrigramQuery>),
}

/// ASCII case folding, the one the index applies to every byte.
pub fn fold(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

/// Pack three folded bytes into the index's key.
pub fn trigram(a: u8, b: u8, c: u8) -> u32 {
    (u32::from(fold(a)) << 16) | (u32::from(fold(b)) << 8) | u32::from(fold(c))
}

impl TrigramQuery {
    fn and(self, other: TrigramQuery) -> TrigramQuery {
        match (self, other) {
            (TrigramQuery::All, q) | (q, TrigramQuery::All) => q,
            (TrigramQuery::And(mut a), TrigramQuery::And(b)) => {
                a.extend(b);
                TrigramQuery::And(a)
            }
            (TrigramQuery::And(mut a), q) | (q, TrigramQuery::And(mut a)) => {
                a.push(q);
                TrigramQuery::And(a)
            }
            (a, b) => TrigramQuery::And(vec![a, b]),
        }
    }

    fn or(parts: Vec<TrigramQuery>) -> TrigramQuery {
        if parts.is_empty() || parts.contains(&TrigramQuery::All) {
            return TrigramQuery::All;
        }
        let mut parts = parts;
        if parts.len() == 1 {
            return parts.pop().unwrap_or(TrigramQuery::All);
        }
        TrigramQuery::Or(parts)
    }

    /// The files must contain at least one of `strings` (each as a run of trigrams).
    fn any_of(strings: &BTreeSet<Vec<u8>>) -> TrigramQuery {
        let mut parts = Vec::with_capacity(strings.len());
        for s in strings {
            if s.len() < 3 {
                // A string this short says nothing a trigram can check.
                return TrigramQuery::All;
            }
            let tris: BTreeSet<u32> = s.windows(3).map(|w| trigram(w[0], w[1], w[2])).collect();
            parts.push(
                tris.into_iter()
                    .map(TrigramQuery::Trigram)
                    .fold(TrigramQuery::All, TrigramQuery::and),
            );
        }
        TrigramQuery::or(parts)
    }
}

/// What is known about the strings a sub-pattern matches.
struct Info {
    /// Every string it can match, when that set is small; case-folded.
    exact: Option<BTreeSet<Vec<u8>>>,
    /// A condition that holds besides `exact`.
    query: TrigramQuery,
}

impl Info {
    fn exact(set: BTreeSet<Vec<u8>>) -> Self {
        Info {
            exact: Some(set),
            query: TrigramQuery::All,
        }
    }

    fn empty_string() -> Self {
        Self::exact(BTreeSet::from([Vec::new()]))
    }

    fn anything() -> Self {
        Info {
            exact: None,
            query: TrigramQuery::All,
        }
    }

    /// The whole condition a match of this sub-pattern imposes.
    fn into_query(self) -> TrigramQuery {
        match self.exact {
            Some(set) => self.query.and(TrigramQuery::any_of(&set)),
            None => self.query,
        }
    }
}

fn class_strings(class: &Class) -> Option<BTreeSet<Vec<u8>>> {
    let mut out = BTreeSet::new();
    match class {
        Class::Unicode(c) => {
            let size: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if size > MAX_CLASS {
                return None;
            }
            for r in c.ranges() {
                for ch in r.start()..=r.end() {
                    // A line break never takes part in a line match.
                    if ch == '\n' {
                        continue;
                    }
                    let mut buf = [0u8; 4];
                    out.insert(
                        ch.encode_utf8(&mut buf)
                            .bytes()
                            .map(fold)
                            .collect::<Vec<u8>>(),
                    );
                }
            }
        }
        Class::Bytes(c) => {
            let size: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if size > MAX_CLASS {
                return None;
            }
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    if b != b'\n' {
                        out.insert(vec![fold(b)]);
                    }
                }
            }
        }
    }
    Some(out)
}

fn cross(a: &BTreeSet<Vec<u8>>, b: &BTreeSet<Vec<u8>>) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.insert(s);
        }
    }
    out
}

fn analyze(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::empty_string(),
        HirKind::Literal(lit) => Info::exact(BTreeSet::from([lit
            .0
            .iter()
            .copied()
            .map(fold)
            .collect::<Vec<u8>>()])),
        HirKind::Class(class) => match class_strings(class) {
            Some(set) => Info::exact(set),
            None => Info::anything(),
        },
        HirKind::Capture(cap) => analyze(&cap.sub),
        HirKind::Repetition(rep) => {
            if rep.min == 0 {
                return Info::anything();
            }
            let sub = analyze(&rep.sub);
            if rep.min == 1 && rep.max == Some(1) {
                return sub;
            }
            // At least one copy of the sub-pattern appears in every match.
            Info {
                exact: None,
                query: sub.into_query(),
            }
        }
        HirKind::Concat(subs) => {
            let mut running: Option<BTreeSet<Vec<u8>>> = Some(BTreeSet::from([Vec::new()]));
            let mut query = TrigramQuery::All;
            let mut exact_so_far = true;
            for sub in subs {
                let info = analyze(sub);
                query = query.and(info.query);
                match (running.take(), info.exact) {
                    (Some(run), Some(set)) if run.len() * set.len() <= MAX_SET => {
                        running = Some(cross(&run, &set));
                    }
                    (Some(run), Some(set)) => {
                        exact_so_far = false;
                        query = query.and(TrigramQuery::any_of(&run));
                        running = Some(set);
                    }
                    (Some(run), None) => {
                        exact_so_far = false;
                        query = query.and(TrigramQuery::any_of(&run));
                    }
                    (None, set) => running = set,
                }
            }
            if exact_so_far {
                Info {
                    exact: running,
                    query,
                }
            } else {
                if let Some(run) = running {
                    query = query.and(TrigramQuery::any_of(&run));
                }
                Info { exact: None, query }
            }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            let all_exact = infos
                .iter()
                .all(|i| i.exact.is_some() && i.query == TrigramQuery::All);
            let total: usize = infos
                .iter()
                .map(|i| i.exact.as_ref().map_or(0, BTreeSet::len))
                .sum();
            if all_exact && total <= MAX_SET {
                let mut set = BTreeSet::new();
                for i in infos {
                    set.extend(i.exact.unwrap_or_default());
                }
                Info::exact(set)
            } else {
                Info {
                    exact: None,
                    query: TrigramQuery::or(infos.into_iter().map(Info::into_query).collect()),
                }
            }
        }
    }
}

/// The syntax tree of a line-search pattern (a regex when `regex`, else a literal),
/// parsed the way the matcher parses it (Unicode, multi-line anchors, optional case
/// folding); `None` when it does not parse (the matcher reports the error itself).
pub fn parse(pattern: &str, regex: bool, case_insensitive: bool) -> Option<Hir> {
    let pattern = if regex {
        pattern.to_string()
    } else {
        regex_syntax::escape(pattern)
    };
    regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .multi_line(true)
        .build()
        .parse(&pattern)
        .ok()
}

/// The trigram condition of a line-search pattern (see [`parse`]). A pattern that does
/// not parse yields [`TrigramQuery::All`].
pub fn plan(pattern: &str, regex: bool, case_insensitive: bool) -> TrigramQuery {
    match parse(pattern, regex, case_insensitive) {
        Some(hir) => plan_of(&hir),
        None => TrigramQuery::All,
    }
}

/// The trigram condition of a parsed pattern.
pub fn plan_of(hir: &Hir) -> TrigramQuery {
    analyze(hir).into_query()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TrigramQuery {
        let b = s.as_bytes();
        TrigramQuery::Trigram(trigram(b[0], b[1], b[2]))
    }

    #[test]
    fn literal_needs_each_of_its_trigrams() {
        assert_eq!(
            plan("abcd", false, false),
            TrigramQuery::And(vec![t("abc"), t("bcd")])
        );
        assert_eq!(plan("ab", false, false), TrigramQuery::All);
    }

    #[test]
    fn case_insensitive_folds_to_the_same_trigrams() {
        assert_eq!(plan("ABC", false, true), t("abc"));
        assert_eq!(plan("abc", false, true), t("abc"));
    }

    #[test]
    fn alternation_is_an_or_and_optional_parts_drop_out() {
        assert_eq!(
            plan("foo|bar", true, false),
            TrigramQuery::Or(vec![t("bar"), t("foo")])
        );
        assert_eq!(plan("foo|ba", true, false), TrigramQuery::All);
        assert_eq!(plan("x*abc", true, false), t("abc"));
        assert_eq!(plan(r"\w+", true, false), TrigramQuery::All);
    }

    #[test]
    fn inexact_parts_split_the_literal_runs() {
        assert_eq!(
            plan(r"abc\w+def", true, false),
            TrigramQuery::And(vec![t("abc"), t("def")])
        );
        // `[a-c]` is small enough to enumerate: "fn a(", "fn b(", "fn c(" are all exact.
        let q = plan(r"fn [a-c]\(", true, false);
        assert!(
            matches!(q, TrigramQuery::Or(ref parts) if parts.len() == 3),
            "{q:?}"
        );
    }

    #[test]
    fn a_class_with_a_line_break_never_requires_it() {
        assert_eq!(plan("ab[\\nc]", true, false), t("abc"));
    }
}
