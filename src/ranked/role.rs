//! What part a file plays in its repository (source, test, documentation, benchmark,
//! example, generated or other), read from its path alone, and how much each role is
//! worth to a question in words.
//!
//! A question about behaviour ("why does a sleep of a few microseconds take a
//! millisecond") is answered by the source that behaves so; tests, docs and benchmarks
//! repeat the same words (they exercise and describe that source) and, being many and
//! wordy, outrank it on words alone. So every role but source has a prior below one,
//! lifted back to one when the question asks for that role in words ("is there an
//! example of …", "what do the docs say …", "which test covers …").

/// A file's role in its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Code the project ships.
    Source,
    /// Tests, their fixtures and data.
    Test,
    /// Prose: documentation, guides, changelogs, READMEs.
    Docs,
    /// Benchmarks.
    Bench,
    /// Examples and demos.
    Example,
    /// Lock files, minified bundles, vendored or generated code.
    Generated,
    /// Configuration and build files, CI: neither code nor prose.
    Other,
}

impl Role {
    /// The role's name as results show it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Test => "test",
            Role::Docs => "docs",
            Role::Bench => "bench",
            Role::Example => "example",
            Role::Generated => "generated",
            Role::Other => "other",
        }
    }
}

const TEST_DIRS: &[&str] = &[
    "test",
    "tests",
    "testing",
    "__tests__",
    "spec",
    "specs",
    "testdata",
    "test_data",
    "fixtures",
    "fuzz",
];
const DOC_DIRS: &[&str] = &["doc", "docs", "documentation", "guide", "book", "man"];
const BENCH_DIRS: &[&str] = &["bench", "benches", "benchmark", "benchmarks"];
const EXAMPLE_DIRS: &[&str] = &["example", "examples", "samples", "demo", "demos"];
const GENERATED_DIRS: &[&str] = &["vendor", "third_party", "node_modules", "dist", "generated"];
/// Directories of build and CI scripts, neither the product nor its tests.
const OTHER_DIRS: &[&str] = &["ci"];
const PROSE_EXTS: &[&str] = &["md", "rst", "txt", "adoc", "markdown", "rdoc", "org"];
const CODE_EXTS: &[&str] = &[
    "rs", "py", "pyi", "go", "c", "h", "cc", "cpp", "hpp", "cxx", "java", "kt", "scala", "js",
    "jsx", "mjs", "cjs", "ts", "tsx", "rb", "php", "cs", "swift", "m", "mm", "lua", "pl", "ex",
    "exs", "erl", "hs", "ml", "clj", "dart", "zig", "nim", "jl", "r", "sh", "bash", "vue",
    "svelte", "sql", "proto",
];
const LOCK_FILES: &[&str] = &[
    "cargo.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "gemfile.lock",
    "go.sum",
    "composer.lock",
    "uv.lock",
    "bun.lockb",
];

/// The role a directory named with several words gives the code under it, by one of
/// its words (`tests-integration/`, `runtime-tests/`, `stress_test/`, `bench-utils/`):
/// projects name their test crates and suites that way, and the code in them exercises
/// the product. Only code that would otherwise be source is judged so (an example named
/// `testing-websockets` stays an example, a README under `tests-build/` prose).
fn role_of_words(dir: &str) -> Option<Role> {
    if !dir.contains(['-', '_']) {
        return None;
    }
    dir.split(['-', '_']).find_map(|w| match w {
        "test" | "tests" | "testing" | "fuzz" => Some(Role::Test),
        "bench" | "benches" | "benchmark" | "benchmarks" => Some(Role::Bench),
        "example" | "examples" => Some(Role::Example),
        _ => None,
    })
}

/// The role of the file at `path`, from its directories, name and extension.
pub fn role(path: &str) -> Role {
    let lower = path.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('/').collect();
    let name = parts.pop().unwrap_or("");
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (name, ""),
    };
    if LOCK_FILES.contains(&name)
        || ext == "lock"
        || stem.ends_with(".min")
        || parts.iter().any(|d| GENERATED_DIRS.contains(d))
    {
        return Role::Generated;
    }
    let in_dir = |dirs: &[&str]| parts.iter().any(|d| dirs.contains(d));
    if in_dir(TEST_DIRS)
        || stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || stem.ends_with(".test")
        || stem.ends_with(".spec")
        || stem.ends_with("_spec")
        || stem == "conftest"
        || stem == "tests"
    {
        return Role::Test;
    }
    if in_dir(BENCH_DIRS) || stem.starts_with("bench_") || stem.ends_with("_bench") {
        return Role::Bench;
    }
    if in_dir(EXAMPLE_DIRS) {
        return Role::Example;
    }
    if PROSE_EXTS.contains(&ext) || in_dir(DOC_DIRS) && !CODE_EXTS.contains(&ext) {
        return Role::Docs;
    }
    if in_dir(DOC_DIRS) {
        // Code under a docs directory is mostly snippets and doc tooling.
        return Role::Docs;
    }
    // Tool configuration written as code: `vite.config.ts`, `eslint.config.mjs`.
    if parts
        .first()
        .is_some_and(|d| d.starts_with('.') || OTHER_DIRS.contains(d))
        || !CODE_EXTS.contains(&ext)
        || stem.ends_with(".config")
    {
        return Role::Other;
    }
    parts
        .iter()
        .find_map(|d| role_of_words(d))
        .unwrap_or(Role::Source)
}

/// Words in a question that ask for a role other than source, by their stem as
/// [`super::terms`] makes it.
fn asks_for(role: Role, word: &str) -> bool {
    match role {
        Role::Test => matches!(word, "test" | "tests" | "testsuite" | "regression"),
        Role::Docs => matches!(
            word,
            "doc" | "docs" | "documentation" | "documented" | "document" | "tutorial" | "guide"
        ),
        Role::Bench => matches!(word, "benchmark" | "benchmarks" | "bench" | "perf"),
        Role::Example => matches!(word, "example" | "examples" | "demo" | "sample"),
        _ => false,
    }
}

/// How much each role counts for one question: a factor per role, one for source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priors {
    factors: [f32; 7],
}

impl Priors {
    /// No prior: every role counts one.
    pub fn none() -> Self {
        Self { factors: [1.0; 7] }
    }

    /// The priors for `query`: `base` for every role but source, one for a role the
    /// question names in words.
    pub fn for_query(query: &str, base: &RolePriors) -> Self {
        let mut factors = [
            1.0,
            base.test,
            base.docs,
            base.bench,
            base.example,
            base.generated,
            base.other,
        ];
        for w in query
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = w.to_ascii_lowercase();
            for (i, r) in [Role::Test, Role::Docs, Role::Bench, Role::Example]
                .into_iter()
                .enumerate()
            {
                if asks_for(r, &w) {
                    factors[i + 1] = factors[i + 1].max(base.asked);
                }
            }
        }
        Self { factors }
    }

    /// The factor for `role`.
    pub fn factor(&self, role: Role) -> f32 {
        self.factors[match role {
            Role::Source => 0,
            Role::Test => 1,
            Role::Docs => 2,
            Role::Bench => 3,
            Role::Example => 4,
            Role::Generated => 5,
            Role::Other => 6,
        }]
    }
}

/// The prior of each role but source (which counts one), before the question is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolePriors {
    /// Tests.
    pub test: f32,
    /// Documentation.
    pub docs: f32,
    /// Benchmarks.
    pub bench: f32,
    /// Examples.
    pub example: f32,
    /// Generated and vendored files.
    pub generated: f32,
    /// Configuration, build and CI files.
    pub other: f32,
    /// A role the question names in words.
    pub asked: f32,
}

impl Default for RolePriors {
    /// Round numbers checked on questions in words over three repositories and on two
    /// repositories' commit messages (see `BENCHMARKS.md`). Tests stay close to source
    /// (0.8): a change to code usually changes its test too, and a search for where to
    /// make a change should find both; prose, benchmarks and build files fall further.
    fn default() -> Self {
        Self {
            test: 0.8,
            docs: 0.4,
            bench: 0.3,
            example: 0.5,
            generated: 0.2,
            other: 0.5,
            asked: 0.7,
        }
    }
}

impl RolePriors {
    /// Every role counts one: ranking by words alone.
    pub const NONE: RolePriors = RolePriors {
        test: 1.0,
        docs: 1.0,
        bench: 1.0,
        example: 1.0,
        generated: 1.0,
        other: 1.0,
        asked: 1.0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_paths() {
        for (p, r) in [
            ("src/flask/app.py", Role::Source),
            ("src/_pytest/python.py", Role::Source),
            ("src/_pytest/pytester.py", Role::Source),
            ("testing/test_collection.py", Role::Test),
            ("tests/test_basic.py", Role::Test),
            ("axum/src/routing/tests/nest.rs", Role::Test),
            ("tokio/src/runtime/tests/loom_pool.rs", Role::Test),
            ("pkg/server_test.go", Role::Test),
            ("web/app.spec.ts", Role::Test),
            ("docs/deploying/proxy_fix.rst", Role::Docs),
            ("axum/src/docs/middleware.md", Role::Docs),
            ("README.md", Role::Docs),
            ("CHANGES.rst", Role::Docs),
            ("doc/en/conf.py", Role::Docs),
            ("benches/sync_mpsc.rs", Role::Bench),
            ("examples/hello-world/src/main.rs", Role::Example),
            ("Cargo.lock", Role::Generated),
            ("static/jquery.min.js", Role::Generated),
            ("Cargo.toml", Role::Other),
            (".github/workflows/ci.yml", Role::Other),
            ("tox.ini", Role::Other),
            ("tests-integration/src/bin/test-cat.rs", Role::Test),
            ("tests-build/src/lib.rs", Role::Test),
            ("runtime-tests/deno/middleware.test.tsx", Role::Test),
            ("runtime-tests/lambda/mock.ts", Role::Test),
            ("stress-test/src/main.rs", Role::Test),
            ("tokio/fuzz/fuzz_targets/fuzz_linked_list.rs", Role::Test),
            ("integration_tests/src/lib.rs", Role::Test),
            ("bench-utils/src/lib.rs", Role::Bench),
            ("axum/src/test_helpers/mod.rs", Role::Test),
            ("examples/testing-websockets/src/main.rs", Role::Example),
            ("tests-build/README.md", Role::Docs),
            ("target-specs/README.md", Role::Docs),
            ("ci/utils.sh", Role::Other),
            ("vitest.config.ts", Role::Other),
            ("src/config.ts", Role::Source),
            ("bun.lock", Role::Generated),
            ("flake.lock", Role::Generated),
            ("src/testing_utils/mod.rs", Role::Test),
            // Words inside a one-word directory name do not count.
            ("src/contest/mod.rs", Role::Source),
            ("tools/perf/builtin-bench.c", Role::Source),
            ("src/latest/mod.rs", Role::Source),
        ] {
            assert_eq!(role(p), r, "{p}");
        }
    }

    #[test]
    fn a_role_named_in_the_question_is_lifted() {
        let base = RolePriors {
            test: 0.5,
            docs: 0.5,
            bench: 0.5,
            example: 0.5,
            generated: 0.5,
            other: 0.5,
            asked: 1.0,
        };
        let p = Priors::for_query("Is there an example of a streaming body?", &base);
        assert_eq!(p.factor(Role::Example), 1.0);
        assert_eq!(p.factor(Role::Docs), 0.5);
        assert_eq!(p.factor(Role::Source), 1.0);
    }
}
