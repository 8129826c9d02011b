#!/usr/bin/env bats
# The experiment's parts on small inputs: joint vs separate clipping, epoch
# snapshots, saturation summaries, records without a completion, outputs to
# a device; and `make experiment` at the smoke scale with two seeds.
bats_require_minimum_version 1.5.0

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

setup() {
  D=$BATS_TEST_TMPDIR
  wdl-data gen --task arith --n 48 --seed 3 --split train > "$D/train.jsonl"
  wdl-init --preset nano --seed 1 -o "$D/m0" 2>/dev/null
  wdl-init --preset nano --seed 2 -o "$D/w0" 2>/dev/null
}

train() { wdl-train -m "$D/m0" --batch 8 --seq 160 --lr 3e-3 --threads 2 -q "$@"; }

@test "WD-JT clips both models jointly by default; --clip-mode separate differs; bad mode is an error" {
  train -o "$D/j" --steps 3 --weak "$D/w0" --clip 0.05 --log "$D/j.log" "$D/train.jsonl"
  train -o "$D/j2" --steps 3 --weak "$D/w0" --clip 0.05 --clip-mode joint "$D/train.jsonl"
  train -o "$D/s" --steps 3 --weak "$D/w0" --clip 0.05 --clip-mode separate "$D/train.jsonl"
  cmp "$D/j/model.safetensors" "$D/j2/model.safetensors"
  run ! cmp -s "$D/j/model.safetensors" "$D/s/model.safetensors"
  # both norms are logged, before clipping
  jq -se 'map(select(.step > 0)) | length == 3 and all(.grad_norm > 0 and .weak_grad_norm > 0)' "$D/j.log"
  run train -o "$D/x" --steps 1 --weak "$D/w0" --clip-mode both "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"--clip-mode"*"both"* ]]
  [ ! -e "$D/x" ]
}

@test "--save-epochs keeps the model after each earlier epoch" {
  train -o "$D/e" --epochs 3 --save-epochs "$D/train.jsonl"
  [ -f "$D/e.epoch1/model.safetensors" ]
  [ -f "$D/e.epoch2/model.safetensors" ]
  [ ! -e "$D/e.epoch3" ]
  run ! cmp -s "$D/e.epoch1/model.safetensors" "$D/e.epoch2/model.safetensors"
  run ! cmp -s "$D/e.epoch2/model.safetensors" "$D/e/model.safetensors"
  # the snapshots do not change the run itself
  train -o "$D/f" --epochs 3 "$D/train.jsonl"
  cmp "$D/e/model.safetensors" "$D/f/model.safetensors"
}

@test "wdl-score --summary writes saturation figures and the logit table" {
  wdl-score -m "$D/m0" --field h --summary "$D/s.json" -o /dev/null "$D/train.jsonl" 2>/dev/null
  jq -e '.records == 48 and .positions > 0 and (.p_target > 0 and .p_target < 1)
         and (.token_accuracy >= 0 and .token_accuracy <= 1) and (.frac_p_target_gt_99 >= 0)
         and ((.nontarget_mass + .p_target - 1) | fabs) < 1e-9
         and (.logits | .max >= .min and .std > 0 and .l2_norm > 0 and (.gap - (.target - .nontarget) | fabs) < 1e-6)' "$D/s.json"
  # /dev/null is still a device afterwards, not a renamed file
  [ -c /dev/null ]
  run wdl-score -m "$D/m0" --field h --summary - "$D/train.jsonl"
  [ "$status" -ne 0 ]
}

@test "records without a completion: training skips them, scoring passes them through" {
  { head -n 5 "$D/train.jsonl"; echo '{"task":"arith","prompt":"no solution here","answer":"1"}'; } > "$D/mixed.jsonl"
  run --separate-stderr wdl-train -m "$D/m0" -o "$D/t" --steps 1 --batch 4 --threads 2 "$D/mixed.jsonl"
  [ "$status" -eq 0 ]
  [[ "$stderr" == *"1 records without a completion were skipped"* ]]
  run --separate-stderr wdl-score -m "$D/m0" --field h "$D/mixed.jsonl"
  [ "$status" -eq 0 ]
  [[ "$stderr" == *"passed through unscored"* ]]
  [ "$(echo "$output" | wc -l)" -eq 6 ]
  [ "$(echo "$output" | jq -s 'map(select(has("h"))) | length')" -eq 5 ]
  [ "$(echo "$output" | tail -1 | jq -r .prompt)" = "no solution here" ]
}

@test "make experiment (smoke, 2 seeds, BASELINES=1): per-seed runs and one paired verdict" {
  run make -C "$REPO" --no-print-directory -s experiment SCALE=smoke SEEDS="1 2" RUN=bats-exp THREADS=2 BASELINES=1
  [ "$status" -eq 0 ]
  R=$REPO/runs/bats-exp
  [[ "$output" == *"**Verdict**: \`wmss − sft2 = "*", 2 seeds x 16 problems\`"* ]]
  [[ "$output" == *"Against \`neftune\`: \`wmss − neftune = "*", 2 seeds x 16 problems\`: "* ]]
  for s in s1 s2; do
    for f in eval/wmss.json eval/sft2.json eval/neftune.json saturation/m1.json logits/wmss.json preds/sft2.jsonl.zst; do
      [ -s "$R/$s/$f" ] || { echo "missing $s/$f"; false; }
    done
  done
  # the test problems are the same in both seeds (a crossed design)
  cmp "$R/s1/data/test.jsonl.zst" "$R/s2/data/test.jsonl.zst"
  jq -e '.comparisons[0] | .arm == "wmss" and .control == "sft2" and .seeds == 2 and .problems == 16 and .same_problems' "$R/report/report.json"
  jq -e '.saturation.m1.p_target > 0 and .accuracy.wmss.seeds == 2 and .accuracy.neftune.seeds == 2' "$R/report/report.json"
  # NEFTune beside sft2, and wmss against it
  jq -e '[.comparisons[] | "\(.arm)-\(.control)"] | index("neftune-sft2") and index("wmss-neftune")' "$R/report/report.json"
  # NEFTune: sft2's run (from m1, one epoch of D at LR_ARM) with the noise
  for s in s1 s2; do
    nf=$(jq -r 'select(.output | endswith("neftune/model.safetensors")) | .command' "$R/$s/manifest.jsonl")
    sf=$(jq -r 'select(.output | endswith("sft2/model.safetensors")) | .command' "$R/$s/manifest.jsonl")
    [ "${nf/ --neftune 5/}" = "${sf//sft2/neftune}" ]
  done
  rm -rf "$R"
}

@test "TRAIN/TEST/FORMAT bring your own data into the pipeline; a missing file stops it" {
  cat > "$D/mw.json" <<'J'
[{"id": 1, "original_text": "Tom had 5 apples and got 3 more . How many now ?", "equation": "X=(5.0+3.0)", "ans": 8.0},
 {"id": 2, "original_text": "A box holds 4 rows of 6 eggs . How many eggs ?", "equation": "X=(4.0*6.0)", "ans": 24.0}]
J
  tar -C "$D" -cf "$D/mw.tar" mw.json
  R=runs/bats-own
  make -C "$REPO" --no-print-directory -s $R/data/train.jsonl.zst $R/data/test.jsonl.zst \
    RUN=bats-own TRAIN="$D/mw.json" TEST="$D/mw.tar:mw.json" FORMAT=mawps 2>/dev/null
  [ "$(zstd -dcq "$REPO/$R/data/train.jsonl.zst" | jq -s 'length')" -eq 2 ]
  [ "$(zstd -dcq "$REPO/$R/data/test.jsonl.zst" | jq -r .task | sort -u)" = mawps ]
  rm -rf "$REPO/$R"
  run make -C "$REPO" --no-print-directory -s phase1 RUN=bats-own TASK=mawps SHARED="$D/nowhere"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$D/nowhere/data/benchmarks/mawps/trainset.json: not found"* ]]
  [ ! -e "$REPO/$R" ]
}
