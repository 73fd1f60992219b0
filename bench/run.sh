#!/bin/sh
# bench/run.sh - builds pspace (Release, in build/) if needed and runs the
# benchmark programs, one after the other.
#
# usage: bench/run.sh [OUTFILE] [-- ARGS...]
#   OUTFILE  also write the report there (stdout gets it either way)
#   ARGS     passed to every benchmark, e.g. -- --quick
# environment: BUILD_DIR (default build), BENCHES (default: every bench_*
# program built, in name order), JOBS (default 2).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-"$root/build"}
jobs=${JOBS:-2}
out=
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	out=$1
	shift
fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then
	shift
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
