//! Line search finds exactly the (path, line) pairs ripgrep finds, for a few dozen
//! patterns over a real corpus: this crate's own `src/` and the `regex` crates' sources
//! from the cargo registry, imported into a store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use scoped_repo_mcp::model::LineQuery;
use scoped_repo_mcp::search::LineSearcher;

use crate::common::Harness;

/// (pattern, regex, case-insensitive)
const PATTERNS: &[(&str, bool, bool)] = &[
    // Literals.
    ("fn ", false, false),
    ("pub fn new", false, false),
    ("Regex", false, false),
    ("unsafe", false, false),
    ("a.b(", false, false),
    ("::<", false, false),
    ("TODO", false, false),
    ("é", false, false),
    ("x", false, false),
    // Case-insensitive.
    ("regex", false, true),
    ("HIR", false, true),
    ("Σ", false, true),
    ("ſ", false, true),
    ("k", true, true),
    (r"\bunicode\b", true, true),
    // Classes.
    (r"[A-Z][a-z]+Error", true, false),
    (r"\d{3,}", true, false),
    (r"[[:upper:]]{5,}", true, false),
    (r"\p{Greek}+", true, false),
    (r"[^\x00-\x7F]", true, false),
    (r"\s+$", true, false),
    // Alternations.
    (r"foo|bar|baz", true, false),
    (r"impl|trait|struct", true, false),
    (r"Ok\(|Err\(", true, false),
    // Anchors.
    (r"^use ", true, false),
    (r"^\s*//", true, false),
    (r";$", true, false),
    (r"^$", true, false),
    (r"^#\[derive\(", true, false),
    // Word boundaries.
    (r"\bfn\s+\w+\(", true, false),
    (r"\bStr\b", true, false),
    (r"\bimpl\b.*\bfor\b", true, false),
    (r"(?-u:\b)é", true, false),
    (r"\w+ing\b", true, false),
    // Unicode and no literal at all.
    (r"\w{30,}", true, false),
    (r"[αβγδ]", true, false),
    (r"\x{1F600}|☃", true, false),
    (r"a*", true, false),
    (r"(\w+)\s*=\s*\1", false, false),
];

/// Patterns the trigram index cannot narrow but a stencil can (bytes at fixed distances,
/// checked before the regex runs): each must have one, or this list tests nothing new.
const STENCILED: &[(&str, bool, bool)] = &[
    (r"[A-Z]{4}_[A-Z]{4}", true, false),
    (r"[A-Z]{2,}_[A-Z]{2,}\b", true, false),
    (r"[0-9]{2}:[0-9]{2}", true, false),
    (r"[a-z]_[a-z]\(", true, false),
    (r"[a-z]\?[;)]", true, false),
    (r"[A-F0-9]{2}\\[a-z]", true, false),
    (r"(?i)[a-f]{2}_[0-9]", true, false),
    (r"\([a-z]\)", true, false),
    // Classes with members outside ASCII: stencils for ASCII text only.
    (r"\d{2}:\d{2}", true, false),
    (r"\w_\d", true, false),
    (r"[A-Z]{2}_[A-Z]{2}_[0-9]", true, true),
];

fn rg_present() {
    let found = Command::new("rg")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "ripgrep (`rg`) is not installed: this test compares search_repo with it. Install it (`apt-get install ripgrep`, `brew install ripgrep` or `cargo install ripgrep`); CI does so in .ci/run"
    );
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// This crate's `src/` plus every `regex*` crate in the registry, in one directory.
fn corpus(into: &Path) -> usize {
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &into.join("src"),
    );
    let mut crates = 0;
    if let Ok(indexes) = std::fs::read_dir(cargo_home().join("registry/src")) {
        for index in indexes.flatten() {
            for krate in std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = krate.file_name().to_string_lossy().into_owned();
                if name.starts_with("regex-") {
                    copy_tree(&krate.path(), &into.join(&name));
                    crates += 1;
                }
            }
        }
    }
    crates
}

fn rg_lines(dir: &Path, pattern: &str, regex: bool, insensitive: bool) -> BTreeSet<(String, u64)> {
    let mut cmd = Command::new("rg");
    // The walk the import makes: hidden files in, .gitignore honoured without a git
    // repo, nothing from a user's config.
    cmd.current_dir(dir)
        .args([
            "--no-config",
            "--hidden",
            "--no-require-git",
            "--no-messages",
        ])
        .args(["--line-number", "--no-heading", "--with-filename", "--null"])
        .args(["--color", "never"]);
    if !regex {
        cmd.arg("--fixed-strings");
    }
    if insensitive {
        cmd.arg("--ignore-case");
    }
    let out = cmd
        .arg("--regexp")
        .arg(pattern)
        .arg(".")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "rg failed on {pattern:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut set = BTreeSet::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let nul = line.iter().position(|&b| b == 0).expect("rg --null output");
        let path = String::from_utf8_lossy(&line[..nul]);
        let path = path.strip_prefix("./").unwrap_or(&path).to_string();
        let rest = &line[nul + 1..];
        let colon = rest.iter().position(|&b| b == b':').expect("line number");
        let n: u64 = std::str::from_utf8(&rest[..colon])
            .unwrap()
            .parse()
            .unwrap();
        set.insert((path, n));
    }
    set
}

#[test]
fn line_search_agrees_with_ripgrep_on_a_real_corpus() {
    rg_present();
    let h = Harness::new();
    // Every answer must be whole: a debug build on a loaded machine can take longer
    // than the default budget over this corpus, and a cut answer proves nothing.
    h.store
        .set_search_budget(std::time::Duration::from_secs(3600));
    let src = tempfile::tempdir().unwrap();
    let crates = corpus(src.path());
    assert!(
        crates > 0,
        "no regex-* crate sources found under {}/registry/src",
        cargo_home().display()
    );
    let report = h
        .store
        .import_dir(src.path(), BTreeMap::new(), &|_| {})
        .unwrap();
    assert!(report.files > 100, "corpus too small: {report:?}");
    let mut failures = Vec::new();
    let mut total = 0;
    for &(pattern, regex, insensitive) in PATTERNS.iter().chain(STENCILED) {
        let query = LineQuery {
            pattern: pattern.to_string(),
            regex,
            case_sensitive: !insensitive,
            path_glob: None,
            visible: None,
            max_results: 10_000_000,
            context_lines: 0,
        };
        if STENCILED.contains(&(pattern, regex, insensitive)) {
            let searcher = LineSearcher::new(&query).expect("compiles");
            assert!(searcher.stencil().is_some(), "{pattern:?} has no stencil");
        }
        let ours: BTreeSet<(String, u64)> = match h.store.search_lines(&report.repo_id, &query) {
            Ok(r) => {
                assert!(!r.truncated, "{pattern:?} was truncated");
                r.hits.into_iter().map(|h| (h.path, h.line)).collect()
            }
            Err(e) => {
                failures.push(format!("{pattern:?}: refused: {e}"));
                continue;
            }
        };
        let theirs = rg_lines(src.path(), pattern, regex, insensitive);
        total += theirs.len();
        if ours != theirs {
            let only_ours: Vec<_> = ours.difference(&theirs).take(5).collect();
            let only_rg: Vec<_> = theirs.difference(&ours).take(5).collect();
            failures.push(format!(
                "{pattern:?} (regex {regex}, -i {insensitive}): {} ours vs {} rg; only ours {only_ours:?}; only rg {only_rg:?}",
                ours.len(),
                theirs.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements with rg:\n{}",
        failures.join("\n")
    );
    assert!(
        total > 10_000,
        "the patterns matched too little to prove much: {total}"
    );
}
