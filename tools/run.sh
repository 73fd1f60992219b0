#!/bin/sh
# pspace quick start: installs what is missing (Debian packages only), builds,
# then runs the demo or the whole test suite.
#
#   tools/run.sh demo [ARGS...]   Release build, then 'pspace demo ARGS...'
#   tools/run.sh test             Release and ASan+UBSan builds, all tests in both
#   tools/run.sh build            Release build only
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential cmake pkg-config git liblmdb-dev libblis-dev libzstd-dev \
libcmocka-dev liblapack-dev liblapacke-dev libpng-dev python3 python3-numpy python3-pytest python3-torch \
libopenmpi-dev openmpi-bin"
JOBS=$(nproc 2>/dev/null || echo 2)

install_missing() {
	missing=""
	for p in $PACKAGES; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
			missing="$missing $p"
		fi
	done
	[ -z "$missing" ] && return 0
	echo "pspace: installing Debian packages:$missing" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		sudo="sudo"
	fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

build() { # build DIR CMAKE-ARGS...
	dir=$1
	shift
	cmake -S . -B "$dir" "$@" >/dev/null
	cmake --build "$dir" -j "$JOBS"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
demo)
	install_missing
	build build -DCMAKE_BUILD_TYPE=Release
	exec ./build/pspace demo "$@"
	;;
build)
	install_missing
	build build -DCMAKE_BUILD_TYPE=Release
	;;
test)
	install_missing
	build build -DCMAKE_BUILD_TYPE=Release
	(cd build && ctest --output-on-failure -j "$JOBS")
	echo "pspace: the same suite under AddressSanitizer + UndefinedBehaviorSanitizer" >&2
	build build-asan -DCMAKE_BUILD_TYPE=Debug -DPSPACE_SANITIZE=ON -DPSPACE_BENCH=OFF
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j "$JOBS")
	;;
*)
	echo "usage: tools/run.sh demo [ARGS...] | test | build" >&2
	exit 2
	;;
esac
