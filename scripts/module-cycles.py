#!/usr/bin/env python3
"""Print the file (module) cycles of a crate: strongly connected components of the graph
"module A mentions crate::B" over the crate's src/*.rs (and src/*/mod.rs) files.

Usage: scripts/module-cycles.py broker [runtime ...]   (exit status 1 if a cycle is larger than 2)
"""
import os
import re
import sys


def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3]
            name = rel.replace(os.sep, "::")
            if name.endswith("::mod"):
                name = name[: -len("::mod")]
            if name in ("lib", "main"):
                continue
            mods[name.split("::")[0]] = mods.get(name.split("::")[0], "") + open(path).read()
    return mods


def edges(mods):
    graph = {m: set() for m in mods}
    for m, text in mods.items():
        # `use crate::{a, b::c}` groups and `crate::x` paths anywhere
        for block in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
            depth, item, names = 0, "", []
            for ch in block:
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    names.append(item)
                    item = ""
                    continue
                item += ch if depth == 0 else ""
            names.append(item)
            for n in names:
                n = n.strip().split("::")[0]
                if n in mods and n != m:
                    graph[m].add(n)
        for n in re.findall(r"crate::([a-z_][a-z0-9_]*)", text):
            if n in mods and n != m:
                graph[m].add(n)
    return graph


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
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
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


worst = 0
for crate in sys.argv[1:] or ["broker"]:
    comps = [c for c in sccs(edges(modules(os.path.join(crate, "src")))) if len(c) > 1]
    for c in comps:
        worst = max(worst, len(c))
        print(f"{crate}: cycle of {len(c)}: {' <-> '.join(c)}")
    if not comps:
        print(f"{crate}: no module cycle")
sys.exit(1 if worst > 2 else 0)
