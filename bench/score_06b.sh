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
# wdl-score then transformers back to back, and GEN_ROUNDS (3) of the
# decoding, each wdl-eval then generate: the ratio per round and the
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
GROUNDS=${GEN_ROUNDS:-3}
case $GROUNDS in '' | *[!0-9]* | 0*) echo "score_06b.sh: GEN_ROUNDS must be a positive integer, not '$GROUNDS'" >&2; exit 2 ;; esac
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
for round in $(seq 1 "$GROUNDS"); do
  for p in $( [ "$GEN_N" -gt 0 ] && echo $PRECISIONS); do
    timed "gen_$p" generate "$((GEN_N * GEN_NEW))" wdl-eval -m "$D/m" --max-new "$GEN_NEW" --threads "$TH" --precision "$p" \
      --preds "$D/preds_$p.jsonl" "$D/gen.jsonl"
    [ "$hf" = 0 ] || "$PY" bench/hf_06b.py generate "$D/m" "$D/gen_ids.jsonl" --dtype "$p" --threads "$TH" --max-new "$GEN_NEW" |
      jq -c --argjson rd "$round" '.round = $rd' | tee -a "$out"
    timed "gen1_$p" generate1 "$GEN_NEW" wdl-eval -m "$D/m" --max-new "$GEN_NEW" --threads "$TH" --precision "$p" \
      --preds "$D/preds1_$p.jsonl" "$D/gen1.jsonl"
    [ "$hf" = 0 ] || "$PY" bench/hf_06b.py generate "$D/m" "$D/gen1_ids.jsonl" --dtype "$p" --threads "$TH" --max-new "$GEN_NEW" |
      jq -c --argjson rd "$round" '.bench = "generate1" | .round = $rd' | tee -a "$out"
  done
done

echo "# summary, Qwen3-0.6B-shaped (tokens/s include loading the model on both sides unless said)"
# the model's bytes in fp32: twice its BF16 file
jq -rs --argjson mb "$(( $(stat -c %s "$D/m/model.safetensors") * 2 / 1048576 ))" -f bench/score_06b.jq "$out"
