#!/usr/bin/python3
"""bench/run.sh's report: pspace's products with a stored Dense matrix beside
what a user would use instead, in one run, written to OUT/report.md with the
plots OUT/mv.png (page cache warm, under the cap) and OUT/mv-cold.png.

Run through bench/run.sh (which builds first); `report.py --help` lists the
options. Each measurement is its own process (build/report_mv for pspace,
the pread + BLIS baseline and the limits; bench/report/baselines.py for
numpy.memmap and h5py), so that it can run in a fresh cgroup v1 memory
group whose limit (the cap) also charges the page cache the process reads
through. Regimes, for every d and method:

- cold: under the cap; every timed pass starts with the page cache dropped
  (`sync; echo 3 > /proc/sys/vm/drop_caches` as root).
- capped: under the cap, the page cache dropped once, one untimed pass,
  then timed passes: the steady state of repeated products (CG, Lanczos)
  under a memory limit. In cache while the data fits the cap, from disk
  beyond.
- warm: no cap, one untimed pass, then timed passes: the page cache holds
  the data.

At the largest d the limits (disk and memory read bandwidth, decode
throughput, the sgemm peak) are measured once after the products. The cold
mvs of numpy.memmap and of the three stores, and the store file's read, are
also run there one each in turn, a few rounds: the targets' cold ratios
(against numpy, against the file's read) are the medians of each round's
ratio, of passes seconds apart (without numpy, the file's read is measured
just before and just after each cold mv instead). The limits of the warm mvs
(the memory read for the raw store's, the decode-only pass for the f32
store's) are measured just before and just after them: the near-the-limits
rows compare with those.

Progress goes to stderr; the report is Markdown.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = "/usr/bin/python3"
BASELINES = os.path.join(ROOT, "bench", "report", "baselines.py")
STORES = [("f32", "pspace f32 (default codec)"), ("bf16", "pspace bf16"),
          ("raw", "pspace raw (level 0)")]
OTHERS = [("numpy", "numpy.memmap"), ("pread", "pread + BLIS sgemv"),
          ("h5py", "h5py (HDF5 chunks)")]
REGIMES = [("cold", "cold (page cache dropped before each pass), under the cap"),
           ("capped", "repeated passes under the cap (page cache warm as far as the cap allows)"),
           ("warm", "warm: no cap, the page cache holds the data")]
# the cold mvs the targets compare, and the store file's read, in turn (Bench.alternate)
ALTERNATED = ("numpy", "f32", "bf16", "raw", "read")
T0 = time.monotonic()


def log(msg):
    print("report [%6.0fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


def gib(b):
    return "%.2f GiB" % (b / 2**30) if b >= 2**30 else "%.0f MiB" % (b / 2**20)


def parse_size(s):
    mult = {"k": 2**10, "m": 2**20, "g": 2**30}
    s = s.strip().lower().rstrip("ib")
    return int(float(s[:-1]) * mult[s[-1]]) if s and s[-1] in mult else int(s)


# ---- the memory cap ---------------------------------------------------------------

class Cap:
    """A cgroup v1 memory group per run, under this process's own group."""

    def __init__(self, limit):
        self.limit, self.why, self.base, self.n = limit, None, None, 0
        if not limit:
            self.why = "no cap asked for (--cap 0)"
        elif os.geteuid() != 0:
            self.why = "not root: cgroup memory limits and dropping the page cache need root"
        elif not os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            self.why = "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
        else:
            group = "/"
            with open("/proc/self/cgroup") as f:
                for ln in f:
                    parts = ln.rstrip("\n").split(":", 2)
                    if len(parts) == 3 and parts[1] == "memory":
                        group = parts[2]
            self.base = "/sys/fs/cgroup/memory" + ("" if group == "/" else group)
            try:  # prove it works before relying on it
                path = self.make()
                os.rmdir(path)
            except OSError as e:
                self.why, self.base = "cannot create a memory cgroup: %s" % e, None

    @property
    def active(self):
        return self.base is not None

    def make(self, limit=None):
        self.n += 1
        path = os.path.join(self.base, "pspace-report-%d-%d" % (os.getpid(), self.n))
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit or self.limit))
        return path

    @staticmethod
    def remove(path):
        for _ in range(50):
            try:
                os.rmdir(path)
                return
            except OSError:
                time.sleep(0.1)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_json(cmd, cap=None, env=None, timeout=None):
    """Runs @cmd (in a fresh capped group when @cap), returns its last stdout line as JSON,
    or {"error": text}."""
    group = cap.make() if cap else None

    def enter():
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, preexec_fn=enter if group else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        log("  timed out after %d s: %s" % (timeout, " ".join(cmd[:3])))
        return {"error": "timeout"}
    finally:
        if group:
            Cap.remove(group)
    if p.returncode != 0:
        why = "killed (signal %d%s)" % (-p.returncode, ", the OOM killer: over the cap"
                                        if p.returncode == -9 else "") \
            if p.returncode < 0 else "exit %d: %s" % (p.returncode, p.stderr.strip()[-300:])
        log("  failed: %s: %s" % (" ".join(cmd[:3]), why))
        return {"error": why}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON from %s" % cmd[0]}


# ---- the measurements ---------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a, self.build = a, a.build
        self.cap = Cap(a.cap)
        self.env = dict(os.environ, BLIS_NUM_THREADS=str(a.threads),
                        OMP_NUM_THREADS=str(a.threads))
        self.results = {}  # (regime, method, k, d) -> result dict
        self.sizes = {}    # d -> write result
        self.limits = {}
        self.rounds = []   # cold mv at the largest d, one pass of each ALTERNATED in turn
        self.info = run_json([PY, BASELINES, "info"])
        self.methods = STORES + [m for m in OTHERS if self.has(m[0])]

    def has(self, method):
        if method == "numpy":
            return "numpy" in self.info
        if method == "h5py":
            return "h5py" in self.info and not self.a.no_h5py
        return True

    def tool(self, *args):
        return [os.path.join(self.build, "report_mv")] + [str(x) for x in args]

    def command(self, method, d, k, work, regime, reps=None):
        if reps is None:
            reps = self.a.reps if regime != "cold" else self.a.cold_reps
        common = ["--d", d, "--k", k, "--reps", reps, "--threads", self.a.threads]
        if regime == "cold":
            common.append("--cold")
        if method in dict(STORES):
            return self.tool("mm", "--store", os.path.join(work, "store"), "--matrix", method,
                             "--budget-mib", self.a.budget_mib, *common)
        if method == "pread":
            return self.tool("pread", "--file", os.path.join(work, "matrix.f32"), *common)
        return [PY, BASELINES, "mv", "--method", method, "--file",
                os.path.join(work, "matrix.f32"), "--h5", os.path.join(work, "matrix.h5"),
                "--d", str(d), "--k", str(k), "--reps", str(reps)] + \
            (["--cold"] if regime == "cold" else [])

    def measure(self, regime, method, d, k, work):
        capped = regime != "warm" and self.cap.active
        if any(key[:3] == (regime, method, k) and r.get("error") in ("timeout", "skipped")
               for key, r in self.results.items()):
            self.results[(regime, method, k, d)] = {"error": "skipped"}
            return  # it timed out at a smaller d already
        if capped:
            drop_caches()  # nothing cached from earlier runs, charged elsewhere
        cmd = self.command(method, d, k, work, regime)
        r = run_json(cmd, self.cap if capped else None, self.env, self.a.timeout)
        if r.get("error") == "timeout":
            r["bound"] = 4.0 * d * d / max(self.a.timeout, 1) / 1e9
        if "median" in r:
            r["gbs"] = 4.0 * d * d / r["median"] / 1e9
            log("  %-6s %-5s k=%-2d %7.3f s  %6.2f GB/s" % (regime, method, k, r["median"],
                                                            r["gbs"]))
        self.results[(regime, method, k, d)] = r

    def write(self, d, work):
        log("d = %d: writing the stores and the raw file (%s)" % (d, gib(4.0 * d * d)))
        t = time.monotonic()
        w = run_json(self.tool("write", "--dir", work, "--d", d, "--tile", self.a.tile))
        if "error" in w:
            raise SystemExit("report: writing d = %d failed: %s" % (d, w["error"]))
        if self.has("h5py"):
            h = run_json([PY, BASELINES, "h5write", "--file", os.path.join(work, "matrix.f32"),
                          "--d", str(d), "--out", os.path.join(work, "matrix.h5"),
                          "--chunk", str(self.a.tile)])
            w["h5py"] = h.get("bytes", 0)
        w["store_file"] = os.path.getsize(os.path.join(work, "store", "data.mdb"))
        w["seconds"] = time.monotonic() - t
        self.sizes[d] = w

    def run_size(self, d, last):
        work = tempfile.mkdtemp(prefix="pspace-report-%d-" % d, dir=self.a.work_dir)
        try:
            self.write(d, work)
            for regime, _ in REGIMES:
                if regime == "capped" and not self.cap.active:
                    continue  # without a cap, 'capped' is 'warm'
                for method, _ in self.methods:
                    for k in self.a.ks:
                        limit = self.paired_limit(regime, method, k, d, work) if last else None
                        if limit:
                            before = limit()
                        self.measure(regime, method, d, k, work)
                        if limit:
                            self.pair(self.results[(regime, method, k, d)], before, limit())
            if last:
                self.alternate(d, work)
                self.measure_limits(d, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def in_turn(self):
        """Will the cold mvs run in turn at the largest d (alternate())?"""
        return self.cap.active and self.has("numpy")

    def alternate(self, d, work):
        """
        Cold mvs of numpy and the stores at @p d and the store file's read (the
        ALTERNATED), one each in turn, a.rounds rounds (the order rotated), each in a
        fresh capped group after the page cache is dropped. The disk's read bandwidth
        here drifted 1.4-6.8 GB/s within minutes: the medians of the regime's table,
        measured minutes apart, compare the disk's moods as much as the methods; a
        round's passes are seconds apart.
        """
        if not self.in_turn():
            return
        n = len(ALTERNATED)
        log("d = %d: cold mv, %s in turn, %d rounds" % (d, ", ".join(ALTERNATED),
                                                        self.a.rounds))
        for i in range(self.a.rounds):
            row = {}
            # each first in its turn: no one always follows another
            for m in ALTERNATED[i % n:] + ALTERNATED[:i % n]:
                if m == "read":
                    r = self.read_bw(os.path.join(work, "store", "data.mdb"), reps=1)
                else:
                    drop_caches()
                    r = run_json(self.command(m, d, 1, work, "cold", reps=1), self.cap,
                                 self.env, self.a.timeout)
                if "median" not in r:
                    log("  %s failed (%s): no rounds" % (m, r.get("error", "?")))
                    self.rounds = []
                    return
                row[m] = r["gbs"] if m == "read" else r["median"]
            log("  round %d: %s" % (i + 1, "  ".join(
                ("read %.2f GB/s" if m == "read" else m + " %.3f s") % row[m]
                for m in ALTERNATED)))
            self.rounds.append(row)

    def bandwidth(self, *args, capped=False):
        """report_mv @p args (readbw, membw, decode), under the cap when @p capped and there
        is one: its result, with gbs = bytes per second / 1e9."""
        cap = self.cap if capped and self.cap.active else None
        if cap:
            drop_caches()
        r = run_json(self.tool(*args), cap)
        if "median" in r:
            r["gbs"] = r["bytes"] / r["median"] / 1e9
        return r

    def read_bw(self, path, reps=None):
        """The sequential read bandwidth of @p path, cold and under the cap if there is one."""
        return self.bandwidth("readbw", "--file", path, "--cold", "--reps",
                              reps or self.a.cold_reps, capped=True)

    def memory_bw(self):
        return self.bandwidth("membw", "--mib", self.a.membw_mib, "--threads", self.a.threads,
                              "--reps", 5)

    def decode_bw(self, work, d, m):
        return self.bandwidth("decode", "--store", os.path.join(work, "store"), "--matrix", m,
                              "--d", d, "--threads", self.a.threads, "--reps", self.a.reps,
                              "--budget-mib", self.a.budget_mib)

    def paired_limit(self, regime, method, k, d, work):
        """
        The limit a near-the-limits row compares the mv of @p method with (at the largest
        d), as a measurement to run just before and just after it, or None: the disk's
        read bandwidth here drifted 2x within minutes, the memory's and the decode's
        by a third between runs, so a limit measured once, minutes away, says little.
        """
        if k != 1:
            return None
        if regime == "cold" and method in dict(STORES) and not self.in_turn():
            return lambda: self.read_bw(os.path.join(work, "store", "data.mdb"))
        if regime == "warm" and method == "raw":
            return self.memory_bw
        if regime == "warm" and method == "f32":
            return lambda: self.decode_bw(work, d, "f32")
        return None

    def pair(self, r, before, after):
        """Keeps with result @p r the mean of its limit measured @p before and @p after it."""
        if "gbs" in before and "gbs" in after:
            r["pair"] = {"gbs": (before["gbs"] + after["gbs"]) / 2,
                         "before": before["gbs"], "after": after["gbs"]}
            log("    its limit just before %.2f GB/s, after %.2f GB/s" % (
                before["gbs"], after["gbs"]))

    def measure_limits(self, d, work):
        log("limits at d = %d" % d)
        raw = os.path.join(work, "matrix.f32")
        data = os.path.join(work, "store", "data.mdb")
        for name, path in (("disk", raw), ("disk_store", data)):
            r = self.read_bw(path)
            if "gbs" in r:
                log("  %s read %.2f GB/s" % (name, r["gbs"]))
            self.limits[name] = r
        r = run_json(self.tool("gemm", "--threads", self.a.threads))
        if "gflops" in r:
            log("  sgemm %.1f GFLOP/s" % r["gflops"])
        self.limits["sgemm"] = r
        r = self.memory_bw()
        if "gbs" in r:
            log("  memory read %.2f GB/s" % r["gbs"])
        self.limits["memory"] = r
        for m in ("f32", "bf16"):
            r = self.decode_bw(work, d, m)
            if "gbs" in r:
                log("  decode %s %.2f GB/s logical" % (m, r["gbs"]))
            self.limits["decode_" + m] = r

    def run_program(self, name, args, cap_limit=None):
        """Runs a bench_* program, returns its Markdown (title and machine lines dropped).
        With @cap_limit (and the cap active), in a fresh group capped at that many bytes,
        the page cache dropped first."""
        cmd = [os.path.join(self.build, name)] + args
        group = self.cap.make(cap_limit) if cap_limit and self.cap.active else None

        def enter():
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        log("%s %s%s" % (name, " ".join(args), " (under a %s cap)" % gib(cap_limit)
                         if group else ""))
        t = time.monotonic()
        if group:
            drop_caches()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True,
                               preexec_fn=enter if group else None)
        finally:
            if group:
                Cap.remove(group)
        out = []
        machine = ("- date:", "- cpu:", "- memory:", "- system:", "- compiler:", "- pspace:",
                   "- BLIS:", "- load average")
        for ln in p.stdout.splitlines():
            if ln.startswith("# "):
                continue
            if ln.startswith("#"):
                ln = "#" + ln  # below the report's own section
            if ln.startswith(machine):
                continue
            out.append(ln)
        text = "\n".join(out).strip("\n")
        if p.returncode != 0:
            text += "\n\n**%s %s.**" % (name, "was killed by signal %d%s" % (
                -p.returncode, " (the OOM killer: over the cap)" if p.returncode == -9 else "")
                if p.returncode < 0 else "exited with status %d" % p.returncode)
        return "    %s\n\n%s\n\n(%.0f s)" % (" ".join(["build/" + name] + args), text,
                                            time.monotonic() - t)


# ---- the report ---------------------------------------------------------------------

def cell(r, what="gbs"):
    if r is None:
        return "-"
    if "error" in r:
        if r["error"] == "timeout":
            return "< %.3f (timeout)" % r["bound"]
        if r["error"] == "skipped":
            return "skipped"
        return "failed" if "signal 9" not in r["error"] else "OOM"
    return "%.2f" % r[what]


def ratio(a, b):
    if not a or not b or "gbs" not in a or "gbs" not in b:
        return None
    return a["gbs"] / b["gbs"]


def stored_ratio(b, r, m, d, limit):
    """Stored bytes of matrix @p m read per second by the pass @p r, over a limit's GB/s."""
    if not r or "median" not in r or not limit or "gbs" not in limit or d not in b.sizes:
        return None
    return b.sizes[d][m] / r["median"] / 1e9 / limit["gbs"]


def fmt_ratio(x):
    return "-" if x is None else "%.2fx" % x


def checksums(b):
    """The products of the lossless methods must agree: @return the disagreements."""
    bad, groups = [], {}
    for (regime, m, k, d), r in b.results.items():
        if m != "bf16" and "checksum" in r:
            groups.setdefault((regime, k, d), []).append((m, r["checksum"]))
    for key, vals in sorted(groups.items()):
        ref = vals[0][1]
        for m, v in vals[1:]:
            if abs(v - ref) > 1e-4 * max(abs(ref), 1.0):
                bad.append("%s k=%d d=%d: %s %.8g vs %s %.8g" % (key + (m, v, vals[0][0], ref)))
    return bad


def plot(b, regime, path, title):
    tool = os.path.join(b.build, "report_plot")
    if not os.path.exists(tool):
        return False
    ds = sorted(b.sizes)
    lines = ["title\t" + title, "xlabel\td (the matrix is d x d; logical f32 = 4 d^2 bytes)",
             "ylabel\tGB/s of logical matrix (4 d^2 bytes / s)"]
    for m, label in b.methods:
        pts = []
        for d in ds:
            r = b.results.get((regime, m, 1, d))
            if r and "gbs" in r:
                pts += ["%g" % d, "%.4g" % r["gbs"]]
        if pts:
            lines.append("series\t%s\t%s" % (label, " ".join(pts)))
    lim = b.limits
    if "gbs" in lim.get("memory", {}):
        lines.append("hline\tmemory read (%d threads)\t%.4g" % (b.a.threads, lim["memory"]["gbs"]))
    if "gbs" in lim.get("decode_f32", {}):
        lines.append("hline\tdecode f32 store (logical)\t%.4g" % lim["decode_f32"]["gbs"])
    if "gbs" in lim.get("disk", {}):
        lines.append("hline\tdisk read%s\t%.4g" % (" under the cap" if b.cap.active else "",
                                                  lim["disk"]["gbs"]))
    if b.cap.active:
        lines.append("vline\t4 d^2 = cap (%s)\t%.6g" % (gib(b.cap.limit), (b.cap.limit / 4) ** 0.5))
    tsv = path + ".tsv"
    with open(tsv, "w") as f:
        f.write("\n".join(lines) + "\n")
    ok = subprocess.run([tool, tsv, path]).returncode == 0
    os.remove(tsv)
    return ok


def headline(b):
    """The issue's targets, at the largest d."""
    d = max(b.sizes)
    R = b.results

    def g(regime, m, k=1):
        return R.get((regime, m, k, d))

    def time_ratio(regime, m):
        a, c = g(regime, m, 16), g(regime, m, 1)
        if not a or not c or "median" not in a or "median" not in c:
            return None
        return a["median"] / c["median"]

    cold = "cold" if b.cap.active else None
    rows = []
    if cold:
        for m, what, target in (("f32", "default", ">= 2.2x"), ("bf16", "bf16", ">= 4.5x")):
            if b.rounds:
                rows.append(("cold mv, %s store vs numpy.memmap (in turn, median of %d rounds)"
                             % (what, len(b.rounds)), round_ratio(b.rounds, m), target))
            else:
                rows.append(("cold mv, %s store vs numpy.memmap" % what,
                             ratio(g(cold, m), g(cold, "numpy")), target))
    rows.append(("warm mv, raw store vs numpy.memmap", ratio(g("warm", "raw"), g("warm", "numpy")),
                 ">= 1.8x"))
    rows.append(("warm mv, default store vs numpy.memmap", ratio(g("warm", "f32"),
                 g("warm", "numpy")), ">= 1.2x"))
    for regime in ([cold] if cold else []) + ["warm"]:
        for m in ("f32", "bf16", "raw"):
            rows.append(("%s mm k = 16 / mv time, %s store" % (regime, m), time_ratio(regime, m),
                         "<= 1.5x"))
    # near the limits: the bytes a pass reads (the stored matrix) against what the machine reads
    lim = b.limits

    def limit(r, name):
        """The limit measured around @p r if it was, else the run's (@return it, a note)."""
        if r and "pair" in r:
            return r["pair"], " (just before and after)"
        return lim.get(name), ""

    r = g("warm", "raw")
    x, note = limit(r, "memory")
    rows.append(("warm mv, raw store: stored bytes/s vs memory read" + note,
                 stored_ratio(b, r, "raw", d, x), ">= 0.8x"))
    r = g("warm", "f32")
    x, note = limit(r, "decode_f32")
    rows.append(("warm mv, default store vs its decode throughput" + note, ratio(r, x),
                 ">= 0.9x"))
    if cold:
        for m in ("f32", "bf16", "raw"):
            if b.rounds:
                rows.append(("cold mv, %s store: stored bytes/s vs store file read (in turn, "
                             "median of %d rounds)" % (m, len(b.rounds)),
                             round_read_ratio(b, m), ">= 0.9x"))
                continue
            r = g(cold, m)
            x, note = limit(r, "disk_store")
            rows.append(("cold mv, %s store: stored bytes/s vs store file read%s" % (m, note),
                         stored_ratio(b, r, m, d, x), ">= 0.9x"))
    out = ["| at d = %d (%s logical) | measured | target (issue 11) | met |" % (d, gib(4.0 * d * d)),
           "|---|---:|---:|---|"]
    for name, x, target in rows:
        if x is None:
            met = "-"
        else:
            lim = float(target.split()[1].rstrip("x"))
            met = "yes" if (x >= lim if target.startswith(">") else x <= lim) else "**no**"
        out.append("| %s | %s | %s | %s |" % (name, fmt_ratio(x), target, met))
    out += ["", rounds_table(b), "", mm_floor(b, d)]
    return "\n".join(out)


def round_ratio(rounds, m):
    """The median over @p rounds of numpy's time over @p m's."""
    return statistics.median(r["numpy"] / r[m] for r in rounds)


def read_share(b, r, m):
    """Store @p m's stored bytes per second in round @p r over the round's file read."""
    return b.sizes[max(b.sizes)][m] / r[m] / 1e9 / r["read"]


def round_read_ratio(b, m):
    """The median over the rounds of read_share()."""
    return statistics.median(read_share(b, r, m) for r in b.rounds)


def rounds_table(b):
    """The cold mvs and reads in turn (Bench.alternate), a row per round."""
    if not b.rounds:
        return ""
    d = max(b.sizes)
    out = ["Cold mv at d = %d and the store file's read, one of each in turn (page cache "
           "dropped before each, a fresh group under the cap), %d rounds; the targets' cold "
           "ratios are the medians of each round's:" % (d, len(b.rounds)), "",
           "| round | numpy.memmap s | pspace f32 s | bf16 s | raw s | store file read GB/s | "
           "f32 / numpy | bf16 / numpy | stored bytes/s / read: f32, bf16, raw |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(b.rounds):
        out.append("| %d | %.3f | %.3f | %.3f | %.3f | %.2f | %s | %s | %s |" % (
            i + 1, r["numpy"], r["f32"], r["bf16"], r["raw"], r["read"],
            fmt_ratio(r["numpy"] / r["f32"]), fmt_ratio(r["numpy"] / r["bf16"]),
            ", ".join("%.2f" % read_share(b, r, m) for m in ("f32", "bf16", "raw"))))
    return "\n".join(out)


def mm_floor(b, d):
    """
    What bounds mm k = 16 against mv when the page cache is warm: the products' flops at
    the sgemm peak (@return a paragraph with a table, or "" without the peak).
    """
    peak = b.limits.get("sgemm", {}).get("gflops")
    if not peak:
        return ""
    k = 16
    flops = 2.0 * d * d * k  # each upper tile multiplies k vectors as A and as A^T
    floor = flops / peak / 1e9
    L = ["Warm mm with k = %d right-hand sides is compute-bound: it makes 2 d^2 k = %.1f GFLOP "
         "(each stored upper tile multiplies the k vectors as A and as A^T), which at this "
         "run's sgemm peak (%.1f GFLOP/s, n = 2048, %d threads) take at least %.3f s; against "
         "the warm mv of the same store that alone is the ratio's floor:" % (
             k, flops / 1e9, peak, b.a.threads, floor), "",
         "| store | warm mv s | warm mm k = %d s | mm GFLOP/s | of sgemm | floor of mm / mv |" % k,
         "|---|---:|---:|---:|---:|---:|"]
    for m in ("f32", "bf16", "raw"):
        mv, mm = b.results.get(("warm", m, 1, d)), b.results.get(("warm", m, k, d))
        if not mv or not mm or "median" not in mv or "median" not in mm:
            continue
        g = flops / mm["median"] / 1e9
        L.append("| %s | %.3f | %.3f | %.1f | %.0f%% | %.2fx |" % (
            m, mv["median"], mm["median"], g, 100 * g / peak, floor / mv["median"]))
    return "\n".join(L)


def render(b, extra, machine, started):
    a, ds = b.a, sorted(b.sizes)
    L = ["# pspace benchmark report", ""]
    L.append("Written by `bench/run.sh%s` on %s in %.0f minutes." % (
        " --quick" if a.quick else "", started, (time.monotonic() - T0) / 60))
    L += ["", "## Machine", "", machine.strip(), ""]
    info = b.info
    L.append("- Python baselines: python %s, numpy %s (BLAS: %s), h5py %s" % (
        info.get("python", "?"), info.get("numpy", "not installed"),
        ", ".join(info.get("blas", [])) or "?",
        ("%s (HDF5 %s)" % (info["h5py"], info["hdf5"])) if "h5py" in info else "not installed"))
    if b.cap.active:
        L.append("- memory cap: **%s** (cgroup v1 `memory.limit_in_bytes`, a fresh group per "
                 "run, which charges the page cache the run reads through); page cache dropped "
                 "with `sync; echo 3 > /proc/sys/vm/drop_caches`" % gib(b.cap.limit))
    else:
        L.append("- memory cap: **none could be set** (%s); cold passes drop the files' pages "
                 "with `posix_fadvise(POSIX_FADV_DONTNEED)` instead, and the 'capped' regime "
                 "is not run" % b.cap.why)
    L.append("- threads: %d for every method (pspace_exec.threads, BLIS rntm_t for pread, "
             "BLIS_NUM_THREADS for numpy's BLAS); pspace's working memory %d MiB" % (
                 a.threads, a.budget_mib))
    L += ["", "## Products with a stored Dense matrix", ""]
    L.append("A symmetric d x d matrix of Fisher-like 512 x 512 tiles (as `bench_mv`), the same "
             "matrix for every method (checked: the sum of the result agrees). pspace stores the "
             "upper triangle in tiles of %d: **f32** with the default codec (byte shuffle + zstd "
             "1), **bf16** (lossy, shuffle + zstd), **raw** (level 0, no compression); "
             "products are `pspace_stream_mm` (k = 1 is an mv). The others read a row-major f32 "
             "file of the whole matrix: **numpy.memmap** (`A @ X`, one BLAS call through the "
             "mapping), **pread + BLIS sgemv** (plain C: %d MiB row panels read with pread, "
             "then sgemv, or sgemm for k > 1), **h5py** (an HDF5 dataset in uncompressed %d x "
             "%d chunks, read in row panels of %d rows into one buffer, each multiplied by numpy)." % (
                 a.tile, 32, a.tile, a.tile, a.tile))
    bad = checksums(b)
    L.append("")
    L.append("**The products disagree:** " + "; ".join(bad) if bad else
             "All lossless methods' products agree (sum of the result within 1e-4 relative).")
    L.append("")
    L.append("GB/s = 4 d^2 bytes (the logical f32 matrix) / seconds per pass, GB = 1e9; median "
             "of the timed passes (cold: %d, otherwise %d after one untimed pass; numpy and "
             "h5py stop repeating after 60 s once one pass is timed). Each measurement runs in "
             "its own process; '< x (timeout)': its passes took over %d s (so under x GB/s), and it "
             "is skipped at larger d; 'OOM': killed over the cap." % (
                 a.cold_reps, a.reps, a.timeout))
    L += ["", "Stored bytes:", ""]
    L.append("| d | logical f32 | pspace f32 | bf16 | raw | raw file | HDF5 file | written in |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in ds:
        w = b.sizes[d]
        L.append("| %d | %s | %s | %s | %s | %s | %s | %.0f s |" % (
            d, gib(4.0 * d * d), gib(w["f32"]), gib(w["bf16"]), gib(w["raw"]), gib(w["file"]),
            gib(w["h5py"]) if w.get("h5py") else "-", w["seconds"]))
    for regime, title in REGIMES:
        if not any(key[0] == regime for key in b.results):
            continue
        for k in a.ks:
            L += ["", "### %s, k = %d%s" % (title[0].upper() + title[1:], k,
                                            " (mv)" if k == 1 else ""), ""]
            L.append("| d | " + " | ".join(lbl for _, lbl in b.methods) + " | f32 / numpy | "
                     "bf16 / numpy | raw / numpy |")
            L.append("|---:|" + "---:|" * (len(b.methods) + 3))
            for d in ds:
                rs = [b.results.get((regime, m, k, d)) for m, _ in b.methods]
                num = b.results.get((regime, "numpy", k, d))
                L.append("| %d | %s | %s |" % (d, " | ".join(cell(r) for r in rs), " | ".join(
                    fmt_ratio(ratio(b.results.get((regime, m, k, d)), num))
                    for m in ("f32", "bf16", "raw"))))
    lim = b.limits
    L += ["", "### Limits, measured in the same run", ""]
    L.append("| limit | GB/s | how |")
    L.append("|---|---:|---|")
    cap_txt = "under the cap, " if b.cap.active else ""
    if lim:
        d = max(ds)
        L.append("| disk read, raw file | %s | %spage cache dropped, sequential 8 MiB reads "
                 "of the %s file |" % (cell(lim.get("disk")), cap_txt, gib(4.0 * d * d)))
        L.append("| disk read, store file | %s | the same, the store's data.mdb (%s, all three "
                 "matrices) |" % (cell(lim.get("disk_store")), gib(b.sizes[d]["store_file"])))
        for m in ("f32", "bf16", "raw"):
            pr = b.results.get(("cold", m, 1, d), {}).get("pair")
            if pr:
                L.append("| disk read, store file, around the cold mv of the %s store | %.2f | "
                         "the same, just before (%.2f) and just after (%.2f) that measurement |"
                         % (m, pr["gbs"], pr["before"], pr["after"]))
        for regime, m, what in (("warm", "raw", "memory read"),
                                ("warm", "f32", "decode, f32 store (logical GB/s)")):
            pr = b.results.get((regime, m, 1, d), {}).get("pair")
            if pr:
                L.append("| %s, around the %s mv of the %s store | %.2f | as below, just "
                         "before (%.2f) and just after (%.2f) that measurement |" % (
                             what, regime, m, pr["gbs"], pr["before"], pr["after"]))
        L.append("| memory read | %s | sum of a %d MiB buffer, %d threads |" % (
            cell(lim.get("memory")), a.membw_mib, a.threads))
        if "gflops" in lim.get("sgemm", {}):
            L.append("| sgemm peak | %.1f GFLOP/s | BLIS sgemm, n = 2048, %d threads |" % (
                lim["sgemm"]["gflops"], a.threads))
        for m in ("f32", "bf16"):
            L.append("| decode, %s store (logical GB/s) | %s | a pass of the streaming engine "
                     "whose kernel only sums each decoded tile, page cache warm, d = %d |" % (
                         m, cell(lim.get("decode_" + m)), d))
    L += ["", "### Against the targets", "", headline(b), ""]
    if os.path.exists(os.path.join(a.out, "mv.png")):
        L += ["![mv under the cap](mv.png)", ""]
    if os.path.exists(os.path.join(a.out, "mv-cold.png")):
        L += ["![cold mv](mv-cold.png)", ""]
    for title, text in extra:
        L += ["## " + title, "", text, ""]
    return "\n".join(L)


def main():
    p = argparse.ArgumentParser(description="pspace's benchmark report (see bench/run.sh)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: d = 1024..4096, cap 64 MiB, quick build/factored benches")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--sizes", help="comma-separated d values, multiples of 512 "
                   "(default 2048,4096,8192,16384,24576,32768; --quick 1024,2048,4096)")
    p.add_argument("--cap", help="memory cap, e.g. 1G (default 1G, --quick 64M; 0 = none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=180,
                   help="seconds one measurement (all its passes) may take (180); a method "
                   "that times out is skipped at larger d")
    p.add_argument("--work-dir", help="where to write the matrices ($TMPDIR or /tmp)")
    p.add_argument("--no-h5py", action="store_true", help="skip the h5py baseline")
    p.add_argument("--skip-programs", action="store_true",
                   help="skip bench_build, bench_build_io, bench_factored, bench_factor "
                   "and bench_lowrank")
    a = p.parse_args()
    a.sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else (
        [1024, 2048, 4096] if a.quick else [2048, 4096, 8192, 16384, 24576, 32768])
    a.cap = parse_size(a.cap) if a.cap is not None else (64 << 20 if a.quick else 1 << 30)
    a.ks = [1, 16]
    a.tile = 512
    a.reps = 2 if a.quick else 3
    a.cold_reps = 1 if a.quick else 3
    a.rounds = 2 if a.quick else 5
    a.budget_mib = 32 if a.quick else 256
    a.membw_mib = 256 if a.quick else 1024
    os.makedirs(a.out, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    for tool in ("report_mv",):
        if not os.path.exists(os.path.join(a.build, tool)):
            raise SystemExit("report: %s/%s missing: build first (bench/run.sh does)" % (
                a.build, tool))
    b = Bench(a)
    log("cap: %s" % (gib(a.cap) if b.cap.active else "none (%s)" % b.cap.why))
    machine = subprocess.run(b.tool("machine"), stdout=subprocess.PIPE, text=True).stdout
    for i, d in enumerate(a.sizes):
        b.run_size(d, i == len(a.sizes) - 1)
    plot(b, "capped" if b.cap.active else "warm", os.path.join(a.out, "mv.png"),
         "mv (k = 1), repeated passes %s: GB/s of logical matrix" % (
             "under a %s cap" % gib(a.cap) if b.cap.active else "(no cap: page cache warm)"))
    plot(b, "cold", os.path.join(a.out, "mv-cold.png"),
         "mv (k = 1), page cache dropped before each pass%s" % (
             ", under a %s cap" % gib(a.cap) if b.cap.active else ""))
    extra = []
    if not a.skip_programs:
        q = ["--quick"] if a.quick else []
        # The Dense builds at issue 11's size: d = 16384 from m = 4096 f32 rows.
        extra.append(("Building: bench_build (throughput against the sgemm peak)",
                      b.run_program("bench_build", q or ["--d", "16384", "--rows", "4096"])))
        extra.append(("An I/O-bound build: bench_build_io (against encoding and writing alone)",
                      b.run_program("bench_build_io", q)))
        extra.append(("KFAC and EKFAC products: bench_factored (against the gemm peak)",
                      b.run_program("bench_factored", q)))
        # The factorization under the cap (at least 128 MiB: --quick's 64 MiB holds no
        # panel), page cache dropped before it; its budget 3/8 of the cap leaves room
        # for the panel's tiles in the write transaction and the runtime.
        fcap = max(a.cap, 128 << 20)
        fargs = q + (["--mem", str(fcap * 3 // 8 >> 20), "--cold"] if b.cap.active else [])
        extra.append(("Out-of-core Cholesky and SLQ log-determinants: bench_factor "
                      "(against the dgemm peak, the exact value)",
                      b.run_program("bench_factor", fargs, fcap)))
        # LowRank mv with 16 GiB of rows (--quick: 256 MiB) under the same cap, page
        # cache dropped before the disk read and each cold mv; budget 3/8 of the cap.
        largs = q + (["--mem", str(fcap * 3 // 8 >> 20), "--cold"] if b.cap.active else [])
        largs += ["--dir", a.work_dir] if a.work_dir else []
        extra.append(("LowRank beyond memory: bench_lowrank (mv against the disk's read "
                      "bandwidth)", b.run_program("bench_lowrank", largs, fcap)))
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(render(b, extra, machine, started) + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"sizes": b.sizes, "limits": b.limits, "cap": a.cap if b.cap.active else None,
                   "results": [dict(v, regime=key[0], method=key[1], k=key[2], d=key[3])
                               for key, v in sorted(b.results.items())]}, f, indent=1)
    log("wrote %s/report.md" % a.out)


if __name__ == "__main__":
    main()
