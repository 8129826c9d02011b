#!/usr/bin/env bash
# Runs every C test binary (cmocka, TAP output) and every bats file, then
# prints one closing line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
export PATH="$PWD/${B:-build}/bin:$PATH"
export CMOCKA_MESSAGE_OUTPUT=TAP
# test binaries are not wdl programs (no cli_parse): choose sleeping OpenMP
# threads for them here, as the programs do for themselves
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
pass=0 fail=0 skip=0 failed_names=()
count() { # $1 = label; reads TAP on stdin, echoes it, updates counters via a file
  local label=$1 line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
      *"ok "*"# skip"*|*"ok "*"# SKIP"*) echo skip >>"$tally" ;;
      "not ok "*) echo fail >>"$tally"; echo "$label: $line" >>"$failures" ;;
      "ok "*) echo pass >>"$tally" ;;
    esac
  done
}
tally=$(mktemp) failures=$(mktemp)
trap 'rm -f "$tally" "$failures"' EXIT
for t in ${B:-build}/tests/test_*; do
  [ -x "$t" ] || continue
  echo "# $t"
  before=$(wc -l <"$tally")
  "$t" 2>&1 | count "$(basename "$t")"
  rc=${PIPESTATUS[0]}
  after=$(wc -l <"$tally")
  # a crash or a non-zero exit with no failing test line still fails
  if [ "$rc" -ne 0 ] && ! grep -q "^$(basename "$t"): " "$failures"; then
    echo fail >>"$tally"; echo "$(basename "$t"): exited with status $rc" >>"$failures"
  elif [ "$after" -eq "$before" ]; then
    echo fail >>"$tally"; echo "$(basename "$t"): ran no test" >>"$failures"
  fi
done
for b in tests/*.bats; do
  [ -f "$b" ] || continue
  echo "# $b"
  bats --tap "$b" 2>&1 | count "$(basename "$b")"
done
if [ "${FUZZ_SECONDS:-0}" != 0 ] && ls "${B:-build}"/fuzz/fuzz_* >/dev/null 2>&1; then
  echo "# fuzz targets, ${FUZZ_SECONDS}s each"
  bash fuzz/run.sh 2>&1 | count fuzz
fi
pass=$(grep -c '^pass$' "$tally"); fail=$(grep -c '^fail$' "$tally"); skip=$(grep -c '^skip$' "$tally")
if [ "$fail" -gt 0 ]; then echo "# failures:"; sed 's/^/#   /' "$failures"; fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
