#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# wdl-report's verdict on hand-made runs whose answer is known: paired
# differences, exact McNemar counts, the crossed design, the saturation and
# logit tables, and --json.

# mkpreds FILE N ONES...: N records (task, prompt p<i>); "correct" is true for
# the indices given as ranges a-b
mkpreds() {
  local f=$1 n=$2; shift 2
  mkdir -p "$(dirname "$f")"
  for i in $(seq 0 $((n - 1))); do
    c=false
    for r in "$@"; do [ "$i" -ge "${r%-*}" ] && [ "$i" -le "${r#*-}" ] && c=true; done
    echo "{\"idx\":$i,\"task\":\"arith\",\"prompt\":\"p$i\",\"correct\":$c}"
  done | zstd -q -f -o "$f"
}
mkeval() { mkdir -p "$1/eval"; echo "{\"accuracy\": $3, \"n\": 100, \"tasks\": {}}" > "$1/eval/$2.json"; }
mksat() {
  mkdir -p "$1/saturation" "$1/logits"
  echo "{\"positions\":10,\"p_target\":$3,\"token_accuracy\":$4,\"frac_p_target_gt_99\":0.5,\"nontarget_mass\":0.1,\"logits\":{\"mean\":1,\"target\":9,\"nontarget\":$5,\"gap\":2}}" > "$1/saturation/$2.json"
  cp "$1/saturation/$2.json" "$1/logits/$2.json"
}

setup() {
  D=$BATS_TEST_TMPDIR
  for s in s1 s2; do
    mkpreds "$D/runs/$s/preds/wmss.jsonl.zst" 100 0-29
    mkpreds "$D/runs/$s/preds/sft2.jsonl.zst" 100 0-19 90-94
    mkpreds "$D/runs/$s/preds/m1.jsonl.zst" 100 0-24
    mkeval "$D/runs/$s" wmss 0.30; mkeval "$D/runs/$s" sft2 0.25; mkeval "$D/runs/$s" m1 0.25
    mksat "$D/runs/$s" m1 0.95 0.98 0.5
    mksat "$D/runs/$s" wmss 0.97 0.99 0.25
  done
}

@test "verdict: the first lines state wmss - sft2 with CI, p and the design" {
  cd "$D"
  run wdl-report --no-plots runs/s1 runs/s2
  [ "$status" -eq 0 ]
  md=runs/report/report.md
  line=$(grep '^\*\*Verdict' "$md")
  re='^\*\*Verdict\*\*: `wmss − sft2 = \+5\.0 points, 95% CI \[[0-9.-]+, [0-9.-]+\], p = [0-9.< ]+, 2 seeds x 100 problems`$'
  [[ "$line" =~ $re ]]
  # it comes before every table
  [ "$(grep -n '^\*\*Verdict' "$md" | cut -d: -f1)" -lt "$(grep -n '^## ' "$md" | head -1 | cut -d: -f1)" ]
  grep -q '^| wmss | sft2 | +5.00 | ' "$md"
  grep -q '^| sft2 | m1 | +0.00 | ' "$md"
}

@test "verdict: --json carries the comparisons, exact counts and the same numbers as report.json" {
  cd "$D"
  run --separate-stderr wdl-report --json --no-plots runs/s1 runs/s2
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.comparisons[0] | .arm == "wmss" and .control == "sft2" and .diff_points == 5
      and .seeds == 2 and .problems == 100 and .discordant == [20, 10] and .same_problems
      and (.ci95[0] <= 5 and .ci95[1] >= 5 and .ci95[0] < .ci95[1])
      and (.p_mcnemar - 0.09873714670538902 | fabs) < 1e-12
      and (.per_seed | length == 2) and (.per_seed[0].p_mcnemar - 0.3017578125 | fabs) < 1e-12'
  echo "$output" | jq -e '.accuracy.wmss.mean == 30 and .saturation.m1.p_target == 0.95 and .logits.wmss.nontarget == 0.25'
  diff <(echo "$output") runs/report/report.json
  # same runs => same bytes (the bootstrap is seeded)
  run --separate-stderr wdl-report --json --no-plots runs/s1 runs/s2
  diff <(echo "$output") runs/report/report.json
}

@test "verdict: regime checks, saturation and logit tables" {
  cd "$D"
  wdl-report --no-plots runs/s1 runs/s2 > out.md 2>/dev/null
  grep -qF -- '- M1 mean p_target on D = 0.950 (want >= 0.90): yes' out.md
  grep -qF -- '- M1 test accuracy = 25.0% (want 30-85%): NO' out.md
  grep -q '^| m1 | 0.9500 ± 0.0000 | 0.9800 ± 0.0000 | 0.5000 ± 0.0000 | 0.1000 ± 0.0000 |$' out.md
  grep -q '^| non-target logit | — | 0.5 | 0.25 | — | -50.0% | — / 2.09 → 0.9 (-56.9%) |$' out.md
}

@test "verdict: arms that answered different problems are not compared" {
  cd "$D"
  mkpreds runs/s2/preds/sft2.jsonl.zst 99 0-19
  run --separate-stderr wdl-report --json --no-plots runs/s1 runs/s2
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.comparisons[0].seeds == 1'
  grep -q 'hold different problems: not compared' runs/report/report.md
}

@test "verdict: problems that differ between seeds give the nested design" {
  cd "$D"
  # (through a second file: zstd -o truncates its output while the reader may still be reading it)
  for a in wmss sft2 m1; do
    zstd -dcq runs/s2/preds/$a.jsonl.zst | sed 's/"p\([0-9]*\)"/"q\1"/' | zstd -q -f -o renamed.zst
    mv renamed.zst runs/s2/preds/$a.jsonl.zst
  done
  run --separate-stderr wdl-report --json --no-plots runs/s1 runs/s2
  echo "$output" | jq -e '.comparisons[0].same_problems == false and .comparisons[0].diff_points == 5'
}

@test "verdict: a preds file without outcomes is an error naming it" {
  cd "$D"
  echo '{"prompt":"x"}' > runs/s1/preds/bad.jsonl
  run wdl-report --no-plots runs/s1
  [ "$status" -eq 1 ]
  [[ "$output" == *"runs/s1/preds/bad.jsonl:1: record has no boolean \"correct\""* ]]
  [ ! -e runs/s1/report ]
}
