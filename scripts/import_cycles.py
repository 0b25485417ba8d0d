#!/usr/bin/env python3
"""Import cycles between the files of each crate (ARCHITECTURE.md: there are none).

usage: scripts/import_cycles.py [CRATE_DIR ...]   (default: every workspace member)

A file imports another when it names an item of the other's module: `use crate::a::b`,
`use super::x`, a path like `child::f` to a module it declares, `crate::a::f(..)` in code.
Declaring a module (`mod x;`) is not an import. Prints each cycle and exits 1 if there is one.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMBERS = ["protocol", "arducam", "scenes", "runtime", "model-export", "edge", "host", "metrics", "mqtt", "tests"]


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src/ (bins and lib alike)."""
    out = {}
    for d, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[0] == "bin":
                continue
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            out[tuple(parts)] = os.path.join(d, f)
    return out


def strip(code):
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
    # Test modules may use anything of their file's parent.
    m = re.search(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", code)
    return code[: m.start()] if m else code


def use_paths(code):
    """Every path a `use` names, with groups expanded: `a::{b, c::d}` -> a::b, a::c::d."""
    out = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        stack = [("", m.group(1).replace(" ", "").replace("\n", ""))]
        while stack:
            prefix, s = stack.pop()
            depth, start, items = 0, 0, []
            i = s.find("{")
            if i < 0:
                out.append(prefix + s.split(" as ")[0])
                continue
            head, body = s[:i], s[i + 1 : s.rfind("}")]
            for j, ch in enumerate(body):
                depth += ch == "{"
                depth -= ch == "}"
                if ch == "," and depth == 0:
                    items.append(body[start:j])
                    start = j + 1
            items.append(body[start:])
            stack.extend((prefix + head, it) for it in items if it)
    return out


def reexports(mods):
    """(module, name) -> the module a `pub use` there takes `name` from: a facade (lib.rs, a
    folder's mod.rs) is not itself the owner of what it re-exports."""
    out = {}
    for mod, path in mods.items():
        code = strip(open(path, encoding="utf-8").read())
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
            for p in use_paths("use " + m.group(1) + ";"):
                segs = [x for x in p.split("::") if x]
                out[(mod, segs[-1])] = "::".join(segs[:-1])
    return out


def resolve(path, here, mods, reexp=None, depth=0):
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base = []
        segs = segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        base = list(here)  # a child module of this one, if it is one
        if tuple(base + segs[:1]) not in mods:
            return None
    full = base + segs
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            m = tuple(full[:n])
            if reexp and n < len(full) and (m, full[n]) in reexp and depth < 8:
                # Re-exported: the owner is where it comes from (None: another crate).
                return resolve(reexp[(m, full[n])], list(m), mods, reexp, depth + 1)
            return m
    return None


def graph(mods):
    g = {}
    reexp = reexports(mods)
    for mod, path in mods.items():
        code = strip(open(path, encoding="utf-8").read())
        # A facade's `pub use` lines re-export; they are an import only where the file itself
        # uses the name.
        pub_uses = re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", code)
        code = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", "", code)
        refs = set(use_paths(code))
        for u in pub_uses:
            for p in use_paths(u[u.index("use"):]):
                if re.search(r"\b%s\b" % re.escape(p.split("::")[-1]), code):
                    refs.add(p)
        refs |= set(re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", code))
        refs |= set(re.findall(r"(?<![:\w])(\w+::\w+)", code))
        g[mod] = {
            t for r in refs if (t := resolve(r, list(mod), mods, reexp)) is not None and t != mod
        }
    return g


def cycles(g):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(g):
        if v not in index:
            visit(v)
    return out


def main():
    crates = sys.argv[1:] or [os.path.join(ROOT, m) for m in MEMBERS]
    found = 0
    for c in crates:
        mods = modules(os.path.join(c, "src"))
        for comp in cycles(graph(mods)):
            found += 1
            names = sorted(os.path.relpath(mods[m], ROOT) for m in comp)
            print(f"import cycle: {' <-> '.join(names)}")
    print(f"import cycles: {found}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
