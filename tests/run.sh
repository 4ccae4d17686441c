#!/bin/bash
# `make test` after the build: every suite, then one closing summary line.
#   unit         cmocka tests under ASan+UBSan (build/san/tests/test_*)
#   integration  the real daemon and CLI driven over HTTP (node --test)
#   cold         the instance suites again with BASE_BOOT=off WARM_RESTORES=0
#   sdk          the official SDKs from npm against the real daemon
#   fuzz         every fuzz target: its corpus replayed, then a few seconds of fuzzing
#   format       clang-format --dry-run on every tracked C file
# Suites can be picked: tests/run.sh unit sdk. Exit status is non-zero if
# anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(unit fuzz integration cold sdk format)
PASS=0
FAIL=0
SKIP=0
FAILED=()
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"

note() { printf '\n==> %s\n' "$*"; }

run_unit() {
	note "unit tests (ASan+UBSan)"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	for t in build/san/tests/test_*; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		out=$("$t" 2>&1)
		rc=$?
		n=$(printf '%s\n' "$out" | sed -n 's/^\[==========\] \([0-9]*\) test(s) run.*/\1/p' | tail -1)
		p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
		k=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
		n=${n:-0}
		p=${p:-0}
		k=${k:-0}
		# Failed, or could not run (cmocka's ERROR: a setup that failed).
		f=$((n - p - k))
		if [ $rc -ne 0 ] && [ "$f" -le 0 ]; then f=1; fi # crashed or sanitizer report
		PASS=$((PASS + p))
		FAIL=$((FAIL + f))
		SKIP=$((SKIP + k))
		if [ "$f" -ne 0 ]; then
			printf '%s\n' "$out"
			FAILED+=("unit/$name")
			printf '  FAIL %s (%s passed, %s failed)\n' "$name" "$p" "$f"
		else
			printf '  ok   %s (%s tests%s)\n' "$name" "$p" "$([ "$k" -ne 0 ] && echo ", $k skipped")"
		fi
	done
}

# node --test over the given files; counts come from the spec reporter's summary.
run_node() {
	local suite=$1
	shift
	local files=("$@")
	[ ${#files[@]} -gt 0 ] || return 0
	local log="$LOGDIR/$suite.log"
	node --test --test-reporter=spec "${files[@]}" 2>&1 | tee "$log" | grep -E '^\s*(✔|✖|﹣)|^ℹ (pass|fail|skipped)'
	local p f
	p=$(sed -n 's/^ℹ pass \([0-9]*\)/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^ℹ fail \([0-9]*\)/\1/p' "$log" | tail -1)
	k=$(sed -n 's/^ℹ skipped \([0-9]*\)/\1/p' "$log" | tail -1)
	p=${p:-0}
	f=${f:-1}
	k=${k:-0}
	PASS=$((PASS + p))
	FAIL=$((FAIL + f))
	SKIP=$((SKIP + k))
	if [ "$f" -ne 0 ]; then
		FAILED+=("$suite")
		echo "  (full log: $log)"
	fi
}

# Install the pinned SDKs when the lock file is newer than the install (the
# SDK suite uses them, and so do the network tests that drive /v1/services
# inside their namespace, where binding ports 80 and 443 is safe).
ensure_sdks() {
	if [ ! -f tests/sdk/node_modules/.package-lock.json ] ||
		[ tests/sdk/package-lock.json -nt tests/sdk/node_modules/.package-lock.json ]; then
		(cd tests/sdk && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || {
			FAIL=$((FAIL + 1))
			FAILED+=("sdk (npm ci)")
			return 1
		}
	fi
}

run_integration() {
	note "integration tests"
	ensure_sdks || return
	run_node integration tests/registry/*.test.mjs tests/integration/*.test.mjs
}

# The suites that boot instances, again with every boot cold: with bases on
# (the default, and the run above) which boots come from a base depends on
# timing (a shape's first create boots cold while its base is built).
run_cold() {
	note "instance tests again with BASE_BOOT=off (every boot cold)"
	ensure_sdks || return
	export BASE_BOOT=off WARM_RESTORES=0
	run_node cold tests/integration/{guest,instances,lifecycle,standby,volumes}.test.mjs
	unset BASE_BOOT WARM_RESTORES
}

run_sdk() {
	note "official SDK tests"
	ensure_sdks || return
	run_node sdk tests/sdk/*.test.mjs
}

run_fuzz() {
	note "fuzz targets (libFuzzer, ASan+UBSan)"
	local out
	out=$(tests/fuzz/run.sh 2>&1)
	printf '%s\n' "$out" | grep -v '^fuzz: '
	local p f
	p=$(printf '%s\n' "$out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed/\1/p')
	f=$(printf '%s\n' "$out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed/\2/p')
	PASS=$((PASS + ${p:-0}))
	FAIL=$((FAIL + ${f:-1}))
	[ "${f:-1}" -ne 0 ] && FAILED+=("fuzz")
}

run_format() {
	note "format check (clang-format)"
	if make --no-print-directory format-check; then
		PASS=$((PASS + 1))
		echo "  ok   clang-format"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("format")
	fi
}

for s in "${SUITES[@]}"; do
	case $s in
	unit | fuzz | integration | cold | sdk | format) "run_$s" ;;
	*) echo "unknown suite: $s" >&2; exit 2 ;;
	esac
done

# Every test cleans up after itself: a VM still running for a test data dir
# that is gone is a leak. Report it as a failure, then stop it. (VMs of a
# test still running elsewhere on this machine have their data dir and are
# left alone.)
leaked=
for p in $(pgrep -f "qemu-system.*/hypeman-test-" || true); do
	dir=$(tr '\0' '\n' </proc/"$p"/cmdline 2>/dev/null | grep -o '/[^,]*/hypeman-test-[^/]*' | head -1)
	[ -n "$dir" ] && [ ! -d "$dir" ] && leaked="$leaked $p"
done
if [ -n "$leaked" ]; then
	note "leaked VMs"
	for p in $leaked; do
		printf '  LEAK pid %s: %s\n' "$p" "$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | grep -o 'instances/[a-z0-9]*' | head -1)"
		kill "$p" 2>/dev/null || true
	done
	FAIL=$((FAIL + 1))
	FAILED+=("leaked VMs")
fi

# Likewise guest RAM files on tmpfs (src/instance/memory.c) of a test data
# dir that is gone: a leak of host memory. Their folders go either way.
leaked=
for owner in /dev/shm/hypeman-*/data_dir; do
	[ -f "$owner" ] || continue
	dir=$(cat "$owner")
	[ -d "$dir" ] && continue
	case $dir in
	*/hypeman-test-* | */hypeman-full-*)
		for f in "$(dirname "$owner")"/*.ram; do [ -e "$f" ] && leaked="$leaked $f"; done
		rm -rf "$(dirname "$owner")"
		;;
	esac
done
if [ -n "$leaked" ]; then
	note "leaked guest memory files"
	for f in $leaked; do printf '  LEAK %s\n' "$f"; done
	FAIL=$((FAIL + 1))
	FAILED+=("leaked guest memory")
fi

echo
[ ${#FAILED[@]} -gt 0 ] && echo "failed: ${FAILED[*]}"
echo "$PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
