#!/bin/bash
# Kill torture (not run by ctest): hundreds of SIGKILLs at random points of
# `pspace build` (Dense and BlockDiag out of core with a small --mem and
# small checkpoints, KFAC), `pspace rm`, `pspace compact` and resumed
# builds on one store. After every kill the store must verify (`pspace
# verify` exit 0; interrupted builds are listed as incomplete), every
# complete matrix must give the trace and the values (bit for bit) of an
# uninterrupted build, and a compacted copy likewise before it replaces
# the store. An interrupted Dense or BlockDiag build is finished with
# --resume; an interrupted KFAC build (which cannot resume) is removed and
# built again. Prints kills, resumes and failures; exits 1 on any failure.
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
kills=0 resumes=0 restarts=0 completed=0 failures=0 ops=0 compacts=0 removes=0

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

# The traces and values of uninterrupted builds, and how long each
# operation takes (ms): kills land within 1.3 times that.
declare -A span
ms_since() { echo $((($(date +%s%N) - $1) / 1000000 + 1)); }
for n in $names; do
	t0=$(date +%s%N)
	# shellcheck disable=SC2086
	"$tool" build ref.store "$n" ${args[$n]} "${model[@]}" >/dev/null 2>&1 ||
		{ echo "torture_kill: the reference build of $n failed" >&2; exit 1; }
	span[$n]=$(ms_since "$t0")
	ref[$n]=$("$tool" eval ref.store "$n" trace 2>/dev/null)
	values ref.store "$n" "ref.$n.npy" || { echo "torture_kill: reading $n failed" >&2; exit 1; }
done
t0=$(date +%s%N)
"$tool" compact ref.store c.store >/dev/null || exit 1
span[compact]=$(ms_since "$t0")
t0=$(date +%s%N)
"$tool" rm c.store D >/dev/null || exit 1
span[rm]=$(ms_since "$t0")
rm -rf c.store
echo "reference traces: D ${ref[D]}, B ${ref[B]}, K ${ref[K]}"
echo "uninterrupted (ms): build D ${span[D]}, B ${span[B]}, K ${span[K]}, compact ${span[compact]}, rm ${span[rm]}"

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

# Runs "$@" (an operation that takes about $1 ms) and SIGKILLs it after a
# random delay in [0, 1.3 * $1) unless it ends first; returns 0 if it was
# killed, 1 if it ended (with its status in $last_rc).
run_kill() {
	local ms=$1 delay
	shift
	delay=$((RANDOM * 32768 + RANDOM))
	delay=$((delay % (ms * 13 / 10) + 1))
	timeout --foreground -s KILL "$(printf "%d.%03d" $((delay / 1000)) $((delay % 1000)))" "$@" >/dev/null 2>&1
	last_rc=$?
	# timeout says 124 when it killed the command (137 if it died of the KILL itself)
	if [ "$last_rc" = 124 ] || [ "$last_rc" = 137 ]; then
		kills=$((kills + 1))
		[ $((kills % 25)) = 0 ] && echo "  $kills kills, $ops operations, $failures failures"
		return 0
	fi
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
		# KFAC does not resume: an interrupted one is removed first
		if [ "$st" = building ] && [ "$n" = K ]; then
			"$tool" rm w.store "$n" >/dev/null 2>&1 || fail "rm w.store $n (building)"
			restarts=$((restarts + 1))
			st=absent
		fi
		[ "$st" = building ] && resumes=$((resumes + 1))
		# shellcheck disable=SC2086
		if ! run_kill "${span[$n]}" "$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume; then
			if [ "$last_rc" = 0 ]; then
				completed=$((completed + 1))
			else
				fail "build $n ($st before) exited $last_rc"
				"$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume 2>&1 | tail -2
			fi
		fi
	elif [ "$r" -lt 8 ]; then
		removes=$((removes + 1))
		if ! run_kill "${span[rm]}" "$tool" rm w.store "$n"; then
			[ "$last_rc" = 0 ] || [ "$(state_of w.store "$n")" = absent ] ||
				fail "rm $n exited $last_rc"
		fi
	else
		compacts=$((compacts + 1))
		rm -rf c.store
		if [ -d w.store ] && ! run_kill "${span[compact]}" "$tool" compact w.store c.store; then
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
	if [ "$st" = building ] && [ "$n" = K ]; then
		"$tool" rm w.store "$n" >/dev/null 2>&1 || fail "rm w.store $n (building)"
		restarts=$((restarts + 1))
		st=absent
	fi
	[ "$st" = building ] && resumes=$((resumes + 1))
	[ "$st" = complete ] ||
		"$tool" build w.store "$n" ${args[$n]} "${model[@]}" --resume >/dev/null 2>&1 ||
		fail "final build of $n ($st)"
done
check_store w.store
echo "operations $ops, kills $kills, resumes $resumes, KFAC restarts $restarts," \
	"completed builds $completed," \
	"rm $removes, compact $compacts, failures $failures"
[ "$failures" = 0 ]
