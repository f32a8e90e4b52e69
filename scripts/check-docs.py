#!/usr/bin/env python3
"""Run the shell blocks of README.md and docs/*.md against a built binary, so that no
command the documentation shows goes stale.

    scripts/check-docs.py path/to/scoped-repo-mcp [PAGE.md ...]

Fenced blocks, by their info string:
- `sh`: run. A page's blocks run in order as one `bash -euo pipefail` script, with the
  binary first on PATH (as `scoped-repo-mcp`), a scratch HOME (so the default data
  directory is a fresh one), and as working directory a small git work tree at
  ~/src/myproject. Background jobs are stopped at the page's end. Servers in the
  blocks listen on loopback only.
- `sh norun: WHY`: not run (WHY says what it needs); each `scoped-repo-mcp` command
  line in it may name only subcommands and flags the binary has.
- `sh ci`: not run here; each line must appear in .ci/run, which runs it.
- `json`: must parse; a `"command": "scoped-repo-mcp"` entry's `args` may name only
  flags the binary has.
Other blocks (text, output samples) are left alone. `mcp.json` at the root is checked
as a json block.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(`{3,})(.*)$")
HELP = {}


def blocks(path):
    """(line, info, text) of each fenced block of a Markdown file."""
    out, lines, i = [], path.read_text().split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start, body = m.group(1), m.group(2).strip(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        out.append((start, info, "\n".join(body)))
        i += 1
    return out


def help_text(binary, words):
    key = tuple(words)
    if key not in HELP:
        r = subprocess.run([binary, *words, "--help"], capture_output=True, text=True)
        HELP[key] = r.stdout if r.returncode == 0 else None
    return HELP[key]


def check_args(binary, args, where):
    """Problems with one `scoped-repo-mcp ARGS` invocation: an unknown subcommand or
    flag."""
    args = list(args)
    problems = []
    flags_global = help_text(binary, []) or ""
    while args and args[0].startswith("--") and args[0].split("=")[0] in flags_global:
        args = args[1:] if "=" in args[0] else args[2:]
    words = []
    while args and re.fullmatch(r"[a-z][a-z-]*", args[0]) and help_text(binary, words + [args[0]]):
        words.append(args.pop(0))
    if not words:
        return [f"{where}: `scoped-repo-mcp {' '.join(args)}` names no subcommand"]
    text = help_text(binary, words) + flags_global
    for a in args:
        if a.startswith("--"):
            flag = a.split("=")[0]
            if not re.search(re.escape(flag) + r"\b", text):
                problems.append(f"{where}: `scoped-repo-mcp {' '.join(words)}` has no {flag}")
    return problems


def check_norun(binary, text, where):
    problems = []
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.split("\n"):
        line = re.sub(r"(^|\s)#.*", "", line)
        for m in re.finditer(r"(?:^|[\s;&|(])scoped-repo-mcp\s+([^;&|)]*)", line):
            problems += check_args(binary, m.group(1).split(), where)
    return problems


def check_json(binary, text, where):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"{where}: not JSON: {e}"]
    problems = []

    def walk(v):
        if isinstance(v, dict):
            if v.get("command") == "scoped-repo-mcp":
                problems.extend(check_args(binary, v.get("args", []), where))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return problems


def run_page(binary, page, runnable):
    with tempfile.TemporaryDirectory(prefix="check-docs-") as tmp:
        home = pathlib.Path(tmp) / "home"
        project = home / "src" / "myproject"
        bindir = pathlib.Path(tmp) / "bin"
        project.mkdir(parents=True)
        bindir.mkdir()
        (bindir / "scoped-repo-mcp").symlink_to(pathlib.Path(binary).resolve())
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Docs Check\n\temail = docs@example.com\n[init]\n\tdefaultBranch = main\n"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SCOPED_REPO_", "RELACE_", "XDG_", "GIT_", "CARGO_"))
        }
        env.update(
            HOME=str(home),
            PATH=f"{bindir}:{os.environ['PATH']}",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            RUST_LOG="warn",
        )
        (project / "src").mkdir()
        (project / "src" / "lib.rs").write_text(
            "/// Retry with exponential backoff.\npub fn backoff(attempt: u32) -> u64 {\n    100 << attempt\n}\n"
        )
        (project / "README.md").write_text("# myproject\n")
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "Start"]):
            subprocess.run(cmd, cwd=project, env=env, check=True)
        script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT"]
        for line, text in runnable:
            script.append(f"echo '--- {page}:{line}' >&2")
            script.append(text)
        r = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            return [f"{page}: a block failed (exit {r.returncode}); the last `---` line names it:\n{r.stderr[-3000:]}"]
    return []


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = str(pathlib.Path(sys.argv[1]).resolve())
    pages = [pathlib.Path(p) for p in sys.argv[2:]] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    ci = (ROOT / ".ci" / "run").read_text()
    problems, ran, checked = [], 0, 0
    problems += check_json(binary, (ROOT / "mcp.json").read_text(), "mcp.json")
    for page in pages:
        rel = page.resolve().relative_to(ROOT)
        runnable = []
        for line, info, text in blocks(page):
            where = f"{rel}:{line}"
            lang = info.split()[0] if info else ""
            if lang == "sh" and info == "sh":
                runnable.append((line, text))
            elif lang == "sh" and info.startswith("sh norun:") and len(info) > len("sh norun:") + 3:
                problems += check_norun(binary, text, where)
                checked += 1
            elif info == "sh ci":
                for l in text.split("\n"):
                    l = l.strip()
                    if l and not l.startswith("#") and l not in ci:
                        problems.append(f"{where}: `{l}` is not in .ci/run")
                checked += 1
            elif lang in ("sh", "bash", "shell", "console"):
                problems.append(f"{where}: a shell block must be `sh`, `sh norun: WHY` or `sh ci`, not `{info}`")
            elif lang == "json":
                problems += check_json(binary, text, where)
                checked += 1
        if runnable:
            problems += run_page(binary, rel, runnable)
            ran += len(runnable)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"docs: {ran} shell blocks run, {checked} blocks checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
