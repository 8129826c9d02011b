#!/usr/bin/env bash
# make bench, MPI part: training tokens/s for 1 rank x 2 threads against
# 2 ranks x 1 thread at the same global batch, the share of rank 0's time
# spent in communication, and the loopback rate of the gradient sum.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
if ! command -v mpirun >/dev/null; then echo "# MPI: skipped (mpirun not installed; make deps)"; exit 0; fi
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
# the bench model of bench_train (hidden 256, 4 layers, 8/4 heads, head_dim 32, ffn 768, vocab 512)
cat > "$d/config.json" <<'JSON'
{"model_type":"qwen3","architectures":["Qwen3ForCausalLM"],"hidden_size":256,"intermediate_size":768,
 "num_hidden_layers":4,"num_attention_heads":8,"num_key_value_heads":4,"head_dim":32,"vocab_size":512,
 "max_position_embeddings":1024,"rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,
 "hidden_act":"silu","torch_dtype":"float32"}
JSON
"$B/bin/wdl-init" --config "$d/config.json" --tokenizer byte --template plain --seed 1 -o "$d/m" -q
"$B/bin/wdl-data" gen --task equation,prog --n 1024 --seed 1 --split train > "$d/train.jsonl"
echo "# MPI: wdl-train, bench model, equation+prog records, 16 sequences per step (8 per micro-batch), 24 steps"
run() { # label, launcher, threads, accum
  $2 "$B/bin/wdl-train" -m "$d/m" -o "$d/out-$1" --batch 8 --accum "$4" --seq 256 --steps 24 --lr 1e-3 \
    --threads "$3" --probe-every 0 --log "$d/log-$1" "$d/train.jsonl" 2>"$d/err-$1" || { cat "$d/err-$1"; return 1; }
  # "N ranks: Cs of rank 0's Ts in communication, Ws waiting for other ranks"
  comm=$(grep -o '[0-9.]*s of rank 0.s [0-9.]*s in communication, [0-9.]*s waiting' "$d/err-$1" |
         awk '{print $1+0, $5+0, $8+0}')
  jq -sc --arg l "$1" --arg c "${comm:-0 1 0}" '.[4:] as $s | ($s | map(.tokens_per_s) | add / length) as $tps |
    ($c | split(" ") | map(tonumber)) as $c |
    {bench: "mpi_train", layout: $l, tokens_per_s: ($tps | floor),
     comm_share: ($c[0] / $c[1]), wait_share: ($c[2] / $c[1])}' "$d/log-$1"
}
run 1x2 env 2 2
run 2x1 "$MPIRUN -np 2" 1 1
echo "# MPI: gradient sum (rank-order reduce-scatter + all-gather) on loopback, 2 ranks"
$MPIRUN -np 2 "$B/bench/bench_allreduce" --threads 1
