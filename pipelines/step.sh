#!/usr/bin/env bash
# step.sh OUTPUT MANIFEST "INPUTS" -- COMMAND...
# Runs one pipeline step and appends to MANIFEST a JSON line recording the
# output, the command, the SHA-256 of every input file and the tool version.
# The command writes OUTPUT itself (atomically); on failure nothing is recorded.
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
jq -nc --arg out "$out" --arg cmd "$*" --argjson in "$hashes" --arg ver "${WDL_VERSION:-unknown}" \
  --argjson sec "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')" \
  '{output: $out, command: $cmd, inputs: $in, version: $ver, seconds: $sec}' >> "$manifest"
