#!/bin/sh
# Builds the libFuzzer targets (in build-fuzz/, with clang, ASan + UBSan)
# and runs each on a copy of its seed corpus (tests/fuzz/corpus/<target>)
# for a time or a number of runs, then prints executions and findings per
# target. Findings (crash-*, leak-*, timeout-* inputs) go to
# build-fuzz/findings/<target>/; keep each as a regression test in the
# cmocka suite once fixed.
#
#   tests/fuzz/run.sh [-t SECONDS | -r RUNS] [-k] [-j JOBS] [TARGET ...]
#   tests/fuzz/run.sh --seeds      # rewrite the generated seeds (tiles, store)
#
# -k keeps going after a finding (libFuzzer's fork mode, one job: every
# crashing input is kept; -r does not apply there, use -t). Defaults: 60
# seconds each, all targets (fuzz_npy fuzz_layout fuzz_expr
# fuzz_tile fuzz_store), one after the other. Extra libFuzzer flags in
# $FUZZ_FLAGS. Needs clang and libFuzzer (Debian: clang, libfuzzer-NN-dev);
# the normal build and `tools/run.sh test` need neither.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${PSPACE_FUZZ_BUILD:-$root/build-fuzz}
all="fuzz_npy fuzz_layout fuzz_expr fuzz_tile fuzz_store"
limit="-max_total_time=60"
jobs=1
seeds=0
keep=

while [ $# -gt 0 ]; do
	case $1 in
	-t) limit="-max_total_time=$2"; shift 2 ;;
	-r) limit="-runs=$2"; shift 2 ;;
	-j) jobs=$2; shift 2 ;;
	-k) keep="-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1"; shift ;;
	--seeds) seeds=1; shift ;;
	-h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
targets=${*:-$all}

if [ ! -f "$build/CMakeCache.txt" ]; then
	CC=${CC:-clang} cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DPSPACE_FUZZ=ON \
		-DPSPACE_TESTS=OFF -DPSPACE_BENCH=OFF >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$build" -j"$jobs" --target fuzz_seeds $targets >"$build/fuzz-build.log" 2>&1 || {
	cat "$build/fuzz-build.log" >&2
	exit 1
}
# The BLIS kernel choice is measured once and cached in the build.
export PSPACE_CACHE_DIR="$build/cache"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Scratch files of the targets (on tmpfs when there is one), removed at the
# end: a crashing input leaves its process's directory behind.
tmp=$(mktemp -d "$([ -d /dev/shm ] && echo /dev/shm || echo /tmp)/pspace-fuzz-run-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export PSPACE_FUZZ_TMP="$tmp"

if [ "$seeds" = 1 ]; then
	"$build/fuzz_seeds" "$root/tests/fuzz/corpus"
	echo "seeds written to tests/fuzz/corpus/fuzz_tile and fuzz_store"
	exit 0
fi

printf '%-12s %12s %9s %8s %9s  %s\n' TARGET EXECUTIONS SECONDS EXEC/S FINDINGS CORPUS
status=0
for t in $targets; do
	work="$build/corpus/$t"
	found="$build/findings/$t"
	log="$build/$t.log"
	mkdir -p "$work" "$found"
	cp -n "$root/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
	start=$(date +%s)
	touch "$tmp/start"
	# stdout and stderr of the code under test are closed (the expression
	# parser prints its errors); libFuzzer's and the sanitizers' reports stay.
	# shellcheck disable=SC2086
	"$build/$t" $limit -close_fd_mask=3 -print_final_stats=1 -timeout=20 \
		-artifact_prefix="$found/" $keep ${FUZZ_FLAGS:-} "$work" >"$log" 2>&1 || true
	secs=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	# fork mode reports "#N: cov: ..." lines instead
	[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -n 1)
	execs=${execs:-0}
	# this run's findings (the directory keeps earlier ones)
	nfound=$(find "$found" -type f -newer "$tmp/start" | wc -l)
	[ "$nfound" -eq 0 ] || status=1
	printf '%-12s %12s %9s %8s %9s  %s\n' "$t" "$execs" "$secs" \
		"$((execs / (secs > 0 ? secs : 1)))" "$nfound" "$(ls "$work" | wc -l) inputs"
	[ "$nfound" -eq 0 ] || echo "  findings in $found (log $log)"
done
exit $status
