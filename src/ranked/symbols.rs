//! Where definitions are: per-language regular expressions that find the names a file
//! defines (functions, classes, types, headings), and the lines they start on, which
//! also serve as the boundaries of the structure-aware chunks snippets are cut from.

use std::sync::LazyLock;

use regex::Regex;

/// The family of syntax a file is written in, judged by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Python,
    Rust,
    CLike,
    Go,
    Script,
    Ruby,
    Markdown,
    Rst,
    Other,
}

fn family(path: &str) -> Family {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "py" | "pyi" | "pyx" => Family::Python,
        "rs" => Family::Rust,
        "c" | "h" | "cc" | "cpp" | "cxx" | "hpp" | "hh" | "java" | "kt" | "kts" | "cs"
        | "scala" | "swift" | "m" | "mm" => Family::CLike,
        "go" => Family::Go,
        "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "php" | "lua" | "dart" => Family::Script,
        "rb" | "rake" | "ex" | "exs" => Family::Ruby,
        "md" | "markdown" => Family::Markdown,
        "rst" | "txt" => Family::Rst,
        _ => Family::Other,
    }
}

/// A definition pattern, compiled twice: as written, and without Unicode classes for
/// lines that are all ASCII. On such a line the two find the same names (`\w` and `\s`
/// hold no other ASCII character with Unicode than without), but the second is a far
/// smaller automaton: finding a match's name costs a fraction as much.
struct Pattern {
    unicode: Regex,
    ascii: regex::bytes::Regex,
}

fn re(s: &str) -> Pattern {
    Pattern {
        unicode: Regex::new(s).expect("built-in definition pattern compiles"),
        ascii: regex::bytes::RegexBuilder::new(s)
            .unicode(false)
            .build()
            .expect("built-in definition pattern compiles without Unicode"),
    }
}

impl Pattern {
    /// Where the name of the definition on `line` is: its first group that took part.
    fn name(&self, line: &str, ascii_apart: bool) -> Option<std::ops::Range<usize>> {
        if ascii_apart && line.is_ascii() {
            let c = self.ascii.captures(line.as_bytes())?;
            c.iter().skip(1).flatten().next().map(|m| m.range())
        } else {
            let c = self.unicode.captures(line)?;
            c.iter().skip(1).flatten().next().map(|m| m.range())
        }
    }
}

static PYTHON: LazyLock<Pattern> =
    LazyLock::new(|| re(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)"));
static RUST: LazyLock<Pattern> = LazyLock::new(|| {
    re(
        r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern\s+\S+)\s+)*(?:fn|struct|enum|trait|mod|type|union|static|const|macro_rules!)\s+([A-Za-z_]\w*)|^\s*impl(?:<[^>]*>)?\s+(?:[\w:]+(?:<[^>]*>)?\s+for\s+)?([A-Za-z_][\w:]*)",
    )
});
static CLIKE: LazyLock<Pattern> = LazyLock::new(|| {
    re(
        r"^\s*(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data|inline|virtual|override|async|export|typedef)\s+)*(?:class|struct|interface|enum|union|record|object|namespace|fun|func|protocol|extension)\s+([A-Za-z_]\w*)|^\s*#define\s+([A-Za-z_]\w*)|^(?:[A-Za-z_][\w:<>,*&\s]*\s)?\**([A-Za-z_]\w*)\s*\([^;]*$|^\s+(?:(?:public|private|protected|static|final|abstract|synchronized|override|virtual)\s+)+[\w<>\[\],.?\s]+\s([A-Za-z_]\w*)\s*\(",
    )
});
static GO: LazyLock<Pattern> =
    LazyLock::new(|| re(r"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)|^\s*type\s+([A-Za-z_]\w*)"));
static SCRIPT: LazyLock<Pattern> = LazyLock::new(|| {
    re(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\s*\*?|class|interface|enum|type|namespace)\s+([A-Za-z_$][\w$]*)|^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:function|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)|^\s+(?:(?:static|async|public|private|protected|get|set)\s+)*([A-Za-z_$][\w$]*)\s*\([^)]*\)\s*\{",
    )
});
static RUBY: LazyLock<Pattern> = LazyLock::new(|| {
    re(r"^\s*(?:def\s+(?:self\.)?|class\s+|module\s+|defmodule\s+|defp?\s+)([A-Za-z_][\w.?!]*)")
});
static MARKDOWN: LazyLock<Pattern> = LazyLock::new(|| re(r"^#{1,6}\s+(.+)$"));
static OTHER: LazyLock<Pattern> = LazyLock::new(|| {
    re(
        r"^\s*(?:def|class|fn|func|function|struct|enum|trait|interface|module|sub|proc)\s+([A-Za-z_]\w*)",
    )
});

/// A definition: the name and its 0-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The defined name (or heading text).
    pub name: String,
    /// 0-based line the definition starts on.
    pub line: usize,
    /// Indentation of that line, in bytes: top-level definitions have 0.
    pub indent: usize,
}

/// Every definition in `text`, in line order.
pub fn definitions(path: &str, text: &str) -> Vec<Definition> {
    let lines: Vec<&str> = text.lines().collect();
    definitions_in(path, &lines)
}

/// [`definitions`] of a text already cut into its lines.
pub fn definitions_in(path: &str, lines: &[&str]) -> Vec<Definition> {
    definitions_where(path, lines, may_define, true)
}

/// The family's definition pattern; `None` for reStructuredText, whose headings are
/// two lines ([`rst_headings`]).
fn pattern_of(fam: Family) -> Option<&'static Pattern> {
    Some(match fam {
        Family::Python => &PYTHON,
        Family::Rust => &RUST,
        Family::CLike => &CLIKE,
        Family::Go => &GO,
        Family::Script => &SCRIPT,
        Family::Ruby => &RUBY,
        Family::Markdown => &MARKDOWN,
        Family::Rst => return None,
        Family::Other => &OTHER,
    })
}

/// [`definitions_in`], trying the pattern only on the lines `may` lets through, and on
/// ASCII lines without Unicode classes when `ascii_apart`.
fn definitions_where(
    path: &str,
    lines: &[&str],
    may: impl Fn(Family, &str) -> bool,
    ascii_apart: bool,
) -> Vec<Definition> {
    let fam = family(path);
    let Some(pattern) = pattern_of(fam) else {
        return rst_headings(lines);
    };
    let mut out = Vec::new();
    for (i, &line) in lines.iter().enumerate() {
        if line.len() > 400 || !may(fam, line) {
            continue;
        }
        if let Some(at) = pattern.name(line, ascii_apart) {
            let name = &line[at];
            if is_control_flow(name) {
                continue;
            }
            out.push(Definition {
                name: name.to_string(),
                line: i,
                indent: line.len() - line.trim_start().len(),
            });
        }
    }
    out
}

/// Control flow looks like a call followed by a brace in C-like code: names that are
/// never definitions.
fn is_control_flow(name: &str) -> bool {
    matches!(
        name,
        "if" | "for" | "while" | "switch" | "return" | "catch" | "sizeof" | "elif"
    )
}

/// Finds any of the words [`is_control_flow`] names, inside a word or not.
static CONTROL_FLOW: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new("if|for|while|switch|return|catch|sizeof")
        .expect("literal alternatives compile")
});

/// The lines [`definitions_in`] finds definitions on, at less cost: a line the pattern
/// matches is a definition's unless the name it defines is a control-flow word, and
/// where no such word occurs on the line at all, the name is not looked for.
pub fn definition_lines(path: &str, lines: &[&str]) -> Vec<usize> {
    let fam = family(path);
    let Some(pattern) = pattern_of(fam) else {
        return rst_headings(lines).into_iter().map(|d| d.line).collect();
    };
    let mut out = Vec::new();
    for (i, &line) in lines.iter().enumerate() {
        if line.len() > 400 || !may_define(fam, line) {
            continue;
        }
        let defines = if CONTROL_FLOW.is_match(line.as_bytes()) {
            pattern
                .name(line, true)
                .is_some_and(|at| !is_control_flow(&line[at]))
        } else if line.is_ascii() {
            pattern.ascii.is_match(line.as_bytes())
        } else {
            pattern.unicode.is_match(line)
        };
        if defines {
            out.push(i);
        }
    }
    out
}

/// Whether `line` can match its family's definition pattern: a few byte comparisons
/// that every line the pattern matches passes, so that most lines (a function's body)
/// skip the pattern, whose every call costs far more than the comparisons, matching or
/// not. Each test is read off the pattern's alternatives: how the line must start (its
/// leading keyword) or what it must hold.
fn may_define(fam: Family, line: &str) -> bool {
    let t = line.trim_start();
    let starts = |words: &[&str]| words.iter().any(|w| t.starts_with(w));
    // The line's first word when whitespace follows it, as the pattern's keywords are
    // followed by `\s+`.
    let first_word = || {
        let end = t
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(t.len());
        let (word, rest) = t.split_at(end);
        rest.starts_with(char::is_whitespace).then_some(word)
    };
    match fam {
        Family::Python => starts(&["def", "class", "async"]),
        Family::Rust => starts(&[
            "pub",
            "async",
            "const",
            "unsafe",
            "extern",
            "fn",
            "struct",
            "enum",
            "trait",
            "mod",
            "type",
            "union",
            "static",
            "macro_rules!",
            "impl",
        ]),
        Family::CLike => {
            // A function's signature: an unindented line starting with a name or `*`,
            // with its parenthesis.
            let signature = line
                .as_bytes()
                .first()
                .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'*')
                && line.contains('(');
            signature || t.starts_with("#define") || first_word().is_some_and(is_clike_word)
        }
        Family::Go => line.starts_with("func") || t.starts_with("type"),
        Family::Script => {
            starts(&[
                "export",
                "default",
                "async",
                "function",
                "class",
                "interface",
                "enum",
                "type",
                "namespace",
                "const",
                "let",
                "var",
            ]) || (line.contains('(') && line.contains(')') && line.contains('{'))
        }
        Family::Ruby | Family::Markdown | Family::Rst | Family::Other => true,
    }
}

/// Whether a C-like definition's line can start with `word` (after its indentation):
/// the modifiers and kinds of [`CLIKE`]'s first and last alternatives.
fn is_clike_word(word: &str) -> bool {
    matches!(
        word,
        "public"
            | "private"
            | "protected"
            | "internal"
            | "static"
            | "final"
            | "abstract"
            | "sealed"
            | "open"
            | "data"
            | "inline"
            | "virtual"
            | "override"
            | "async"
            | "export"
            | "typedef"
            | "synchronized"
            | "class"
            | "struct"
            | "interface"
            | "enum"
            | "union"
            | "record"
            | "object"
            | "namespace"
            | "fun"
            | "func"
            | "protocol"
            | "extension"
    )
}

/// reStructuredText headings: a line underlined by a run of one punctuation character.
fn rst_headings(lines: &[&str]) -> Vec<Definition> {
    let mut out = Vec::new();
    for i in 1..lines.len() {
        let under = lines[i].trim_end();
        let title = lines[i - 1].trim();
        if under.len() >= 3
            && !title.is_empty()
            && under.len() >= title.len().min(under.len())
            && under.chars().all(|c| "=-~^\"'*+#".contains(c))
            && under.chars().all(|c| under.starts_with(c))
            && !title.chars().all(|c| "=-~^\"'*+#".contains(c))
        {
            out.push(Definition {
                name: title.to_string(),
                line: i - 1,
                indent: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str, text: &str) -> Vec<String> {
        definitions(path, text)
            .into_iter()
            .map(|d| d.name)
            .collect()
    }

    /// The byte tests in front of the patterns let every defining line through: over
    /// text full of the ways definitions (and lines that only look like them) are
    /// written, in each family, the definitions are those of the patterns alone.
    #[test]
    fn the_quick_line_test_keeps_every_definition() {
        let lines = [
            "static int compute_delay(int n) {",
            "int\tmain(void)",
            "*make_buffer(size_t n)",
            "_start(void) {",
            "\tif (x) {",
            "\treturn foo(bar);",
            "\tstatic void helper(int x)",
            "  public static final List<String> names(int a) {",
            "    private\u{2003}Foo bar(",
            "  #define MAX(a, b) ((a) > (b) ? (a) : (b))",
            "#define LIMIT 10",
            "typedef struct sched_entity {",
            "struct task_struct {",
            "\tstruct rq *rq = this_rq();",
            "data class Point(val x: Int)",
            "datagram_send(sk, buf);",
            "object Registry {",
            "  override fun load(): Unit {",
            "func (s *S) Run() error {",
            "\ttype Config struct {",
            "pub(crate) fn search() {}",
            "    impl<T: Clone> Backend for Local<T> {",
            "macro_rules! tool {",
            "  async def fetch(self):",
            "class Retry(Base):",
            "export default async function load() {",
            "  const f = async (x) => x",
            "  render(props) {",
            "  let value = compute(a, b) || {};",
            "weird  (  ) {",
            "\u{a0}class Odd {",
            "\x0bstruct vertical_tab {",
            "int\x0cform_feed(void)",
            "fn\x0bodd() {}",
            "  export\tconst handler = (req) => req",
        ];
        let text = lines.join("\n");
        let mut found = 0;
        for ext in [
            "c", "java", "kt", "swift", "rs", "py", "go", "ts", "rb", "md", "txt",
        ] {
            let path = format!("f.{ext}");
            let quick = definitions(&path, &text);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                quick,
                definitions_where(&path, &lines, |_, _| true, false),
                "{ext}"
            );
            let at: Vec<usize> = quick.iter().map(|d| d.line).collect();
            assert_eq!(definition_lines(&path, &lines), at, "{ext}");
            found += quick.len();
        }
        assert!(found > 30, "{found}");
        // And this crate's own sources, read as Rust and as each other family.
        let mut files = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut checked = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for ext in ["rs", "c", "py", "go", "ts"] {
                let path = format!("f.{ext}");
                let lines: Vec<&str> = text.lines().collect();
                let all = definitions_where(&path, &lines, |_, _| true, false);
                let at: Vec<usize> = all.iter().map(|d| d.line).collect();
                assert_eq!(definition_lines(&path, &lines), at, "{}", p.display());
                assert_eq!(definitions(&path, &text), all, "{} as .{ext}", p.display());
            }
            checked += 1;
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn finds_definitions_in_common_languages() {
        assert_eq!(
            names(
                "a.py",
                "class Retry:\n    async def backoff(self):\n        pass\n"
            ),
            ["Retry", "backoff"]
        );
        assert_eq!(
            names(
                "a.rs",
                "pub struct Store {\n}\nimpl Backend for Local {\n    pub(crate) fn search() {}\n"
            ),
            ["Store", "Local", "search"]
        );
        assert_eq!(
            names("a.go", "func (s *S) Run() error {\ntype Config struct {\n"),
            ["Run", "Config"]
        );
        assert_eq!(
            names(
                "a.ts",
                "export async function load() {\nconst f = (x) => x\n"
            ),
            ["load", "f"]
        );
        assert_eq!(
            names("a.c", "static int compute_delay(int n) {\n  if (x) {\n"),
            ["compute_delay"]
        );
        assert_eq!(
            names("a.md", "# Title\ntext\n## Usage\n"),
            ["Title", "Usage"]
        );
        assert_eq!(names("a.rst", "Intro\n=====\n\ntext\n"), ["Intro"]);
    }
}
