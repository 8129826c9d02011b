#!/usr/bin/env bash
# make bench: throughput of the C engine and tokenizer, side by side with
# PyTorch (Debian's python3-torch, eager) and Hugging Face tokenizers where
# those are installed. Prints one JSON line per measurement, then a summary.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
NPROC=$(nproc)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $NPROC cores"

echo "# C engine: reference model (hidden 256, 4 layers, 8/4 heads, head_dim 32, ffn 768, vocab 512, untied), batch 8 x 256"
echo "# fp32 = OpenBLAS, bf16 = oneDNN matmul (bf16 inputs, fp32 accumulation); GEMM rates of both libraries on the model's shapes"
for p in fp32 bf16; do
  for t in $(seq 1 "$NPROC"); do "$B/bench/bench_train" --threads "$t" --steps 10 --repeat 3 --precision "$p" | tee -a "$out"; done
done
echo "# C engine: presets (batch 8 x 256, all cores)"
for p in nano tiny small; do "$B/bench/bench_train" --preset "$p" --threads "$NPROC" --steps 5 | tee -a "$out"; done

PY=${TORCH_PYTHON:-/usr/bin/python3}
if "$PY" -c 'import torch' 2>/dev/null; then
  echo "# PyTorch $("$PY" -c 'import torch; print(torch.__version__)') (eager, same model, AdamW + clipping), best thread count"
  "$PY" bench/torch_train.py --steps 10 --warmup-steps 2 --threads best | tee -a "$out"
  "$PY" bench/torch_train.py --steps 10 --warmup-steps 2 --threads best --forward-only | tee -a "$out"
else
  echo "# PyTorch: skipped ($PY has no torch; 'apt-get install python3-torch' or set TORCH_PYTHON)"
fi

echo "# tokenizer (GSM8K test set, one thread)"
"$B/bench/bench_tok"
TOKPY=${TOK_PYTHON:-$(command -v python3)}
[ -x /opt/fixenv/bin/python ] && [ -z "${TOK_PYTHON:-}" ] && TOKPY=/opt/fixenv/bin/python
"$TOKPY" bench/tok_hf.py

bash bench/mpi.sh | tee "$out.mpi"
grep '^{' "$out.mpi" >> "$out"; rm -f "$out.mpi"

echo "# summary"
jq -rs '
  (map(select(.bench == "train" and .model == "reference" and (.precision // "fp32") == "fp32")) | max_by(.tokens_per_s)) as $c |
  (map(select(.bench == "train" and .model == "reference" and .precision == "bf16")) | max_by(.tokens_per_s)) as $h |
  (map(select(.impl == "pytorch" and (.mode // "train") == "train")) | first) as $t |
  "C engine, reference model, fp32: \($c.tokens_per_s) tokens/s at \($c.threads) threads, \($c.gflops) GFLOP/s = \($c.mfu_vs_sgemm * 100 | floor)% of the measured OpenBLAS sgemm rate (\($c.sgemm_gflops) GFLOP/s; oneDNN fp32 \($c.onednn_f32_gflops))",
  (if $h then "C engine, reference model, bf16: \($h.tokens_per_s) tokens/s at \($h.threads) threads, \($h.gflops) GFLOP/s = \($h.mfu_vs_gemm * 100 | floor)% of the measured oneDNN bf16 rate (\($h.onednn_bf16_gflops) GFLOP/s, ISA \($h.onednn_isa)); bf16 / fp32 = \($h.tokens_per_s / $c.tokens_per_s * 100 | floor / 100)x" else empty end),
  (map(select(.bench == "mpi_train")) | if length == 2 then "MPI: 2 ranks x 1 thread \(.[1].tokens_per_s) tokens/s vs 1 rank x 2 threads \(.[0].tokens_per_s) (\(.[1].tokens_per_s / .[0].tokens_per_s * 100 | floor / 100)x), communication \(.[1].comm_share * 1000 | floor / 10)% of rank 0'"'"'s time, waiting for the other rank \(.[1].wait_share * 1000 | floor / 10)%" else empty end),
  (if $t then "PyTorch \($t.torch): \($t.tokens_per_s | floor) tokens/s at \($t.threads) threads; C / PyTorch = \($c.tokens_per_s / $t.tokens_per_s * 100 | floor / 100)x" else "PyTorch: not measured" end)
' "$out"
