# bench/score_06b.jq: bench/score_06b.sh's summary, from its JSON lines
# (jq -rs --argjson mb MODEL_FP32_MB -f bench/score_06b.jq results.jsonl):
# each side's median over its rounds, and each target of issue 7 judged on
# the median of the paired rounds' ratios.
  def r2: . * 100 | round / 100;
  def ok($x; $t): if $x >= $t then "met" else "MISSED" end;
  def med: sort | if length % 2 == 1 then .[(length - 1) / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  # a scoring run over its rounds: tokens/s the median, peak RSS the largest
  def rounds($a): if ($a | length) == 0 then null else $a[0] + {n: ($a | length),
    tokens_per_s_with_load: ($a | map(.tokens_per_s_with_load) | med | r2), peak_rss_mb: ($a | map(.peak_rss_mb) | max)} +
    (if $a[0].tokens_per_s then {tokens_per_s: ($a | map(.tokens_per_s) | med | r2)} else {} end) end;
  def of($n): if $n > 1 then " (median of \($n) rounds)" else "" end;
  # wdl (its run $run) against transformers in precision $p, bench $b
  # (score, generate, generate1), round by round
  def pairs_of($b; $run; $p): . as $all | [$all[] | select(.impl == "wdl" and .bench == $b and .run == $run)] |
    map(. as $x | ($all | map(select(.impl == "transformers" and .bench == $b and .dtype == $p and
      .round == $x.round)) | first) as $y | select($y) |
      {r: ($x.tokens_per_s_with_load / $y.tokens_per_s_with_load), rc: ($x.tokens_per_s_with_load / $y.tokens_per_s)});
  def pairs($p): pairs_of("score"; "score_\($p)"; $p);
  def gpairs($p): pairs_of("generate"; "gen_\($p)"; $p);
  # the median ratio, then the ratio of every round (no target)
  def medr($pr): "\($pr | map(.r) | med | r2)x (\($pr | map(.r | r2 | tostring + "x") | join(", ")))";
  def ratio($what; $pr; $t): if ($pr | length) == 1 then
      "\($what) = \($pr[0].r | r2)x (target \($t)x: \(ok($pr[0].r; $t)); against its compute only \($pr[0].rc | r2)x)"
    else "\($what) = median \($pr | map(.r) | med | r2)x over \($pr | length) paired rounds (\($pr | map(.r | r2 | tostring + "x") | join(", "))) (target \($t)x: \(ok($pr | map(.r) | med; $t)), on the median; against its compute only median \($pr | map(.rc) | med | r2)x)" end;
  rounds(map(select(.impl == "wdl" and .bench == "score" and .run == "score_fp32"))) as $s32 |
  rounds(map(select(.impl == "wdl" and .bench == "score" and .run == "score_bf16"))) as $s16 |
  def wr($b; $r): rounds(map(select(.impl == "wdl" and .bench == $b and .run == $r)));
  def hr($b; $d): rounds(map(select(.impl == "transformers" and .bench == $b and .dtype == $d)));
  wr("generate"; "gen_fp32") as $g32 | wr("generate"; "gen_bf16") as $g16 |
  rounds(map(select(.impl == "transformers" and .bench == "score" and .dtype == "fp32"))) as $h32 |
  rounds(map(select(.impl == "transformers" and .bench == "score" and .dtype == "bf16"))) as $h16 |
  pairs("fp32") as $p32 | pairs("bf16") as $p16 | hr("generate"; "fp32") as $hg |
  hr("generate"; "bf16") as $hg16 | gpairs("fp32") as $q32 | gpairs("bf16") as $q16 |
  pairs_of("generate1"; "gen1_fp32"; "fp32") as $o32 | pairs_of("generate1"; "gen1_bf16"; "bf16") as $o16 |
  "wdl-score fp32: \($s32.tokens_per_s_with_load) tokens/s\(of($s32.n)), peak RSS \($s32.peak_rss_mb) MB = model fp32 bytes \(if $s32.peak_rss_mb >= $mb then "+ \(($s32.peak_rss_mb - $mb) / 1024 | r2)" else "- \(($mb - $s32.peak_rss_mb) / 1024 | r2)" end) GB (target <= +1.5 GB: \(ok(1536 - ($s32.peak_rss_mb - $mb); 0)))",
  (if $s16 then "wdl-score bf16: \($s16.tokens_per_s_with_load) tokens/s\(of($s16.n)), peak RSS \($s16.peak_rss_mb) MB" else empty end),
  (if $h32 then
    "transformers fp32: \($h32.tokens_per_s_with_load) tokens/s with load (\($h32.tokens_per_s) compute only)\(of($h32.n)), peak RSS \($h32.peak_rss_mb) MB",
    (if $h16 then "transformers bf16: \($h16.tokens_per_s_with_load) tokens/s with load (\($h16.tokens_per_s) compute only)\(of($h16.n)), peak RSS \($h16.peak_rss_mb) MB" else empty end),
    ratio("wdl fp32 / transformers fp32"; $p32; 3),
    (if ($p16 | length) > 0 then ratio("wdl bf16 / transformers bf16"; $p16; 1.5) else empty end),
    (if $g32 and $hg then "greedy decoding: wdl-eval fp32 \($g32.tokens_per_s_with_load) tokens/s\(of($g32.n)); transformers generate fp32 \($hg.tokens_per_s_with_load) with load (\($hg.tokens_per_s) compute only)\(of($hg.n))" else empty end),
    (if $g16 and $hg16 then "greedy decoding bf16: wdl-eval \($g16.tokens_per_s_with_load) tokens/s\(of($g16.n)); transformers generate \($hg16.tokens_per_s_with_load) (\($hg16.tokens_per_s))\(of($hg16.n))" else empty end),
    (if ($q32 | length) > 0 then
      ratio("wdl fp32 / transformers generate fp32"; $q32; 2),
      (if ($q16 | length) > 0 then ratio("wdl bf16 / transformers generate bf16"; $q16; 2) else empty end)
     else "greedy decoding: not measured" end),
    (if ($o32 | length) > 0 then
      "one prompt alone: wdl / transformers generate, with load: fp32 \(medr($o32))\(if ($o16 | length) > 0 then ", bf16 \(medr($o16))" else "" end)" else empty end)
   else "transformers: not measured" end)
