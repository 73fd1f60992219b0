#!/bin/bash
# Kill torture (not run by ctest): hundreds of SIGKILLs at random points of
# `pspace build` (Dense and BlockDiag out of core with a small --mem and
# small checkpoints, KFAC), `pspace rm`, `pspace compact` and resumed
# builds on one store. After every kill the store must verify (`pspace
# verify` exit 0; interrupted builds are listed as incomplete), every
# complete matrix must give the trace of an uninterrupted build, and a
# compacted copy likewise before it replaces the store. An interrupted
# build is finished with --resume. Prints kills, resumes and failures;
# exits 1 on any failure.
#
#   tests/torture_kill.sh [-n KILLS] [-s SEED] [-p PSPACE] [-k] [-d DIR]
#
# Defaults: 200 kills, seed 1, the tool build/pspace, a temporary
# directory removed at the end (-k keeps it, -d DIR uses DIR).
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
kills_wanted=200
seed=1
tool=$root/build/pspace
keep=0
dir=

while getopts "n:s:p:kd:h" o; do
	case $o in
	n) kills_wanted=$OPTARG ;;
	s) seed=$OPTARG ;;
	p) tool=$OPTARG ;;
	k) keep=1 ;;
	d) dir=$OPTARG ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
[ -x "$tool" ] || { echo "torture_kill: no pspace tool at $tool (build first, or -p)" >&2; exit 2; }
if [ -z "$dir" ]; then
	dir=$(mktemp -d /tmp/pspace-torture-XXXXXX)
else
	mkdir -p "$dir"
fi
[ "$keep" = 1 ] || trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 2

# Small checkpoints, so that a kill lands between many of them; the BLIS
# kernel choice cached once here.
export PSPACE_TEST_TXN_BYTES=65536
export PSPACE_CACHE_DIR=$dir/cache
RANDOM=$seed
model=(--model mlp:20,16,10 --examples 2048 --threads 1)
declare -A args=(
	[D]="--kind dense --tile 32 --mem 400K"
	[B]="--kind blockdiag --tile 32 --mem 300K"
	[K]="--kind kfac"
)
names="D B K"
name_list=(D B K)
declare -A ref
kills=0 resumes=0 completed=0 failures=0 ops=0 compacts=0 removes=0

fail() {
	failures=$((failures + 1))
	echo "FAIL (op $ops, kill $kills): $*"
}

values() { # store name out.npy: the whole matrix (Dense, BlockDiag) or its diagonal (KFAC)
	rm -f "$3"
	if [ "$2" = K ]; then
		"$tool" eval "$1" "$2" diag --out "$3" >/dev/null 2>&1
	else
		"$tool" export "$1" "$2" --npy "$3" >/dev/null 2>&1
	fi
}

# The traces and values of uninterrupted builds, and how long each operation takes.
t0=$(date +%s%N)
for n in $names; do
	# shellcheck disable=SC2086
	"$tool" build ref.store "$n" ${args[$n]} "${model[@]}" >/dev/null 2>&1 ||
		{ echo "torture_kill: the reference build of $n failed" >&2; exit 1; }
	ref[$n]=$("$tool" eval ref.store "$n" trace 2>/dev/null)
	values ref.store "$n" "ref.$n.npy" || { echo "torture_kill: reading $n failed" >&2; exit 1; }
done
span_ms=$((($(date +%s%N) - t0) / 3000000))
echo "reference traces: D ${ref[D]}, B ${ref[B]}, K ${ref[K]}; a build takes ~${span_ms} ms"

state_of() { # store name -> complete | building | absent
	"$tool" info "$1" "$2" 2>/dev/null | awk '$1 == "state" { print $2; f = 1 } END { if (!f) print "absent" }'
}

# A store verifies, and every complete matrix has the trace and the values
# (bit for bit) of the uninterrupted build.
check_store() {
	local s=$1 out n st tr
	out=$("$tool" verify "$s" 2>&1) || fail "verify $s: $(echo "$out" | grep -v '^ok' | head -3)"
	for n in $names; do
		st=$(state_of "$s" "$n")
		[ "$st" = complete ] || continue
		tr=$("$tool" eval "$s" "$n" trace 2>/dev/null)
		[ "$tr" = "${ref[$n]}" ] || fail "$s $n: trace '$tr', want '${ref[$n]}'"
		values "$s" "$n" got.npy && cmp -s got.npy "ref.$n.npy" ||
			fail "$s $n: its values differ from the uninterrupted build's"
	done
}

# Runs "$@" in the background and SIGKILLs it after a random delay in
# [0, 1.5 span); returns 0 if it was killed, 1 if it ended first (with its
# status in $last_rc).
run_kill() {
	local pid delay
	"$@" >/dev/null 2>&1 &
	pid=$!
	delay=$((RANDOM % (span_ms * 3 / 2 + 1)))
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	if kill -9 "$pid" 2>/dev/null; then
		wait "$pid" 2>/dev/null
		kills=$((kills + 1))
		return 0
	fi
	wait "$pid"
	last_rc=$?
	return 1
}

while [ "$kills" -lt "$kills_wanted" ]; do
	ops=$((ops + 1))
	r=$((RANDOM % 10))
	n=${name_list[$((RANDOM % 3))]}
	if [ "$r" -lt 6 ]; then
		# build, or resume an interrupted one; a complete one first goes
		st=$(state_of w.store "$n")
		if [ "$st" = complete ]; then
			"$tool" rm w.store "$n" >/dev/null 2>&1 || fail "rm w.store $n"
			st=absent
		fi
		[ "$st" = building ] && resumes=$((resumes + 1))
		# shellcheck disable=SC2086
		if ! run_kill "$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume; then
			if [ "$last_rc" = 0 ]; then
				completed=$((completed + 1))
			else
				fail "build $n ($st before) exited $last_rc"
				"$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume 2>&1 | tail -2
			fi
		fi
	elif [ "$r" -lt 8 ]; then
		removes=$((removes + 1))
		if ! run_kill "$tool" rm w.store "$n"; then
			[ "$last_rc" = 0 ] || [ "$(state_of w.store "$n")" = absent ] ||
				fail "rm $n exited $last_rc"
		fi
	else
		compacts=$((compacts + 1))
		rm -rf c.store
		if [ -d w.store ] && ! run_kill "$tool" compact w.store c.store; then
			if [ "$last_rc" = 0 ]; then
				check_store c.store
				rm -rf w.store && mv c.store w.store
			else
				fail "compact exited $last_rc"
			fi
		fi
	fi
	[ -d w.store ] && check_store w.store
done

# Finally every matrix finishes (resumed where interrupted) and checks.
for n in $names; do
	st=$(state_of w.store "$n")
	[ "$st" = building ] && resumes=$((resumes + 1))
	[ "$st" = complete ] ||
		"$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume >/dev/null 2>&1 ||
		fail "final build of $n ($st)"
done
check_store w.store
echo "operations $ops, kills $kills, resumes $resumes, completed builds $completed," \
	"rm $removes, compact $compacts, failures $failures"
[ "$failures" = 0 ]
