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

fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in definition pattern compiles")
}

static PYTHON: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)"));
static RUST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern\s+\S+)\s+)*(?:fn|struct|enum|trait|mod|type|union|static|const|macro_rules!)\s+([A-Za-z_]\w*)|^\s*impl(?:<[^>]*>)?\s+(?:[\w:]+(?:<[^>]*>)?\s+for\s+)?([A-Za-z_][\w:]*)",
    )
});
static CLIKE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data|inline|virtual|override|async|export|typedef)\s+)*(?:class|struct|interface|enum|union|record|object|namespace|fun|func|protocol|extension)\s+([A-Za-z_]\w*)|^\s*#define\s+([A-Za-z_]\w*)|^(?:[A-Za-z_][\w:<>,*&\s]*\s)?\**([A-Za-z_]\w*)\s*\([^;]*$|^\s+(?:(?:public|private|protected|static|final|abstract|synchronized|override|virtual)\s+)+[\w<>\[\],.?\s]+\s([A-Za-z_]\w*)\s*\(",
    )
});
static GO: LazyLock<Regex> =
    LazyLock::new(|| re(r"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)|^\s*type\s+([A-Za-z_]\w*)"));
static SCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\s*\*?|class|interface|enum|type|namespace)\s+([A-Za-z_$][\w$]*)|^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:function|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)|^\s+(?:(?:static|async|public|private|protected|get|set)\s+)*([A-Za-z_$][\w$]*)\s*\([^)]*\)\s*\{",
    )
});
static RUBY: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(?:def\s+(?:self\.)?|class\s+|module\s+|defmodule\s+|defp?\s+)([A-Za-z_][\w.?!]*)")
});
static MARKDOWN: LazyLock<Regex> = LazyLock::new(|| re(r"^#{1,6}\s+(.+)$"));
static OTHER: LazyLock<Regex> = LazyLock::new(|| {
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
    let fam = family(path);
    let pattern: &Regex = match fam {
        Family::Python => &PYTHON,
        Family::Rust => &RUST,
        Family::CLike => &CLIKE,
        Family::Go => &GO,
        Family::Script => &SCRIPT,
        Family::Ruby => &RUBY,
        Family::Markdown => &MARKDOWN,
        Family::Rst => return rst_headings(text),
        Family::Other => &OTHER,
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.len() > 400 {
            continue;
        }
        if let Some(c) = pattern.captures(line)
            && let Some(m) = c.iter().skip(1).flatten().next()
        {
            let name = m.as_str();
            // Control flow looks like a call followed by a brace in C-like code.
            if matches!(
                name,
                "if" | "for" | "while" | "switch" | "return" | "catch" | "sizeof" | "elif"
            ) {
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

/// reStructuredText headings: a line underlined by a run of one punctuation character.
fn rst_headings(text: &str) -> Vec<Definition> {
    let lines: Vec<&str> = text.lines().collect();
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
