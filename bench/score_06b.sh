#!/usr/bin/env bash
# Qwen3-0.6B-shaped scoring and greedy decoding, wdl against transformers
# (BENCH_06B=1 make bench, or on its own: B=build BENCH_PY=... bash
# bench/score_06b.sh). A random-init model with Qwen3-0.6B's configuration
# (28 layers, hidden 1024, 16/8 heads, head_dim 128, ffn 3072, vocab
# 151,936, tied; BF16 on disk) from wdl-init --config, the byte tokenizer
# (or Qwen3's tokenizer from ../shared where present, needed for decoding); N06B (16) records of the built-in mix task at
# difficulty 4 (GSM8K-like length), fixed seed. wdl-score at its defaults
# (batch 16) in fp32 and bf16 under /usr/bin/time (peak RSS, wall incl.
# loading); transformers' forward on the same token sequences (the ids come
# from wdl-tok on the plain template's text, plus the end token), fp32 and
# bf16; greedy decoding of GEN_NEW (32) tokens for GEN_N (4) prompts, and
# for the first of them alone: wdl-eval -m --max-new vs model.generate,
# fp32 and bf16 each. SCORE_ROUNDS (3) paired rounds of the scoring, each
# wdl-score then transformers back to back: the ratio per round and the
# verdict on their median (this machine's speed drifts from minute to
# minute; one pair can fall either way). THREADS (2) threads everywhere. PRECISIONS: "fp32
# bf16", or "fp32" alone on a CPU without bf16 instructions (AVX512-BF16 or
# AMX), where both sides' bf16 runs emulated or in software and says
# nothing about either (and transformers' takes many minutes).
# Slow on 2 cores (several minutes). Prints JSON lines and a summary.
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
PY=${BENCH_PY:-$B/bench-venv/bin/python}
TH=${THREADS:-2}
N=${N06B:-16}
GEN_N=${GEN_N:-4}
GEN_NEW=${GEN_NEW:-32}
ROUNDS=${SCORE_ROUNDS:-3}
case $ROUNDS in '' | *[!0-9]* | 0*) echo "score_06b.sh: SCORE_ROUNDS must be a positive integer, not '$ROUNDS'" >&2; exit 2 ;; esac
if [ -z "${PRECISIONS:-}" ]; then
  PRECISIONS=fp32
  grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo && PRECISIONS="fp32 bf16"
fi
[ "$PRECISIONS" = "fp32 bf16" ] || echo "# precisions: $PRECISIONS (bf16 needs AVX512-BF16 or AMX to say anything)"
export PATH="$PWD/$B/bin:$PATH"
D=${BENCH_06B_DIR:-$(mktemp -d)}
[ -n "${BENCH_06B_DIR:-}" ] || trap 'rm -rf "$D"' EXIT
mkdir -p "$D"   # a BENCH_06B_DIR that does not exist yet
out=$D/results.jsonl
: > "$out"
cat > "$D/config.json" <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": false,
 "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128,
 "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
 "max_position_embeddings": 40960, "max_window_layers": 28, "num_attention_heads": 16,
 "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null,
 "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
 "use_cache": true, "use_sliding_window": false, "vocab_size": 151936}
JSON
# BENCH_06B_CONFIG=file: another config instead (a quick check of this script)
[ -n "${BENCH_06B_CONFIG:-}" ] && cp "$BENCH_06B_CONFIG" "$D/config.json"
echo "# Qwen3-0.6B-shaped model (random init, seed 1, BF16 on disk), $TH threads, in $D"
# Qwen3's tokenizer where ../shared (or $WDL_SHARED) has it: greedy decoding
# of a random model emits ids all over the vocabulary, which only it can
# decode; without it, the byte tokenizer and no decoding comparison.
TOKJ=${WDL_SHARED:-../shared}/data/qwen3-tokenizer/tokenizer.json
if [ -f "$TOKJ" ]; then tok=$TOKJ; else tok=byte; GEN_N=0; fi
[ -d "$D/m" ] || wdl-init --config "$D/config.json" --tokenizer "$tok" --template plain --bf16 --seed 1 -o "$D/m" -q
wdl-data gen --task mix --n "$N" --seed 1 --split test --difficulty 4 > "$D/recs.jsonl"
head -n "$GEN_N" "$D/recs.jsonl" > "$D/gen.jsonl"
head -n 1 "$D/gen.jsonl" > "$D/gen1.jsonl"   # one prompt alone: decoding at batch 1
# the sequences the programs feed the model (plain template + end token)
jq -c '{text: ("Question: " + .prompt + "\nAnswer: " + .completion)}' "$D/recs.jsonl" |
  wdl-tok -t "$D/m" encode | jq -c '.ids + [151643]' > "$D/ids.jsonl"
jq -c '{text: ("Question: " + .prompt + "\nAnswer: ")}' "$D/gen.jsonl" |
  wdl-tok -t "$D/m" encode | jq -c '.ids' > "$D/gen_ids.jsonl"
head -n 1 "$D/gen_ids.jsonl" > "$D/gen1_ids.jsonl"
tokens=$(jq -s 'map(length) | add' "$D/ids.jsonl")
echo "# scoring: $N records, $tokens tokens; decoding: $GEN_N prompts x $GEN_NEW new tokens"

timed() { # label kind tokens cmd...: one JSON line from /usr/bin/time -v
  local label=$1 kind=$2 tok=$3; shift 3
  /usr/bin/time -v "$@" > "$D/$label.out" 2> "$D/$label.time"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$D/$label.time")
  rss=$(awk -F': ' '/Maximum resident set size/ { print int($2 / 1024) }' "$D/$label.time")
  jq -cn --arg l "$label" --arg k "$kind" --argjson w "$wall" --argjson r "$rss" --argjson t "$tok" \
    --argjson rd "$round" \
    '{impl: "wdl", bench: $k, run: $l, round: $rd, tokens: $t, wall_s: $w, peak_rss_mb: $r, tokens_per_s_with_load: ($t / $w * 100 | round / 100)}' | tee -a "$out"
}
hf=0
if [ -x "$PY" ] && "$PY" -c 'import transformers' 2>/dev/null; then hf=1; else
  echo "# transformers: skipped (run make bench-deps, or set BENCH_PY)"; fi
for round in $(seq 1 "$ROUNDS"); do
  for p in $PRECISIONS; do
    timed "score_$p" score "$tokens" wdl-score -m "$D/m" --field h --threads "$TH" --precision "$p" "$D/recs.jsonl"
    [ "$hf" = 0 ] || "$PY" bench/hf_06b.py score "$D/m" "$D/ids.jsonl" --dtype "$p" --threads "$TH" |
      jq -c --argjson rd "$round" '.round = $rd' | tee -a "$out"
  done
done
round=1
for p in $( [ "$GEN_N" -gt 0 ] && echo $PRECISIONS); do
  timed "gen_$p" generate "$((GEN_N * GEN_NEW))" wdl-eval -m "$D/m" --max-new "$GEN_NEW" --threads "$TH" --precision "$p" \
    --preds "$D/preds_$p.jsonl" "$D/gen.jsonl"
  timed "gen1_$p" generate1 "$GEN_NEW" wdl-eval -m "$D/m" --max-new "$GEN_NEW" --threads "$TH" --precision "$p" \
    --preds "$D/preds1_$p.jsonl" "$D/gen1.jsonl"
done

if [ "$hf" = 1 ]; then
  for p in $( [ "$GEN_N" -gt 0 ] && echo $PRECISIONS); do
    "$PY" bench/hf_06b.py generate "$D/m" "$D/gen_ids.jsonl" --dtype "$p" --threads "$TH" --max-new "$GEN_NEW" | tee -a "$out"
    "$PY" bench/hf_06b.py generate "$D/m" "$D/gen1_ids.jsonl" --dtype "$p" --threads "$TH" --max-new "$GEN_NEW" |
      jq -c '.bench = "generate1"' | tee -a "$out"
  done
fi

echo "# summary, Qwen3-0.6B-shaped (tokens/s include loading the model on both sides unless said)"
# the model's bytes in fp32: twice its BF16 file
jq -rs --argjson mb "$(( $(stat -c %s "$D/m/model.safetensors") * 2 / 1048576 ))" '
  def r2: . * 100 | round / 100;
  def ok($x; $t): if $x >= $t then "met" else "MISSED" end;
  def w($b; $r): map(select(.impl == "wdl" and .bench == $b and .run == $r)) | first;
  def h($b; $d): map(select(.impl == "transformers" and .bench == $b and .dtype == $d)) | first;
  def med: sort | if length % 2 == 1 then .[(length - 1) / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  # a scoring run over its rounds: tokens/s the median, peak RSS the largest
  def rounds($a): if ($a | length) == 0 then null else $a[0] + {n: ($a | length),
    tokens_per_s_with_load: ($a | map(.tokens_per_s_with_load) | med | r2), peak_rss_mb: ($a | map(.peak_rss_mb) | max)} +
    (if $a[0].tokens_per_s then {tokens_per_s: ($a | map(.tokens_per_s) | med | r2)} else {} end) end;
  def of($n): if $n > 1 then " (median of \($n) rounds)" else "" end;
  # wdl against transformers, scoring in precision $p, round by round
  def pairs($p): . as $all | [$all[] | select(.impl == "wdl" and .bench == "score" and .run == "score_\($p)")] |
    map(. as $x | ($all | map(select(.impl == "transformers" and .bench == "score" and .dtype == $p and
      .round == $x.round)) | first) as $y | select($y) |
      {r: ($x.tokens_per_s_with_load / $y.tokens_per_s_with_load), rc: ($x.tokens_per_s_with_load / $y.tokens_per_s)});
  def ratio($what; $pr; $t): if ($pr | length) == 1 then
      "\($what) = \($pr[0].r | r2)x (target \($t)x: \(ok($pr[0].r; $t)); against its compute only \($pr[0].rc | r2)x)"
    else "\($what) = median \($pr | map(.r) | med | r2)x over \($pr | length) paired rounds (\($pr | map(.r | r2 | tostring + "x") | join(", "))) (target \($t)x: \(ok($pr | map(.r) | med; $t)), on the median; against its compute only median \($pr | map(.rc) | med | r2)x)" end;
  rounds(map(select(.impl == "wdl" and .bench == "score" and .run == "score_fp32"))) as $s32 |
  rounds(map(select(.impl == "wdl" and .bench == "score" and .run == "score_bf16"))) as $s16 |
  w("generate"; "gen_fp32") as $g32 | w("generate"; "gen_bf16") as $g16 |
  rounds(map(select(.impl == "transformers" and .bench == "score" and .dtype == "fp32"))) as $h32 |
  rounds(map(select(.impl == "transformers" and .bench == "score" and .dtype == "bf16"))) as $h16 |
  pairs("fp32") as $p32 | pairs("bf16") as $p16 | h("generate"; "fp32") as $hg |
  h("generate"; "bf16") as $hg16 |
  w("generate1"; "gen1_fp32") as $o32 | w("generate1"; "gen1_bf16") as $o16 |
  h("generate1"; "fp32") as $ho32 | h("generate1"; "bf16") as $ho16 |
  "wdl-score fp32: \($s32.tokens_per_s_with_load) tokens/s\(of($s32.n)), peak RSS \($s32.peak_rss_mb) MB = model fp32 bytes \(if $s32.peak_rss_mb >= $mb then "+ \(($s32.peak_rss_mb - $mb) / 1024 | r2)" else "- \(($mb - $s32.peak_rss_mb) / 1024 | r2)" end) GB (target <= +1.5 GB: \(ok(1536 - ($s32.peak_rss_mb - $mb); 0)))",
  (if $s16 then "wdl-score bf16: \($s16.tokens_per_s_with_load) tokens/s\(of($s16.n)), peak RSS \($s16.peak_rss_mb) MB" else empty end),
  (if $h32 then
    "transformers fp32: \($h32.tokens_per_s_with_load) tokens/s with load (\($h32.tokens_per_s) compute only)\(of($h32.n)), peak RSS \($h32.peak_rss_mb) MB",
    (if $h16 then "transformers bf16: \($h16.tokens_per_s_with_load) tokens/s with load (\($h16.tokens_per_s) compute only)\(of($h16.n)), peak RSS \($h16.peak_rss_mb) MB" else empty end),
    ratio("wdl fp32 / transformers fp32"; $p32; 3),
    (if ($p16 | length) > 0 then ratio("wdl bf16 / transformers bf16"; $p16; 1.5) else empty end),
    (if $g32 and $hg then "greedy decoding: wdl-eval fp32 \($g32.tokens_per_s_with_load) tokens/s; transformers generate fp32 \($hg.tokens_per_s_with_load) with load (\($hg.tokens_per_s) compute only)" else empty end),
    (if $g16 and $hg16 then "greedy decoding bf16: wdl-eval \($g16.tokens_per_s_with_load) tokens/s; transformers generate \($hg16.tokens_per_s_with_load) (\($hg16.tokens_per_s))" else empty end),
    (if $g32 and $hg then
    "wdl fp32 / transformers generate fp32 = \($g32.tokens_per_s_with_load / $hg.tokens_per_s_with_load | r2)x (target 2x: \(ok($g32.tokens_per_s_with_load / $hg.tokens_per_s_with_load; 2)); against its compute only \($g32.tokens_per_s_with_load / $hg.tokens_per_s | r2)x)",
    (if $g16 and $hg16 then "wdl bf16 / transformers generate bf16 = \($g16.tokens_per_s_with_load / $hg16.tokens_per_s_with_load | r2)x (target 2x: \(ok($g16.tokens_per_s_with_load / $hg16.tokens_per_s_with_load; 2)); against its compute only \($g16.tokens_per_s_with_load / $hg16.tokens_per_s | r2)x)" else empty end) else "greedy decoding: not measured" end),
    (if $o32 and $ho32 then
    "one prompt alone: wdl / transformers generate = fp32 \($o32.tokens_per_s_with_load / $ho32.tokens_per_s_with_load | r2)x (\($o32.tokens_per_s_with_load) vs \($ho32.tokens_per_s_with_load) tokens/s with load)\(if $o16 and $ho16 then ", bf16 \($o16.tokens_per_s_with_load / $ho16.tokens_per_s_with_load | r2)x (\($o16.tokens_per_s_with_load) vs \($ho16.tokens_per_s_with_load))" else "" end)" else empty end)
   else "transformers: not measured" end)
' "$out"
