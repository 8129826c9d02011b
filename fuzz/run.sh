#!/usr/bin/env bash
# Runs every built fuzz target for FUZZ_SECONDS from fuzz/seeds/<name> and a
# corpus kept under $B/fuzz; prints TAP ("ok N - fuzz_x") so tests/run.sh can
# count it. Exit status 1 if any target found a crash, leak or timeout.
set -u
B=${B:-build}
secs=${FUZZ_SECONDS:-20}
n=0 rc=0
targets=$(find "$B/fuzz" -maxdepth 1 -name 'fuzz_*' -type f -executable 2>/dev/null | sort)
echo "1..$(echo "$targets" | grep -c . || true)"
for f in $targets; do
  name=$(basename "$f")
  n=$((n + 1))
  mkdir -p "$B/fuzz/corpus-$name"
  if "$f" -artifact_prefix="$B/fuzz/" -max_total_time="$secs" -max_len=4096 -timeout=10 \
       "$B/fuzz/corpus-$name" "fuzz/seeds/$name" > "$B/fuzz/$name.log" 2>&1; then
    echo "ok $n - $name ($(grep -o 'Done [0-9]* runs' "$B/fuzz/$name.log" | grep -o '[0-9]*') runs in ${secs}s)"
  else
    echo "not ok $n - $name: see $B/fuzz/$name.log"
    tail -n 20 "$B/fuzz/$name.log" | sed 's/^/# /'
    rc=1
  fi
done
exit $rc
