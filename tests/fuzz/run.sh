#!/bin/bash
# The fuzz targets (tests/fuzz/fuzz_*.c, built by `make fuzz-bins` into
# build/fuzz/bin). Every target replays its corpus (tests/fuzz/corpus/NAME:
# real inputs and every crash ever found), then fuzzes from it for
# FUZZ_SECONDS (default 8; `make fuzz`: 300). New inputs go to a scratch
# folder, not into the repo. A crash leaves its input under
# build/fuzz/crashes/NAME/: add it to the corpus once it is fixed.
# Prints one line per target (executions, new coverage) and, last,
# "fuzz: N passed, M failed". An input that takes over 10 s is a failure (a
# hang), like a crash.
#   tests/fuzz/run.sh [long] [NAME...]
set -uo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${FUZZ_SECONDS:-8}
if [ "${1:-}" = long ]; then
	SECONDS_EACH=${FUZZ_SECONDS:-300}
	shift
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		n=$(basename "$f" .c)
		names+=("${n#fuzz_}")
	done
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
pass=0
fail=0
for n in "${names[@]}"; do
	bin=build/fuzz/bin/fuzz_$n
	corpus=tests/fuzz/corpus/$n
	crashes=build/fuzz/crashes/$n
	scratch=$(mktemp -d /tmp/hypeman-fuzz-XXXXXX)
	mkdir -p "$crashes"
	if [ ! -x "$bin" ] || [ ! -d "$corpus" ]; then
		echo "  FAIL fuzz_$n: no $bin or no $corpus"
		fail=$((fail + 1))
		continue
	fi
	log=build/fuzz/fuzz_$n.log
	# Replay: every corpus input once.
	if ! "$bin" -timeout=10 -runs=0 "$corpus" >"$log" 2>&1; then
		echo "  FAIL fuzz_$n: a corpus input fails (see $log)"
		tail -30 "$log"
		fail=$((fail + 1))
		rm -rf "$scratch"
		continue
	fi
	# Fuzz: from the corpus, new inputs into the scratch folder.
	if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-artifact_prefix="$crashes/" "$scratch" "$corpus" >>"$log" 2>&1; then
		runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -1)
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "  ok   fuzz_$n ($runs, $cov, $(ls "$scratch" | wc -l) new inputs)"
		pass=$((pass + 1))
	else
		echo "  FAIL fuzz_$n: crashed (input in $crashes/, log $log)"
		grep -E "ERROR|SUMMARY|runtime error" "$log" | head -5
		fail=$((fail + 1))
	fi
	rm -rf "$scratch"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
