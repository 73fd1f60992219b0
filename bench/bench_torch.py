#!/usr/bin/env python3
"""How fast does pspace build the Fisher of a torch model, against what a
user would otherwise write in plain torch, in the same run?

Every measurement runs in its own subprocess (so peak RSS figures are
separate); ratios are against a plain-torch baseline measured in the same
run, because the machine is shared and noisy. Prints a markdown report on
stdout, progress on stderr.

    PYTHONPATH=tools/python /usr/bin/python3 bench/bench_torch.py [--quick]
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    print("[bench_torch %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- child side

def make_model(sizes, seed=0):
    import torch
    torch.manual_seed(seed)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).eval()


def make_loader(n_in, n_out, n, batch, seed=1):
    import torch
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=g)
    y = torch.randint(0, n_out, (n,), generator=g)
    return [(X[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def per_example_tensors(model, x):
    """Plain torch, as a competent user writes it: hooks capture each Linear's
    input and output gradient; K = C backward passes of the whole batch with
    the exact classif_logits seeds sqrt(p_k) (e_k - p). Yields, per k, the
    list of (a, g) per layer (a: (B, in), g: (B, out))."""
    import torch
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    acts, grads = {}, {}
    hs = []
    for m in lins:
        hs.append(m.register_forward_hook(lambda m, i, o: acts.__setitem__(m, i[0].detach())))
        hs.append(m.register_full_backward_hook(
            lambda m, gi, go: grads.__setitem__(m, go[0].detach())))
    try:
        out = model(x)
        p = torch.softmax(out, dim=1).detach()
        C = out.shape[1]
        sp = p.sqrt()
        for k in range(C):
            seed = -sp[:, k:k + 1] * p
            seed[:, k] += sp[:, k]
            model.zero_grad(set_to_none=True)
            out.backward(seed, retain_graph=k < C - 1)
            yield [(acts[m], grads[m]) for m in lins]
    finally:
        for h in hs:
            h.remove()


def baseline(kind, model, loader):
    import torch
    n = sum(b[0].shape[0] for b in loader)
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if kind == "diag":
        acc = [[torch.zeros_like(m.weight), torch.zeros_like(m.bias)] for m in lins]
        for x, _ in loader:
            for tensors in per_example_tensors(model, x):
                for s, (a, g) in zip(acc, tensors):
                    g2 = g * g
                    s[0] += torch.einsum("bo,bi->oi", g2, a * a)
                    s[1] += g2.sum(0)
        return torch.cat([torch.cat([w.reshape(-1), b]) for w, b in acc]) / n
    if kind == "kfac":
        A = [torch.zeros(m.in_features + 1, m.in_features + 1) for m in lins]
        G = [torch.zeros(m.out_features, m.out_features) for m in lins]
        for x, _ in loader:
            first = True
            for tensors in per_example_tensors(model, x):
                for i, (a, g) in enumerate(tensors):
                    if first:
                        a1 = torch.cat([a, torch.ones(a.shape[0], 1)], 1)
                        A[i].addmm_(a1.t(), a1)
                    G[i].addmm_(g.t(), g)
                first = False
        return [(a / n, g / n) for a, g in zip(A, G)]
    if kind == "dense":
        d = sum(p.numel() for p in model.parameters())
        F = torch.zeros(d, d)
        for x, _ in loader:
            for tensors in per_example_tensors(model, x):
                rows = torch.cat([torch.cat([torch.einsum("bo,bi->boi", g, a).reshape(g.shape[0], -1), g], 1)
                                  for a, g in tensors], 1)
                F.addmm_(rows.t(), rows)
        return F / n
    raise ValueError(kind)


def du(path):
    tot = 0
    for dp, _, fs in os.walk(path):
        for f in fs:
            tot += os.path.getsize(os.path.join(dp, f))
    return tot


def child(spec):
    import numpy as np
    import torch
    torch.set_num_threads(spec["threads"])
    model = make_model(spec["sizes"])
    loader = make_loader(spec["sizes"][0], spec["sizes"][-1], spec["n"], spec["batch"])
    d = sum(p.numel() for p in model.parameters())
    res = {"d": d}
    if spec["who"] == "torch":
        t = time.perf_counter()
        baseline(spec["kind"], model, loader)
        res["time"] = time.perf_counter() - t
        res["rss"] = rss_mib()
        return res
    import pspace
    import pspace.torch as ptorch
    # torch's own share: the model plus one forward/backward
    model(loader[0][0]).sum().backward()
    model.zero_grad(set_to_none=True)
    res["rss_torch"] = rss_mib()
    tmp = tempfile.mkdtemp(prefix="bench_torch_", dir=spec.get("tmpdir"))
    try:
        with pspace.Store(os.path.join(tmp, "s"), mem=spec["mem"]) as store:
            t = time.perf_counter()
            F = ptorch.fim(model, loader, store, "F", kind=spec["kind"],
                           variant="classif_logits", mem=spec["mem"], progress=False)
            res["time"] = time.perf_counter() - t
            res["rss"] = rss_mib()
            if spec.get("ops"):
                v = np.random.default_rng(0).standard_normal(d)
                t = time.perf_counter()
                F.mv(v)
                res["mv"] = time.perf_counter() - t
                if spec["ops"] != "mv":
                    t = time.perf_counter()
                    F.solve(v, damping=1e-3)
                    res["solve"] = time.perf_counter() - t
        res["size"] = du(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# --------------------------------------------------------------- parent side

def run(spec):
    log("%s %s %s n=%d ..." % (spec["case"], spec["who"], spec["kind"], spec["n"]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "tools", "python") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        log("FAILED: " + p.stderr.strip()[-2000:])
        return None
    r = json.loads(p.stdout.strip().splitlines()[-1])
    log("  %.2f s, peak RSS %.0f MiB" % (r["time"], r["rss"]))
    return r


def fmt_t(r, key="time"):
    return "%.2f" % r[key] if r and key in r else "failed"


def fmt_mib(x):
    return "%.0f MiB" % x if x < 1024 else "%.2f GiB" % (x / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seconds: small sizes, no at-scale case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale-examples", type=int, default=1024,
                    help="examples of the at-scale case (default 1024)")
    ap.add_argument("--tmpdir", help="where the stores go (default: $TMPDIR or /tmp); case 2b "
                    "writes ~9 GB")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return
    sys.path.insert(0, os.path.join(ROOT, "tools", "python"))
    import torch
    import pspace
    ver = subprocess.run([os.path.join(ROOT, "build", "pspace"), "--version"],
                         stdout=subprocess.PIPE, text=True).stdout
    blis = next((l for l in ver.splitlines() if l.startswith("BLIS")), "?")
    cpu = next((l for l in ver.splitlines() if l.startswith("CPU")), platform.processor())
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    T = a.threads
    q = a.quick
    out = []
    out.append("# bench_torch: Fisher of a torch model, pspace vs plain torch\n")
    out.append("- machine: %s, %d cores, %.0f GiB RAM; %s" % (platform.machine(), os.cpu_count(), mem_gib, cpu))
    out.append("- pspace %s, %s, torch %s, Python %s, %d threads"
               % (pspace.__version__, blis, torch.__version__, platform.python_version(), T))
    out.append("- command: `PYTHONPATH=tools/python %s bench/bench_torch.py %s`\n"
               % ("/usr/bin/python3", " ".join(sys.argv[1:])))

    # case 1
    sizes = [784, 1024, 1024, 10]
    n, b = (256, 128) if q else (1024, 128)
    base = dict(case="mlp", sizes=sizes, n=n, batch=b, threads=T, mem="1G")
    tk = run(dict(base, who="torch", kind="kfac"))
    td = run(dict(base, who="torch", kind="diag"))
    rows = []
    for kind, ref in (("kfac", tk), ("ekfac", tk), ("diag", td)):
        r = run(dict(base, who="pspace", kind=kind))
        rows.append((kind, r, ref))
    d = rows[0][1]["d"] if rows[0][1] else 0
    out.append("## 1. MLP %s (d = %s), %d examples, batches of %d, classif_logits\n"
               % ("-".join(map(str, sizes)), "{:,}".format(d), n, b))
    out.append("| kind | pspace s | examples/s | peak RSS | plain torch s | pspace / torch |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for kind, r, ref in rows:
        ratio = "%.2f" % (r["time"] / ref["time"]) if r and ref else "-"
        out.append("| %s | %s | %s | %s | %s (%s) | %s |" % (
            kind.upper() if kind != "diag" else "Diag", fmt_t(r), "%.0f" % (n / r["time"]) if r else "-",
            fmt_mib(r["rss"]) if r else "-", fmt_t(ref),
            "factors" if ref is tk else "per-example sq. grads", ratio))
    out.append("\nplain torch: K = 10 backward passes per batch with hooks; KFAC = the factor "
               "accumulation A += a^T a, G += g^T g (no eigendecomposition: EKFAC's row compares "
               "against the same); Diag = sum of g^2 (x) a^2 by einsum.\n")
    print("\n".join(out), flush=True)
    out = []

    # case 2
    sizes = [100, 128, 64, 10]
    n = 32 if q else 512
    base = dict(case="dense", sizes=sizes, n=n, batch=128, threads=T, mem="512M")
    rt = run(dict(base, who="torch", kind="dense"))
    rp = run(dict(base, who="pspace", kind="dense"))
    d = rp["d"] if rp else 0
    out.append("## 2. Dense out of core: MLP %s (d = %s), %d examples, mem=\"512M\"\n"
               % ("-".join(map(str, sizes)), "{:,}".format(d), n))
    out.append("| build | time s | examples/s | peak RSS | stored size | time / plain torch |")
    out.append("|---|---:|---:|---:|---:|---:|")
    if rt:
        out.append("| plain torch F += J^T J (f32, in RAM) | %s | %.0f | %s | (%s in RAM) | 1.00 |"
                   % (fmt_t(rt), n / rt["time"], fmt_mib(rt["rss"]), fmt_mib(d * d * 4 / 2**20)))
    if rp:
        out.append("| pspace Dense | %s | %.0f | %s | %s | %s |"
                   % (fmt_t(rp), n / rp["time"], fmt_mib(rp["rss"]), fmt_mib(rp["size"] / 2**20),
                      "%.2f" % (rp["time"] / rt["time"]) if rt else "-"))
    out.append("")
    print("\n".join(out), flush=True)
    out = []

    # case 2b: Dense of d >= 65536 under mem="2G"
    if not q:
        sizes = [256, 240, 16, 10]
        n = 256
        base = dict(case="dense-big", sizes=sizes, n=n, batch=128, threads=T, mem="2G", ops="mv",
                    tmpdir=a.tmpdir)
        rp = run(dict(base, who="pspace", kind="dense"))
        d = rp["d"] if rp else 0
        out.append("## 2b. Dense out of core at d >= 65536: MLP %s (d = %s), %d examples, mem=\"2G\"\n"
                   % ("-".join(map(str, sizes)), "{:,}".format(d), n))
        out.append("| build | time s | examples/s | GFLOP/s useful | peak RSS | of which torch "
                   "| stored size | f32 upper triangle | mv s |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        if rp:
            out.append("| pspace Dense | %s | %.1f | %.0f | %s | %s | %s | %s | %s |"
                       % (fmt_t(rp), n / rp["time"], n * 10 * d * (d + 1) / rp["time"] / 1e9,
                          fmt_mib(rp["rss"]), fmt_mib(rp["rss_torch"]),
                          fmt_mib(rp["size"] / 2**20), fmt_mib(d * (d + 1) / 2 * 4 / 2**20),
                          fmt_t(rp, "mv")))
        out.append("\nno plain-torch run at this size: its f32 F alone would take %s of the "
                   "%.0f GiB of RAM; case 2 gives the ratio. GFLOP/s useful: n K d (d + 1) "
                   "(K = 10), the upper triangle of J^T J.\n" % (fmt_mib(d * d * 4 / 2**20), mem_gib))
        print("\n".join(out), flush=True)
        out = []

    # case 3
    if q:
        return
    sizes = [1024] + [2048] * 25 + [10]
    n = a.scale_examples
    base = dict(case="scale", sizes=sizes, n=n, batch=64, threads=T, mem="4G", ops=True,
                tmpdir=a.tmpdir)
    rows = [(k, run(dict(base, who="pspace", kind=k))) for k in ("kfac", "ekfac", "diag")]
    d = next((r["d"] for _, r in rows if r), 0)
    out.append("## 3. At scale: MLP 1024-2048x25-10 (%d Linear layers, d = %s), %d examples, batches of 64\n"
               % (len(sizes) - 1, "{:,}".format(d), n))
    out.append("| kind | build s | examples/s | peak RSS | of which torch | mv s | solve (damping 1e-3) s |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for k, r in rows:
        if not r:
            out.append("| %s | failed | | | | | |" % k)
            continue
        out.append("| %s | %.1f | %.1f | %s | %s | %s | %s |" % (
            k.upper() if k != "diag" else "Diag", r["time"], n / r["time"], fmt_mib(r["rss"]),
            fmt_mib(r["rss_torch"]), fmt_t(r, "mv"), fmt_t(r, "solve")))
    out.append("\nplain-torch baseline not run at this size (the per-layer factors fit, but a "
               "dense or per-example accumulator of d = 10^8 does not); see case 1 for the ratio.\n")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
