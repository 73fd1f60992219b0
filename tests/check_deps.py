#!/usr/bin/env python3
"""Checks that dependencies between files run one way.

Reads, from a build tree, which file calls which (the undefined symbols of
each object file of the library and of the tool, resolved to the object
file defining them, as `nm` lists them) and which header includes which
(the `#include "..."` lines of src/ and tools/), and fails on:

  - a circle between .c files of src/ or of tools/ (a calls b ... calls a);
  - a circle between headers;
  - a call from a lower layer of src/ into a higher one. The layers, lowest
    first, are those of the README's Development section.

usage: check_deps.py SOURCE_DIR BUILD_DIR
Prints the graph's size and every violation; exits 1 if there is one.
"""
import os
import re
import subprocess
import sys

LAYERS = ["common", "codec", "store", "kernel", "layout", "mat", "op", "build"]


def objects(src, build, target):
    """(source file, object file) of @target; objects of deleted sources are skipped."""
    base = os.path.join(build, "CMakeFiles", target + ".dir")
    for root, _, files in os.walk(base):
        for f in files:
            if f.endswith(".c.o"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, base)[: -len(".o")]
                if os.path.isfile(os.path.join(src, name)):
                    yield name, path


def symbols(path):
    out = subprocess.run(["nm", path], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
    return defined, undefined


def call_graph(src, build, targets):
    files = {}
    for t in targets:
        for name, path in objects(src, build, t):
            files[name] = symbols(path)
    owner = {}
    for name, (defined, _) in files.items():
        for s in defined:
            owner[s] = name
    graph = {name: set() for name in files}
    for name, (_, undefined) in files.items():
        for s in undefined:
            if s in owner and owner[s] != name:
                graph[name].add(owner[s])
    return graph


def include_graph(src):
    graph = {}
    rx = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    for top in ("src", "tools", "include"):
        for root, _, files in os.walk(os.path.join(src, top)):
            for f in files:
                if not f.endswith(".h"):
                    continue
                path = os.path.join(root, f)
                rel = os.path.relpath(path, src)
                graph.setdefault(rel, set())
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        m = rx.match(line)
                        if not m:
                            continue
                        for base in (root, os.path.join(src, "src"), os.path.join(src, "include")):
                            cand = os.path.normpath(os.path.join(base, m.group(1)))
                            if os.path.isfile(cand):
                                graph[rel].add(os.path.relpath(cand, src))
                                break
    return graph


def circles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(name):
    parts = name.split("/")
    if parts[0] == "src" and len(parts) > 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    src, build = sys.argv[1], sys.argv[2]
    bad = 0
    calls = call_graph(src, build, ["pspace_obj", "pspace_tool"])
    if not calls:
        print("check_deps: no object files under %s" % build, file=sys.stderr)
        return 2
    for comp in circles(calls):
        print("circle of calls: " + " <-> ".join(comp))
        bad += 1
    for a in sorted(calls):
        for b in sorted(calls[a]):
            la, lb = layer(a), layer(b)
            if la is not None and lb is not None and lb > la:
                print("layer order: %s (%s) calls %s (%s)" % (a, LAYERS[la], b, LAYERS[lb]))
                bad += 1
    heads = include_graph(src)
    for comp in circles(heads):
        print("circle of includes: " + " <-> ".join(comp))
        bad += 1
    edges = sum(len(v) for v in calls.values())
    print("check_deps: %d files, %d call edges, %d headers: %d violation(s)"
          % (len(calls), edges, len(heads), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
