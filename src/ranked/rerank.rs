//! A second look at the best few files of a ranking: files related to other strong
//! files (in the same directory, a test and the source it is named after, files the
//! history changed together) gain a share of those files' scores.
//!
//! A change touches files that belong together, so a file beside a strongly matching
//! one is more likely relevant than its own words say (the cluster hypothesis). Only
//! the best few files are looked at, so the cost per query is bounded whatever the
//! repository's size, and a file no query term reached is never lifted.

use super::role::Role;

/// How much each relation passes on, and how many of the best files take part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Related {
    /// Share of the best other file in the same directory.
    pub dir: f32,
    /// Share of the best source a test is named after that a test gains.
    pub pair: f32,
    /// Share of the best test named after it that a source gains.
    pub source_pair: f32,
    /// Share of the best files' scores, times how strongly the history ties the two.
    pub cochange: f32,
    /// How many of the best files are looked at.
    pub depth: usize,
    /// A paired file is raised to its share of its pair's score (when below it)
    /// instead of gaining that share on top of its own: a test then ranks near its
    /// source without passing it.
    pub floor: bool,
}

impl Related {
    /// Nothing passes on.
    pub fn none() -> Self {
        Self {
            dir: 0.0,
            pair: 0.0,
            source_pair: 0.0,
            cochange: 0.0,
            depth: 30,
            floor: false,
        }
    }

    fn pairs(&self) -> bool {
        self.pair > 0.0 || self.source_pair > 0.0
    }

    /// Whether any relation passes anything on.
    pub fn active(&self) -> bool {
        self.depth > 1 && (self.dir > 0.0 || self.pairs() || self.cochange > 0.0)
    }
}

/// One of the best files: its path, role and score.
pub struct Candidate<'a> {
    /// The file's path.
    pub path: &'a str,
    /// Its role, from the path.
    pub role: Role,
    /// Its score before any lift.
    pub score: f32,
}

/// How many of the best files pass on history ties (co-change is noisier than the
/// other relations: only the strongest few files spread it).
const COCHANGE_FROM: usize = 5;

/// The lift each candidate gains, in their order. `top` is best first; `tie(a, b)` is
/// how strongly the history ties `a` and `b`, from 0 to 1. The lifts are computed from
/// the scores before any lift, so the order of the candidates does not matter.
pub fn lifts(top: &[Candidate], k: &Related, tie: &dyn Fn(&str, &str) -> f32) -> Vec<f32> {
    let dirs: Vec<&str> = top.iter().map(|c| parent(c.path)).collect();
    // Each test's key and each source's last modules, once: the pairs are then
    // compared without allocating.
    let keys: Vec<Option<String>> = top
        .iter()
        .map(|c| {
            if k.pairs() && c.role == Role::Test {
                test_key(c.path)
            } else {
                None
            }
        })
        .collect();
    let tails: Vec<Vec<String>> = top
        .iter()
        .map(|c| {
            if k.pairs() && c.role == Role::Source {
                modules(c.path)
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut out = vec![0.0f32; top.len()];
    for (i, c) in top.iter().enumerate() {
        let (mut sib, mut paired, mut tied) = (0.0f32, 0.0f32, 0.0f32);
        let share = if c.role == Role::Test {
            k.pair
        } else {
            k.source_pair
        };
        for (j, o) in top.iter().enumerate() {
            if i == j {
                continue;
            }
            if k.dir > 0.0 && dirs[i] == dirs[j] {
                sib = sib.max(o.score);
            }
            if share > 0.0 && o.score > paired {
                let is_pair = match (&keys[i], &keys[j]) {
                    (Some(key), None) => names_source(key, &tails[j]),
                    (None, Some(key)) => names_source(key, &tails[i]),
                    _ => false,
                };
                if is_pair {
                    paired = o.score;
                }
            }
            if k.cochange > 0.0 && j < COCHANGE_FROM {
                tied += o.score * tie(o.path, c.path);
            }
        }
        let pair_lift = if k.floor {
            (share * paired - c.score).max(0.0)
        } else {
            share * paired
        };
        out[i] = k.dir * sib + pair_lift + k.cochange * tied;
    }
    out
}

/// The directory holding `path` ("" at the root).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Stems that say nothing of what a file holds: the module is its directory.
const GENERIC_STEMS: &[&str] = &["mod", "lib", "main", "index", "__init__", "init"];

/// What a test file is named after: its stem without `test`/`spec` markers, lower-case
/// (`tests/sync_mpsc.rs` → `sync_mpsc`; `testing/test_cacheprovider.py` →
/// `cacheprovider`; `router.test.ts` → `router`). None when nothing is left or the
/// stem is generic.
fn test_key(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or("").to_ascii_lowercase();
    if GENERIC_STEMS.contains(&stem.as_str()) {
        return None;
    }
    let parts: Vec<&str> = stem
        .split(['_', '-'])
        .filter(|p| !p.is_empty() && !matches!(*p, "test" | "tests" | "spec" | "specs"))
        .collect();
    (!parts.is_empty()).then(|| parts.join("_"))
}

/// The last three parts of a source's path, lower-case, without extensions and with a
/// generic stem dropped (`tokio/src/sync/mpsc/mod.rs` → `tokio`, `src`, `sync`,
/// `mpsc` cut to `src`, `sync`, `mpsc`).
fn modules(path: &str) -> Vec<String> {
    let mut comps: Vec<String> = path
        .split('/')
        .map(|c| {
            c.split('.')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
                .replace('-', "_")
        })
        .collect();
    if comps
        .last()
        .is_some_and(|s| GENERIC_STEMS.contains(&s.as_str()))
    {
        comps.pop();
    }
    let cut = comps.len().saturating_sub(3);
    comps.split_off(cut)
}

/// Whether a test named `key` is named after the source whose [`modules`] are `comps`:
/// the key is the source's module (its stem, or its directory for a generic stem),
/// that module under its parent's name (`sync_rwlock` and `sync/rwlock.rs`), ends with
/// `_` and it (`io_write_buf` and `io/util/write_buf.rs`), or names the source's
/// directory the same ways (a test of a whole module: `sync_mpsc` and
/// `sync/mpsc/chan.rs`).
fn names_source(key: &str, comps: &[String]) -> bool {
    let named = |i: usize| {
        let m = comps[i].as_str();
        if m.is_empty() {
            return false;
        }
        let Some(head) = key.strip_suffix(m) else {
            return false;
        };
        head.is_empty()
            || head.ends_with('_')
            || (i > 0 && head.strip_suffix('_') == Some(comps[i - 1].as_str()))
    };
    let n = comps.len();
    (n > 0 && named(n - 1)) || (n > 1 && named(n - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(path: &str, role: Role, score: f32) -> Candidate<'_> {
        Candidate { path, role, score }
    }

    fn no_ties(_: &str, _: &str) -> f32 {
        0.0
    }

    #[test]
    fn a_test_is_paired_with_the_source_it_is_named_after() {
        let key = |p| test_key(p).unwrap();
        let names_source = |k: &String, p: &str| names_source(k, &modules(p));
        assert!(names_source(
            &key("tokio/tests/sync_mpsc.rs"),
            "tokio/src/sync/mpsc/chan.rs"
        ));
        assert!(names_source(
            &key("tokio/tests/sync_mpsc.rs"),
            "tokio/src/sync/mpsc/mod.rs"
        ));
        assert!(names_source(
            &key("tokio/tests/sync_rwlock.rs"),
            "tokio/src/sync/rwlock.rs"
        ));
        assert!(names_source(
            &key("tokio/tests/udp.rs"),
            "tokio/src/net/udp.rs"
        ));
        assert!(names_source(
            &key("testing/test_cacheprovider.py"),
            "src/_pytest/cacheprovider.py"
        ));
        assert!(names_source(
            &key("src/router.test.ts"),
            "src/router/index.ts"
        ));
        assert!(!names_source(
            &key("tokio/tests/sync_mpsc.rs"),
            "tokio/src/sync/rwlock.rs"
        ));
        assert!(!names_source(
            &key("tokio/tests/rt_common.rs"),
            "tokio/src/runtime/mod.rs"
        ));
        assert_eq!(test_key("tests/mod.rs"), None);
        assert_eq!(test_key("tests/test.py"), None);
    }

    #[test]
    fn a_file_gains_a_share_of_its_best_sibling_and_nothing_from_elsewhere() {
        let top = [
            cand("src/sync/mutex.rs", Role::Source, 10.0),
            cand("src/sync/mod.rs", Role::Source, 2.0),
            cand("src/sync/notify.rs", Role::Source, 4.0),
            cand("src/net/tcp.rs", Role::Source, 8.0),
        ];
        let k = Related {
            dir: 0.5,
            ..Related::none()
        };
        let got = lifts(&top, &k, &no_ties);
        assert_eq!(got, vec![2.0, 5.0, 5.0, 0.0]);
    }

    #[test]
    fn a_test_and_its_source_lift_each_other_and_other_tests_gain_nothing() {
        let top = [
            cand("tokio/src/sync/rwlock.rs", Role::Source, 10.0),
            cand("tokio/tests/sync_mutex.rs", Role::Test, 3.0),
            cand("tokio/tests/sync_rwlock.rs", Role::Test, 2.0),
        ];
        let k = Related {
            pair: 0.1,
            source_pair: 0.1,
            ..Related::none()
        };
        let got = lifts(&top, &k, &no_ties);
        assert!((got[0] - 0.2).abs() < 1e-6, "{got:?}");
        assert_eq!(got[1], 0.0);
        assert!((got[2] - 1.0).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn a_floor_raises_a_test_toward_its_source_without_passing_it() {
        let top = [
            cand("tokio/src/sync/rwlock.rs", Role::Source, 10.0),
            cand("tokio/src/sync/mutex.rs", Role::Source, 6.0),
            cand("tokio/tests/sync_rwlock.rs", Role::Test, 2.0),
            cand("tokio/tests/sync_mutex.rs", Role::Test, 5.0),
        ];
        let k = Related {
            pair: 0.7,
            floor: true,
            ..Related::none()
        };
        let got = lifts(&top, &k, &no_ties);
        assert_eq!(got[..2], [0.0, 0.0]);
        assert!((got[2] - 5.0).abs() < 1e-5, "raised to 7: {got:?}");
        assert_eq!(got[3], 0.0, "already above 0.7 of its source's 6");
    }

    #[test]
    fn history_ties_pass_on_the_best_files_scores_by_their_strength() {
        let top = [
            cand("a.rs", Role::Source, 10.0),
            cand("b.rs", Role::Source, 4.0),
            cand("c.rs", Role::Source, 1.0),
        ];
        let tie = |x: &str, y: &str| {
            let mut p = [x, y];
            p.sort();
            if p == ["a.rs", "c.rs"] { 0.5 } else { 0.0 }
        };
        let k = Related {
            cochange: 0.2,
            ..Related::none()
        };
        let got = lifts(&top, &k, &tie);
        assert!((got[0] - 0.1).abs() < 1e-6, "{got:?}");
        assert_eq!(got[1], 0.0);
        assert!((got[2] - 1.0).abs() < 1e-6, "{got:?}");
        assert!(!Related::none().active());
    }
}
