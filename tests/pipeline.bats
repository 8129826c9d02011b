#!/usr/bin/env bats
# The WMSS pipeline on the smoke scale: completeness, determinism (same SEED
# and THREADS => byte-identical files), interruption, and a real-tokenizer
# HF-layout model through score, select, train --weak and eval.

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
SHARED_TOK=${WDL_SHARED:-$REPO/../shared}/data/qwen3-tokenizer/tokenizer.json

pipeline() { make -C "$REPO" --no-print-directory -s phase1 phase2 phase3 SCALE=smoke THREADS=2 "$@"; }

teardown() { rm -rf "$REPO/runs/bats-"*; }

@test "make phase1 phase2 phase3 (smoke) produces every stage and a report" {
  pipeline RUN=bats-a SEED=3 > "$BATS_TEST_TMPDIR/out"
  R=$REPO/runs/bats-a
  for f in data/train.jsonl.zst data/pool.jsonl.zst data/test.jsonl.zst m0/model.safetensors \
           m1/model.safetensors scored.jsonl.zst selected.jsonl.zst wmss/model.safetensors \
           eval/wmss.json eval/m1.json report/report.md manifest.jsonl; do
    [ -s "$R/$f" ] || { echo "missing $f"; false; }
  done
  grep -q "evaluation" "$BATS_TEST_TMPDIR/out"
  jq -e '.n == 16 and (.accuracy >= 0)' "$R/eval/wmss.json"
  # D and the pretraining pool are disjoint
  [ -z "$(comm -12 <(zstd -dcq "$R/data/train.jsonl.zst" | jq -r .prompt | sort) \
                  <(zstd -dcq "$R/data/pool.jsonl.zst" | jq -r .prompt | sort))" ]
  # the manifest records command, input hashes and version for each output
  jq -e -s 'map(select(.output | endswith("wmss/model.safetensors")))[0] |
            (.command | test("--weak")) and (.inputs | length == 3) and .version' "$R/manifest.jsonl"
  # one pass over D per model gives its entropies and its saturation summary:
  # M0 and M1 score D once each, and the manifest names both outputs
  for m in m0 m1; do
    [ "$(jq -s --arg m "$m" '[.[] | .command | select(test("wdl-score .*-m [^ ]*/" + $m + " .*(data/train|scored_weak).jsonl.zst$"))]
                             | unique | length' "$R/manifest.jsonl")" -eq 1 ]
  done
  [ "$(jq -s '[.[] | select(.command | test("wdl-score .*scored_weak.jsonl.zst$"))] | map(.output | sub(".*/bats-a/"; "")) | sort | join(" ")' -r \
       "$R/manifest.jsonl")" = "saturation/m1.json scored.jsonl.zst" ]
  for a in m0 m1 sft2 wmss; do jq -e '.p_target > 0' "$R/saturation/$a.json" > /dev/null; done
  # a make without grouped targets (before 4.3) is told so, in one line
  run make -C "$REPO" -n -s --eval '.FEATURES :=' phase2 SCALE=smoke RUN=bats-a
  [ "$status" -ne 0 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == *"GNU make 4.3 or later is needed (grouped targets)"* ]]
  # nothing left to do: make reruns only what changed
  run make -C "$REPO" -q runs/bats-a/eval/wmss.json SCALE=smoke RUN=bats-a SEED=3 THREADS=2
  [ "$status" -eq 0 ]
  touch "$R/selected.jsonl.zst"
  run make -C "$REPO" -q runs/bats-a/eval/wmss.json SCALE=smoke RUN=bats-a SEED=3 THREADS=2
  [ "$status" -ne 0 ]
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=3 THREADS=2
  [ "$status" -eq 0 ]
  # the directory holds one configuration, recorded by its first step:
  # other settings stop make before any step, in one line naming them old
  # and new (instead of finding every target up to date); other THREADS do
  # not count, and pipeline-clean still runs
  grep -qx 'SEED=3' "$R/settings" && grep -qx 'LR_ARM=2e-4' "$R/settings"
  cp "$R/manifest.jsonl" "$BATS_TEST_TMPDIR/manifest"
  run make -C "$REPO" --no-print-directory -s phase3 SCALE=smoke RUN=bats-a SEED=4 LR_ARM=1e-4 THREADS=2
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == *"runs/bats-a was made with SEED=3 LR_ARM=2e-4, not SEED=4 LR_ARM=1e-4:"*"pipeline-clean RUN=bats-a"* ]]
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=4
  [ "$status" -eq 2 ]
  [[ "$output" == *"made with SEED=3, not SEED=4"* ]]
  cmp "$R/manifest.jsonl" "$BATS_TEST_TMPDIR/manifest"
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=3 THREADS=1
  [ "$status" -eq 0 ]
  # a setting the record lacks came after the wdl that made the directory:
  # not checked (NEFTUNE_ALPHA is recorded, so first it is)
  grep -qx 'NEFTUNE_ALPHA=5' "$R/settings"
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=3 NEFTUNE_ALPHA=3
  [ "$status" -eq 2 ]
  [[ "$output" == *"made with NEFTUNE_ALPHA=5, not NEFTUNE_ALPHA=3"* ]]
  sed -i '/^NEFTUNE_ALPHA=/d' "$R/settings"
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=3 NEFTUNE_ALPHA=3
  [ "$status" -eq 0 ]
  run make -C "$REPO" --no-print-directory -n pipeline-clean RUN=bats-a SEED=4
  [ "$status" -eq 0 ]
  [ "$output" = "rm -rf 'runs/bats-a'" ]
  # a directory whose steps ran before settings were recorded: its
  # settings are unknown, so they are neither made up nor checked
  rm "$R/settings"
  make -C "$REPO" --no-print-directory -s runs/bats-a/settings RUN=bats-a SEED=3
  [ "$(cat "$R/settings")" = "# not recorded: steps ran here before settings were" ]
  run make -C "$REPO" -q runs/bats-a/m1/model.safetensors SCALE=smoke RUN=bats-a SEED=4
  [ "$status" -eq 0 ]
}

@test "same SEED and THREADS give byte-identical runs" {
  pipeline RUN=bats-b SEED=4 > /dev/null
  pipeline RUN=bats-c SEED=4 > /dev/null
  cd "$REPO/runs"
  for f in $(cd bats-b && find . -type f \( -name '*.safetensors' -o -name '*.zst' -o -name 'select.stats.json' \) | sort); do
    cmp "bats-b/$f" "bats-c/$f"
  done
  # evaluation summaries agree except for the measured speed
  for a in m0 m1 wmss; do
    [ "$(jq -c 'del(.tokens_per_s, .model)' bats-b/eval/$a.json)" = "$(jq -c 'del(.tokens_per_s, .model)' bats-c/eval/$a.json)" ]
  done
}

@test "an interrupted pipeline leaves no half-written target and resumes" {
  make -C "$REPO" --no-print-directory -s phase1 SCALE=smoke RUN=bats-d THREADS=2 N_TRAIN=400 > /dev/null 2>&1 &
  pid=$!
  R=$REPO/runs/bats-d
  for i in $(seq 1 300); do [ -f "$R/m0/model.safetensors" ] && break; sleep 0.05; done
  sleep 0.3
  pkill -INT -P $pid 2>/dev/null || true; kill -INT $pid 2>/dev/null || true
  pkill -TERM -f "runs/bats-d" 2>/dev/null || true
  wait $pid 2>/dev/null || true
  sleep 0.2
  # no temporary outputs, and every model directory that exists is complete
  [ -z "$(find "$R" -name '.*.tmp.*' -o -name '*.tmp' 2>/dev/null)" ]
  for d in "$R"/*/; do [ ! -f "$d/config.json" ] || [ -f "$d/model.safetensors" ]; done
  make -C "$REPO" --no-print-directory -s phase1 SCALE=smoke RUN=bats-d THREADS=2 N_TRAIN=400 > /dev/null
  [ -s "$R/m1/model.safetensors" ]
}

@test "a real-tokenizer HF-layout model goes through score, select, train --weak and eval" {
  [ -f "$SHARED_TOK" ] || skip "../shared/data/qwen3-tokenizer absent"
  D=$BATS_TEST_TMPDIR
  cat > "$D/config.json" <<'JSON'
{"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 151936,
 "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
 "tie_word_embeddings": true, "bos_token_id": null, "eos_token_id": 151645}
JSON
  wdl-init --config "$D/config.json" --tokenizer "$SHARED_TOK" --seed 1 -o "$D/weak" 2>/dev/null
  wdl-init --config "$D/config.json" --tokenizer "$SHARED_TOK" --seed 2 -o "$D/strong" 2>/dev/null
  [ -f "$D/weak/tokenizer.json" ]
  [ "$(jq -r .wdl_template "$D/weak/config.json")" = chatml ]
  wdl-data gen --task arith --n 6 --seed 1 --split train > "$D/d.jsonl"
  wdl-score -m "$D/weak" --field h_weak "$D/d.jsonl" | wdl-score -m "$D/strong" --field h_strong > "$D/s.jsonl"
  # an untrained model over 151,936 tokens: entropy close to log(V) = 11.93
  jq -e '.h_weak > 11 and .h_weak < 12 and .h_strong_tokens > 5' "$D/s.jsonl" > /dev/null
  wdl-select --seed 1 < "$D/s.jsonl" > "$D/sel.jsonl"
  wdl-train -m "$D/strong" --weak "$D/weak" -o "$D/out" --weak-out "$D/wout" --steps 2 --batch 3 -q "$D/sel.jsonl"
  [ -f "$D/out/tokenizer.json" ]
  [ -f "$D/wout/model.safetensors" ]
  wdl-eval -m "$D/out" --max-new 4 --preds "$D/p.jsonl" "$D/d.jsonl" > "$D/e.json"
  jq -e '.n == 6' "$D/e.json"
  [ "$(wc -l < "$D/p.jsonl")" -eq 6 ]
}

@test "bad settings stop make before any step, in one line naming the setting" {
  for s in "RUN=" "RUN=a b" "RUN=../bin" "RUN=/tmp/x" "RUN=x;y" "LAMBDA=2" "RANKS=0" "RANKS=3" "THREADS=abc" \
           "TASK=nosuch" "TASK=prog,prog" "PRECISION=fp64" "N_TRAIN=0" "SFT_EPOCHS=0" "LR=abc" "SEEDS=1 1" \
           "MODEL=/nonexistent" "LAMBDAS=0.3 1.5" "NEFTUNE_ALPHA=0" "NEFTUNE_ALPHA=abc"; do
    run make -C "$REPO" --no-print-directory -n phase1 pipeline-clean experiment SCALE=smoke "$s"
    [ "$status" -eq 2 ] && [ "${#lines[@]}" -eq 1 ] || { echo "$s: $status: $output"; false; }
    [[ "$output" == "pipelines/wmss.mk:"*": *** "*"${s%%=*}"* ]] || { echo "$s: $output"; false; }
  done
  # good ones pass, and the RUN given is the only directory pipeline-clean names
  run make -C "$REPO" --no-print-directory -n pipeline-clean RUN=bats-ok/s1 TASK=equation,prog LAMBDAS="0.3 1"
  [ "$status" -eq 0 ]
  [ "$output" = "rm -rf 'runs/bats-ok/s1'" ]
}
