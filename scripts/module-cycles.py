#!/usr/bin/env python3
"""Print the file-level module cycles of each crate in the workspace.

A file `a.rs` depends on module `b` when it names `crate::b` (in a `use` or a path; not in a
comment line, so a doc link to a module above is allowed). Every strongly connected component
of more than one top-level module is printed; exit status 1 when a component is larger than
--max (default 2), so CI can hold the line.

    python3 scripts/module-cycles.py [--max N] [CRATE_DIR...]
"""
import os
import re
import sys


def modules(src):
    """Map each module path of a crate (`kv::store`) to its file."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]) or not parts:
                continue
            mods["::".join(parts)] = os.path.join(root, f)
    return mods


def resolve(path, mods):
    """The longest module path that `path` (a::b::Item) starts with, if any."""
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in mods:
            return cand
    return None


def reexports(src, mods):
    """Items re-exported at the crate root (`pub use node::{Node, NodeTree}`) -> their module."""
    alias = {}
    for root_file in ("lib.rs", "main.rs"):
        path = os.path.join(src, root_file)
        if not os.path.exists(path):
            continue
        text = open(path, encoding="utf-8").read()
        for hit in re.finditer(r"pub use (\w+)::(\{[^}]*\}|\w+)", text, re.S):
            module, tail = hit.group(1), hit.group(2)
            if module not in mods:
                continue
            for it in tail.strip("{}").split(","):
                it = it.strip().split(" as ")[-1].split("::")[-1].strip()
                if it:
                    alias[it] = module
    return alias


def use_tree(text, i):
    """The paths of the use tree (or plain path) starting at text[i]: `a::{b, c::{d}}`."""
    out = []

    def parse(i, prefix):
        # returns the index after the tree
        j = i
        while j < len(text) and text[j] in " \n\t":
            j += 1
        if j < len(text) and text[j] == "{":
            j += 1
            while j < len(text):
                while j < len(text) and text[j] in " \n\t,":
                    j += 1
                if j < len(text) and text[j] == "}":
                    return j + 1
                j = parse(j, prefix)
            return j
        hit = re.match(r"(\w+(?:::\w+)*)(::)?", text[j:])
        if not hit:
            return j + 1
        path = prefix + hit.group(1)
        j += hit.end()
        if hit.group(2):
            return parse(j, path + "::")
        out.append(path)
        while j < len(text) and text[j] not in ",};\n({<)":
            j += 1
        return j

    parse(i, "")
    return out


def edges(mods, alias):
    out = {m: set() for m in mods}
    for m, path in mods.items():
        text = open(path, encoding="utf-8").read()
        # unit tests may reach anywhere
        text = text.split("#[cfg(test)]")[0]
        # comments (doc links included) are no dependency: the module compiles without them
        text = re.sub(r"(?m)^\s*//.*", "", text)
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        names = []
        for prefix, base in (("crate", ""), ("super", parent), ("self", m)):
            for hit in re.finditer(rf"\b{prefix}::", text):
                for path in use_tree(text, hit.end()):
                    names.append("::".join(x for x in [base, path] if x))
        for n in names:
            t = resolve(n, mods) or alias.get(n.split("::")[0])
            if t and t != m:
                out[m].add(t)
    return out


def graph(src):
    mods = modules(src)
    return edges(mods, reexports(src, mods))


def sccs(graph):
    index, low, stack, on, res = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
            res.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return res


def main(argv):
    limit = 2
    if "--max" in argv:
        i = argv.index("--max")
        limit = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    crates = argv or sorted(
        d for d in os.listdir(".") if os.path.isdir(os.path.join(d, "src"))
    )
    worst = 0
    for c in crates:
        comps = [s for s in sccs(graph(os.path.join(c, "src"))) if len(s) > 1]
        for comp in comps:
            worst = max(worst, len(comp))
            print(f"{c}: cycle of {len(comp)}: {' <-> '.join(comp)}")
        if not comps:
            print(f"{c}: no cycles")
    return 1 if worst > limit else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
