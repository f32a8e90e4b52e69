#!/usr/bin/env python3
"""Fail when the crate's top-level modules form an import circle, or a module uses one
from a higher layer than its own.

    scripts/check-layers.py [--graph]

Reads every `crate::MODULE` path in src/ (in `use` lines and in code, comments aside)
and maps each file to its top-level module (`src/store/db.rs` -> `store`). LAYERS below
is the table of allowed layers: a module may use modules of its own layer or lower
ones, never higher ones; within one layer no circle may form. A new module must be
given a layer here, or the check fails.

A submodule named in the table (`credentials::secrets`) is a module of its own: its
file and every `crate::credentials::secrets` path count for it, not for its parent, so
a room can hold parts that sit in different layers.
"""

import pathlib
import re
import sys

# Lowest first. Leaves know nothing of the store, scopes or MCP.
LAYERS = [
    ["text", "mapped", "credentials::secrets"],
    ["paths"],
    ["rules"],
    ["model"],
    ["search", "ranked"],
    ["store", "git_source"],
    ["scope", "credentials", "audit", "backend", "in_flight", "origin", "rate"],
    ["relace", "server", "http", "connections", "panics", "oauth"],
    ["api"],
    ["run"],
]

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
NAME = r"[a-z_][a-z0-9_]*"
USE = re.compile(rf"\bcrate::({NAME}(?:::{NAME})?)")
GROUP = re.compile(r"\buse crate::\{([^}]*)\}", re.S)
SUBMODULES = {m for ms in LAYERS for m in ms if "::" in m}


def named(path):
    """The module of the table that `path` (`store::db`, `credentials::secrets`) counts
    for: a submodule the table names, else the top-level module."""
    parts = path.split("::")
    two = "::".join(parts[:2])
    return two if two in SUBMODULES else parts[0]


def module_of(path):
    rel = path.relative_to(SRC)
    parts = [p[:-3] if p.endswith(".rs") else p for p in rel.parts]
    if parts[-1] == "mod":
        parts.pop()
    return named("::".join(parts))


def uses(text):
    # Unit tests at the foot of a file may use anything; they are not the module's shape.
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    found = {named(p) for p in USE.findall(text)}
    for group in GROUP.findall(text):
        for item in group.split(","):
            path = re.match(rf"{NAME}(\s*::\s*{NAME})?", item.strip())
            if path:
                found.add(named(re.sub(r"\s", "", path.group(0))))
    return found


def main():
    layer = {m: i for i, ms in enumerate(LAYERS) for m in ms}
    edges = {}
    for f in SRC.rglob("*.rs"):
        if f.name in ("lib.rs", "main.rs") and f.parent == SRC:
            continue
        m = module_of(f)
        for u in uses(f.read_text()):
            if u != m:
                edges.setdefault(m, {}).setdefault(u, set()).add(str(f.relative_to(SRC.parent)))
    modules = set(edges) | {u for d in edges.values() for u in d}
    problems = []
    for m in sorted(modules):
        if m not in layer:
            problems.append(f"module `{m}` has no layer in scripts/check-layers.py")
    for m, deps in sorted(edges.items()):
        for u, files in sorted(deps.items()):
            if m in layer and u in layer and layer[u] > layer[m]:
                problems.append(
                    f"`{m}` (layer {layer[m]}) uses `{u}` (layer {layer[u]}), a higher layer: {', '.join(sorted(files))}"
                )
    # Circles: strongly connected components of more than one module.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)
    for comp in sccs:
        detail = "; ".join(
            f"{a} -> {b} ({', '.join(sorted(edges[a][b]))})"
            for a in comp for b in comp if b in edges.get(a, {})
        )
        problems.append(f"import circle among {', '.join(comp)}: {detail}")
    if "--graph" in sys.argv:
        for m, deps in sorted(edges.items()):
            print(f"{m}: {' '.join(sorted(deps))}")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layers: {len(modules)} modules, no circle, no upward use")


if __name__ == "__main__":
    main()
