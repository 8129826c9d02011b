#!/usr/bin/env bash
# step.sh "OUTPUTS" MANIFEST "INPUTS" -- COMMAND...
# Runs one pipeline step and appends to MANIFEST a JSON line for each of
# its outputs (one, or several that one command writes), recording the
# output, the command, the SHA-256 of every input file and the tool version.
# The command writes its outputs itself (atomically); on failure nothing is
# recorded.
set -euo pipefail
out=$1 manifest=$2 inputs=$3
shift 3
[ "$1" = "--" ] && shift
start=$(date +%s.%N)
"$@"
end=$(date +%s.%N)
hashes="{}"
for f in $inputs; do
  [ -f "$f" ] || continue
  h=$(sha256sum "$f" | cut -d' ' -f1)
  hashes=$(jq -c --arg f "$f" --arg h "$h" '. + {($f): $h}' <<<"$hashes")
done
mkdir -p "$(dirname "$manifest")"
sec=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
for o in $out; do
  jq -nc --arg out "$o" --arg cmd "$*" --argjson in "$hashes" --arg ver "${WDL_VERSION:-unknown}" --argjson sec "$sec" \
    '{output: $out, command: $cmd, inputs: $in, version: $ver, seconds: $sec}'
done >> "$manifest"
