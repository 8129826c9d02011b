# bench/summary.jq: make bench's closing summary, from the JSON lines
# bench/run.sh collected (jq -rs --argjson n THREADS -f bench/summary.jq):
# the training table at $n threads, the GEMM rates, and each target of
# issue 7, on the one run and as the median of its paired rounds.
  def r2: . * 100 | round / 100;
  def ok($x; $t): if $x >= $t then "met" else "MISSED" end;
  map(select(.bench == "train" and .model == "reference")) as $c |
  ($c | map(select(.precision == "fp32" and .threads == $n)) | first) as $f |
  ($c | map(select(.precision == "bf16" and .threads == $n)) | first) as $h |
  ($c | map(select(.precision == "fp32-openblas" and .threads == $n)) | first) as $o |
  map(select(.impl == "pytorch" and .mode == "train")) as $t |
  ($t | map({key: .peer, value: .tokens_per_s}) | from_entries) as $p |
  ([$p.eager, $p.autocast, $p.compile] | map(select(. != null)) | max) as $best3 |
  # Every bench_train run measures the GEMM rates again just before its
  # steps, and on a shared machine one of them can come out far low (once,
  # our own GEMM at one thread's rate in the bf16 run, which made that run's
  # MFU 123%). The one-run lines take the fastest each library reached over
  # the runs at $n threads.
  ($c | map(select(.threads == $n))) as $cn |
  def fastest($k): $cn | map(.[$k] // 0) | max;
  {sgemm: fastest("sgemm_gflops"), dnnl32: fastest("onednn_f32_gflops"), own: fastest("own_f32_gflops"),
   dnnl16: fastest("onednn_bf16_gflops")} as $r |
  ([$r.sgemm, $r.dnnl32, $r.own] | max) as $g32 |
  (if $h.bf16_products == "fp32-fma" then $r.own else $r.dnnl16 end) as $g16 |
  (map(select(.bench == "fma_peak" and .gflops != null)) | first) as $pk |
  "| run | tokens/s | threads |",
  "|---|---:|---:|",
  (if $f then "| wdl fp32 (\(if $f.fp32_own then "our own GEMM, \($f.own_tile) tiles" else "OpenBLAS" end)) | \($f.tokens_per_s) | \($f.threads) |" else empty end),
  (if $o then "| wdl fp32-openblas (the reference) | \($o.tokens_per_s) | \($o.threads) |" else empty end),
  (if $h then "| wdl bf16 (\(if $h.bf16_products == "fp32-fma" then "products as fp32 FMAs on bf16-rounded inputs, oneDNN ISA \($h.onednn_isa)" else "oneDNN \($h.onednn_isa)" end), attention on \($h.attention // "the backend")) | \($h.tokens_per_s) | \($h.threads) |" else empty end),
  ($t[] | "| PyTorch \(.torch) \(.peer) | \(.tokens_per_s | round) | \(.threads) |"),
  "",
  (if ($cn | length) > 0 then "GEMM rates on the model shapes (GFLOP/s, the fastest of the \($cn | length) runs at \($n) threads): OpenBLAS sgemm \($r.sgemm), oneDNN fp32 \($r.dnnl32), our own fp32 (sgemm.c) \(if $r.own > 0 then $r.own else "n/a" end), oneDNN bf16 \($r.dnnl16)" else empty end),
  (if $pk and $f then "fp32 FMA peak of the \($pk.threads) cores (\($pk.isa)): \($pk.gflops) GFLOP/s; the fastest fp32 GEMM rate is \($g32 / $pk.gflops * 100 | round)% of it, wdl fp32 training \($f.gflops / $pk.gflops * 100 | round)%" else empty end),
  (if $pk.bf16_dot_gflops then "bf16 dot-product peak (AVX512-BF16, the same chains): \($pk.bf16_dot_gflops) GFLOP/s = \($pk.bf16_dot_gflops / $pk.gflops | r2)x the fp32 FMA peak\(if $h.bf16_products == "fp32-fma" then " (so bf16 runs on fp32 FMAs here)" else "" end)" else empty end),
  (map(select(.bench == "train_breakdown" and .model == "reference" and .threads == $n))[] |
    . as $b | ["products", "attention", "norms", "swiglu", "loss", "optimizer", "embedding", "other"] |
    map("\(.) \($b[. + "_ms"] | r2) ms (\($b[. + "_ms"] / $b.step_ms * 100 | round)%)") | join(", ") |
    "where a wdl \($b.precision) step of \($b.step_ms | r2) ms goes (the same steps again, kernel by kernel): \(.); the linear layers' products at \($b.products_gflops) GFLOP/s, \($b.products_gflops / (if $b.precision == "bf16" then $g16 else $r.own end) * 100 | round)% of the fastest rate measured for their GEMM (\(if $b.precision == "bf16" then $g16 else $r.own end))"),
  (if $f then "wdl fp32: \($f.gflops) GFLOP/s = \($f.gflops / $g32 * 100 | round)% of the fastest fp32 GEMM rate (target 75%: \(ok($f.gflops / $g32; 0.75)))"
   else "wdl fp32: no run at \($n) threads" end),
  (if $h then "wdl bf16: \($h.gflops) GFLOP/s, MFU \($h.gflops / $g16 * 100 | round)% of the fastest rate measured for its products (\(if $h.bf16_products == "fp32-fma" then "our own fp32 GEMM: bf16 runs on fp32 FMAs on this CPU" else "oneDNN bf16" end))"
   else "wdl bf16: no run at \($n) threads" end),
  (if $best3 and $h then
    "wdl bf16 / best of PyTorch eager, autocast, compile = \($h.tokens_per_s / $best3 | r2)x (target 2x: \(ok($h.tokens_per_s / $best3; 2)))"
   elif $best3 then empty else "PyTorch peers: not measured" end),
  (if $p.compile and $f then
    "wdl fp32 / torch.compile fp32 = \($f.tokens_per_s / $p.compile | r2)x (target 1.3x: \(ok($f.tokens_per_s / $p.compile; 1.3)))"
   else empty end),
  (map(select(.round)) | group_by(.round) | map(
     (map({key: (.side + " " + .what), value: .tokens_per_s}) | from_entries) as $x |
     ([$x["pytorch eager"], $x["pytorch autocast"], $x["pytorch compile"]] | map(select(. != null)) | max) as $b |
     {bf16: (if $b and $x["wdl bf16"] then $x["wdl bf16"] / $b else null end),
      fp32: (if $x["pytorch compile"] and $x["wdl fp32"] then $x["wdl fp32"] / $x["pytorch compile"] else null end),
      mfu32: (map(select(.side == "wdl" and .what == "fp32")) | first | .gemm_share)}) |
   def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
   def line($name; $t; $v): ($v | map(select(. != null))) as $w |
     if ($w | length) > 0 then
       "\($name): median \($w | med | r2)x over \($w | length) paired rounds (\($w | min | r2)-\($w | max | r2)x; target \($t)x: \(ok($w | med; $t)))"
     else empty end;
   if length > 0 then
     line("wdl bf16 / best of PyTorch eager, autocast, compile"; 2; map(.bf16)),
     line("wdl fp32 / torch.compile fp32"; 1.3; map(.fp32)),
     line("wdl fp32 GFLOP/s / fastest fp32 GEMM rate of the same run"; 0.75; map(.mfu32))
   else empty end),
  (map(select(.bench == "mpi_train")) | if length == 2 then "MPI: 2 ranks x 1 thread \(.[1].tokens_per_s) tokens/s vs 1 rank x 2 threads \(.[0].tokens_per_s) (\(.[1].tokens_per_s / .[0].tokens_per_s | r2)x), communication \(.[1].comm_share * 1000 | floor / 10)% of rank 0's time, waiting for the other rank \(.[1].wait_share * 1000 | floor / 10)%" else empty end)
