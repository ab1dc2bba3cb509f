#!/bin/sh
# Runs every libFuzzer target of a fuzz build for SECONDS each, one after
# the other, each after running its regression inputs once, on a copy of
# its seed corpus (the tree is left as it is), under
# ASan and UBSan. Prints the executions per target and a summary line; a
# crash or a failed property makes it exit 1 and leaves the input in
# tests/fuzz/crashes/ (to be kept as a regression input under
# tests/fuzz/regressions/<target>/ once understood).
#
#   CC=clang meson setup BUILD -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
#   tests/fuzz/run.sh BUILD 60
set -u

usage() {
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
}

[ $# -eq 2 ] || usage
build=$1
seconds=$2
case $seconds in '' | *[!0-9]*) usage ;; esac
here=$(cd "$(dirname "$0")" && pwd)

# target:max_len. Tasks are at most 64 KiB; the editors' texts are lines,
# and 16 KiB of them is plenty to reach every branch; the framer's limits
# are scaled down by its input, and 4 KiB crosses them many times over.
targets="task:65536 authkeys:16384 sshdconf:16384 framing:4096 tasklist:65536"

work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT INT TERM

# Only the fuzz targets: the rest of the tree is no business of this run.
exes=""
for entry in $targets; do
	exes="$exes tests/fuzz/fuzz-${entry%%:*}"
done
# shellcheck disable=SC2086
if ! meson compile -C "$build" $exes >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	echo "fuzz: cannot build the targets in $build (configured with -Dfuzz=true?)" >&2
	exit 2
fi

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

n_targets=0
total=0
failed=0
for entry in $targets; do
	name=${entry%%:*}
	max_len=${entry#*:}
	exe=$build/tests/fuzz/fuzz-$name
	if [ ! -x "$exe" ]; then
		echo "fuzz: $exe is missing: configure the build with -Dfuzz=true and build it" >&2
		exit 2
	fi
	n_targets=$((n_targets + 1))
	dir=$work/$name
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp "$here/corpus/$name"/* "$dir/corpus/" 2>/dev/null

	# Every regression input once first: a fixed bug stays fixed.
	if [ -d "$here/regressions/$name" ] && ls "$here/regressions/$name"/* >/dev/null 2>&1; then
		if ! "$exe" -error_exitcode=1 "$here/regressions/$name"/* >"$dir/regressions.log" 2>&1; then
			failed=$((failed + 1))
			echo "fuzz-$name: a regression input fails again"
			grep -E '^fuzz: property failed|^  at |^SUMMARY: |^Running: ' "$dir/regressions.log" | sed 's/^/    /'
			continue
		fi
		echo "fuzz-$name: $(ls "$here/regressions/$name" | wc -l) regression inputs pass"
	fi

	set -- -max_total_time="$seconds" -max_len="$max_len" -timeout=25 \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/"
	[ -f "$here/$name.dict" ] && set -- "$@" -dict="$here/$name.dict"
	"$exe" "$@" "$dir/corpus" >"$dir/log" 2>&1
	rc=$?

	# "Done N runs" at a normal end; after a crash only the final stats.
	runs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$dir/log" | tail -n 1)
	[ -n "$runs" ] ||
		runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$dir/log" | tail -n 1)
	[ -n "$runs" ] || runs=0
	total=$((total + runs))

	if [ "$rc" -eq 0 ]; then
		echo "fuzz-$name: $runs executions in ${seconds}s, ok"
		continue
	fi
	failed=$((failed + 1))
	echo "fuzz-$name: $runs executions, FAILED (exit $rc)"
	grep -E '^fuzz: property failed|^  at |^SUMMARY: |^==[0-9]+==ERROR' "$dir/log" | sed 's/^/    /'
	mkdir -p "$here/crashes"
	for f in "$dir/artifacts"/*; do
		[ -f "$f" ] || continue
		dest=$here/crashes/$name-$(basename "$f")
		cp "$f" "$dest"
		echo "    input saved: $dest"
	done
	cp "$dir/log" "$here/crashes/$name.log"
	echo "    log saved: $here/crashes/$name.log"
done

echo "fuzz: $n_targets targets, $total executions, $failed failed"
[ "$failed" -eq 0 ]
