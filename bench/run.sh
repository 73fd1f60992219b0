#!/bin/sh
# bench/run.sh - pspace's benchmark report: builds pspace (Release, in build/)
# if needed, then measures, in one run, products with stored Dense matrices
# beside numpy.memmap, a pread + BLIS sgemv baseline and h5py (Debian's
# python3-h5py, installed when run as root), the limits (disk and memory read bandwidth, decode
# throughput, the sgemm peak), building (bench_build, bench_build_io),
# KFAC/EKFAC products (bench_factored) and the out-of-core Cholesky and
# SLQ log-determinants (bench_factor, under the cap, at least 128 MiB),
# LowRank mv with its rows beyond memory (bench_lowrank, 16 GiB of rows in
# the work directory, under the same cap), and writes bench/out/report.md
# with the plots bench/out/mv.png and bench/out/mv-cold.png. Progress goes
# to stderr.
# Cold runs need root (cgroup v1 memory cap, dropping the page cache);
# without it the report says so and runs uncapped.
#
# usage: bench/run.sh [REPORT OPTIONS]
#   --quick          a smoke run of about a minute (d = 1024..4096, cap 64 MiB)
#   --out DIR        where to write the report (bench/out)
#   --sizes LIST     matrix dimensions d, multiples of 512
#                    (2048,4096,8192,16384,24576,32768: 16 MiB .. 4 GiB of f32)
#   --cap SIZE       memory cap of the cold and capped runs (1G; --quick 64M; 0 = none)
#   --threads N      threads of every method (2)
#   --work-dir DIR   where the test matrices are written ($TMPDIR or /tmp;
#                    the largest d needs about 3.5 x 4 d^2 bytes at once)
#   --timeout S      seconds one measurement may take (180); skipped at larger d then
#   --no-h5py        skip the h5py baseline
#   --skip-programs  skip bench_build, bench_build_io, bench_factored, bench_factor
#                    and bench_lowrank
# The full run takes 20-40 minutes on 2 cores.
#
# The former interface still works: every bench_* program, one after the other.
#   bench/run.sh --all [OUTFILE] [-- ARGS...]
#   bench/run.sh OUTFILE [-- ARGS...]    bench/run.sh -- ARGS...
#   OUTFILE  also write their output there (stdout gets it either way)
#   ARGS     passed to every benchmark, e.g. -- --quick
#
# environment: BUILD_DIR (default build), BENCHES (--all: default every
# bench_* program built, in name order), JOBS (default 2).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-"$root/build"}
jobs=${JOBS:-2}

mode=report
out=
case "${1:-}" in
--all)
	mode=all
	shift
	;;
--)
	mode=all
	;;
-*) ;;
"") ;;
*) mode=all ;;
esac
if [ "$mode" = all ]; then
	if [ $# -gt 0 ] && [ "$1" != "--" ]; then
		out=$1
		shift
	fi
	if [ $# -gt 0 ] && [ "$1" = "--" ]; then
		shift
	fi
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
elif ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt"; then
	echo "run.sh: $build is not a Release build; set BUILD_DIR to another directory" >&2
	exit 2
fi
# Only the benchmarks (and the library they link) are needed.
targets=
for src in "$root"/bench/bench_*.c; do
	[ -e "$src" ] || continue
	targets="$targets $(basename "$src" .c)"
done
if [ -z "$targets" ]; then
	echo "run.sh: no bench/bench_*.c programs" >&2
	exit 2
fi

# The h5py baseline needs Debian's python3-h5py: installed here when root can.
want_h5py() {
	for a in "$@"; do
		[ "$a" = --no-h5py ] && return 1
	done
	! /usr/bin/python3 -c "import h5py" 2>/dev/null
}

if [ "$mode" = report ]; then
	if want_h5py "$@"; then
		if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
			echo "run.sh: installing python3-h5py (Debian) for the h5py baseline" >&2
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends python3-h5py; } >&2 ||
				echo "run.sh: python3-h5py not installed: no h5py baseline" >&2
		else
			echo "run.sh: no h5py for /usr/bin/python3 (apt-get install python3-h5py):" \
				"no h5py baseline" >&2
		fi
	fi
	# shellcheck disable=SC2086
	cmake --build "$build" -j"$jobs" --target report_mv $targets >&2
	# The plot needs libpng (CMake skips report_plot without it).
	cmake --build "$build" -j"$jobs" --target report_plot >&2 2>/dev/null ||
		echo "run.sh: no report_plot (libpng missing?): the report comes without plots" >&2
	exec /usr/bin/python3 "$root/bench/report/report.py" --build "$build" "$@"
fi

# shellcheck disable=SC2086
cmake --build "$build" -j"$jobs" --target $targets >&2

run_all() {
	for name in ${BENCHES:-$targets}; do
		echo "run.sh: $name $*" >&2
		"$build/$name" "$@" || return
		echo
	done
}

if [ -n "$out" ]; then
	# Keep the benchmarks' exit status through the pipe.
	status_file=$(mktemp)
	trap 'rm -f "$status_file"' EXIT
	{
		rc=0
		run_all "$@" || rc=$?
		echo "$rc" >"$status_file"
	} | tee "$out"
	exit "$(cat "$status_file")"
fi
run_all "$@"
