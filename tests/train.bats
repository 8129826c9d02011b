#!/usr/bin/env bats
# Command-line tests of wdl-init, wdl-train and wdl-score: determinism,
# resume after a kill, learning, WD-JT modes, and bad input.
bats_require_minimum_version 1.5.0  # run ! (a command that must fail)

setup() {
  D=$BATS_TEST_TMPDIR
  wdl-data gen --task arith --n 64 --seed 3 --split train > "$D/train.jsonl"
  wdl-init --preset nano --seed 1 -o "$D/m0" 2>/dev/null
}

train() { wdl-train -m "$D/m0" --batch 8 --seq 160 --lr 3e-3 --threads 2 -q "$@"; }
# The same in the background, $pid being wdl-train itself: `train ... &`
# would put a subshell there, and killing it would leave wdl-train running
# beside the resumed run (both writing the same outputs).
train_bg() { wdl-train -m "$D/m0" --batch 8 --seq 160 --lr 3e-3 --threads 2 -q "$@" & pid=$!; }

@test "wdl-init and wdl-train print help" {
  wdl-init --help | grep -q "usage: wdl-init"
  wdl-train --help | grep -q "usage: wdl-train"
  wdl-score --help | grep -q "usage: wdl-score"
}

@test "wdl-init writes an HF-layout directory with the preset's config" {
  [ -f "$D/m0/config.json" ]
  [ -f "$D/m0/model.safetensors" ]
  [ "$(jq -r .model_type "$D/m0/config.json")" = qwen3 ]
  [ "$(jq -r .hidden_size "$D/m0/config.json")" = 128 ]
  run wdl-init --preset nope -o "$D/x"
  [ "$status" -ne 0 ]
  [[ "$output" == *nope* ]]
  [ ! -e "$D/x" ]
}

@test "wdl-init draws with the config's initializer_range unless --std is given" {
  jq '.initializer_range = 0.05' "$D/m0/config.json" > "$D/c05.json"
  wdl-init --config "$D/c05.json" --seed 1 -o "$D/a" -q
  wdl-init --preset nano --std 0.05 --seed 1 -o "$D/b" -q
  cmp "$D/a/model.safetensors" "$D/b/model.safetensors"
  [ "$(jq .initializer_range "$D/a/config.json")" = 0.05 ]
  run ! cmp -s "$D/a/model.safetensors" "$D/m0/model.safetensors"
  wdl-init --config "$D/c05.json" --std 0.02 --seed 1 -o "$D/c" -q
  cmp "$D/c/model.safetensors" "$D/m0/model.safetensors"
}

@test "same seed and threads give byte-identical checkpoints" {
  train -o "$D/a" --steps 6 --seed 5 "$D/train.jsonl"
  train -o "$D/b" --steps 6 --seed 5 "$D/train.jsonl"
  cmp "$D/a/model.safetensors" "$D/b/model.safetensors"
  train -o "$D/c" --steps 6 --seed 6 "$D/train.jsonl"
  run ! cmp -s "$D/a/model.safetensors" "$D/c/model.safetensors"
}

@test "a run killed mid-way and resumed equals an uninterrupted run" {
  train -o "$D/full" --steps 16 --seed 2 "$D/train.jsonl"
  train_bg -o "$D/res" --steps 16 --seed 2 --save-every 3 "$D/train.jsonl"
  for i in $(seq 1 400); do [ -f "$D/res.ckpt/trainer.json" ] && break; sleep 0.05; done
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  [ ! -e "$D/res" ] || [ -f "$D/res/model.safetensors" ]
  train -o "$D/res" --steps 16 --seed 2 --save-every 3 --resume "$D/train.jsonl"
  cmp "$D/full/model.safetensors" "$D/res/model.safetensors"
  [ ! -e "$D/res.ckpt" ]
}

@test "NEFTune: --neftune 0 is off, the noise changes training, same bytes at 1 and 2 threads" {
  train -o "$D/plain" --steps 6 --seed 5 "$D/train.jsonl"
  train -o "$D/zero" --steps 6 --seed 5 --neftune 0 "$D/train.jsonl"
  cmp "$D/plain/model.safetensors" "$D/zero/model.safetensors"
  train -o "$D/n2" --steps 6 --seed 5 --neftune 5 "$D/train.jsonl"
  run ! cmp -s "$D/plain/model.safetensors" "$D/n2/model.safetensors"
  wdl-train -m "$D/m0" --batch 8 --seq 160 --lr 3e-3 --threads 1 -q -o "$D/n1" --steps 6 --seed 5 --neftune 5 "$D/train.jsonl"
  cmp "$D/n1/model.safetensors" "$D/n2/model.safetensors"
  run wdl-train -m "$D/m0" -o "$D/x" --neftune 5 --weak "$D/m0" "$D/train.jsonl"
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-train: --neftune is the SFT baseline; it does not combine with --weak or --weak-constant" ]
  run wdl-train -m "$D/m0" -o "$D/x" --neftune -1 "$D/train.jsonl"
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-train: --neftune must be >= 0 (0: off)" ]
  [ ! -e "$D/x" ]
}

@test "NEFTune: a resumed run equals an uninterrupted one; another alpha is refused" {
  train -o "$D/full" --steps 16 --seed 2 --neftune 5 "$D/train.jsonl"
  train_bg -o "$D/res" --steps 16 --seed 2 --neftune 5 --save-every 3 "$D/train.jsonl"
  for i in $(seq 1 400); do [ -f "$D/res.ckpt/trainer.json" ] && break; sleep 0.05; done
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  [ -f "$D/res.ckpt/trainer.json" ] || skip "run finished before the first checkpoint"
  [ "$(jq .neftune_alpha "$D/res.ckpt/trainer.json")" = 5 ]
  run train -o "$D/res" --steps 16 --seed 2 --save-every 3 --resume "$D/train.jsonl"
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-train: $D/res.ckpt/trainer.json: checkpoint was made with --neftune 5, this run has 0" ]
  [ ! -e "$D/res" ]
  train -o "$D/res" --steps 16 --seed 2 --neftune 5 --save-every 3 --resume "$D/train.jsonl"
  cmp "$D/full/model.safetensors" "$D/res/model.safetensors"
}

@test "resume refuses a checkpoint made on other data, or a damaged one" {
  train_bg -o "$D/r" --steps 9 --seed 2 --save-every 3 "$D/train.jsonl"
  for i in $(seq 1 400); do [ -f "$D/r.ckpt/trainer.json" ] && break; sleep 0.05; done
  kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  [ -f "$D/r.ckpt/trainer.json" ] || skip "run finished before the first checkpoint"
  head -n 30 "$D/train.jsonl" > "$D/other.jsonl"
  run train -o "$D/r" --steps 9 --seed 2 --resume "$D/other.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"different training data"* ]]
  # a step that is not an integer, or none, is damage, not step 0
  cp "$D/r.ckpt/trainer.json" "$D/tj"
  for edit in '.step = "x"' 'del(.step)'; do
    jq "$edit" "$D/tj" > "$D/r.ckpt/trainer.json"
    run train -o "$D/r" --steps 9 --seed 2 --resume "$D/train.jsonl"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [ ! -e "$D/r" ]
    [[ "$output" == *'trainer.json: "step" is missing or not an integer'* ]]
  done
}

@test "epochs that do not divide into steps: no step without data, the last epoch not saved twice" {
  # 20 records at --batch 8 are 3 micro-batches an epoch; --accum 2 takes
  # 2 a step, so 4 epochs are 12 micro-batches in 6 steps (not 4 x 2 = 8)
  head -n 20 "$D/train.jsonl" > "$D/t20.jsonl"
  wdl-train -m "$D/m0" --batch 8 --accum 2 --epochs 4 --seq 160 --threads 2 -q --probe-every 0 --save-epochs \
    --log "$D/acc.log" -o "$D/acc" "$D/t20.jsonl"
  [ "$(jq -s 'length' "$D/acc.log")" -eq 6 ]
  jq -se 'all(.tokens > 0) and .[-1].epoch == 4 and .[2].epoch == 2' "$D/acc.log"
  [ -d "$D/acc.epoch3" ]
  [ ! -e "$D/acc.epoch4" ]
}

@test "training learns: loss falls well below its start" {
  wdl-data gen --task arith --n 256 --seed 4 --split train > "$D/big.jsonl"
  train -o "$D/l" --steps 60 --batch 16 --seed 1 --log "$D/log.jsonl" "$D/big.jsonl"
  first=$(jq -s '[.[] | select(.loss)] | .[0].loss' "$D/log.jsonl")
  last=$(jq -s '[.[] | select(.loss)] | .[-5:] | map(.loss) | add / length' "$D/log.jsonl")
  echo "first $first last $last"
  awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < 0.4 * f) }'
}

@test "the log has one object per step with probe diagnostics" {
  train -o "$D/p" --steps 5 --probe-every 2 --log "$D/log.jsonl" "$D/train.jsonl"
  [ "$(jq -s '[.[] | select(.loss)] | length' "$D/log.jsonl")" -eq 5 ]
  jq -e -s 'map(select(.step == 2))[0] | .probe_margin and .probe_nontarget_mass and .tokens_per_s' "$D/log.jsonl"
  jq -e -s 'map(select(.step == 0))[0] | .probe_target_logit' "$D/log.jsonl"
}

@test "the last line says where the steps' time went, the shares adding up to the run" {
  run wdl-train -m "$D/m0" --batch 8 --seq 160 --lr 3e-3 --threads 2 -o "$D/t" --steps 4 --log "$D/log.jsonl" \
    --probe-every 1 "$D/train.jsonl"
  [ "$status" -eq 0 ]
  last="${lines[${#lines[@]}-1]}"
  [[ "$last" == "wdl-train: time: products "*"%, attention "*"%, norms "*"%, swiglu "*"%, embedding "*"%, loss "*"%, the rest "*"% (the optimizer, data, logging, probes, the output)" ]]
  # every share a number from 0 to 100, the products' above 0, all adding up to 100 (printed to 0.1)
  echo "$last" | grep -oE '[0-9]+\.[0-9]%' | tr -d '%' | awk '{ s += $1; if ($1 < 0 || $1 > 100) bad = 1; if (NR == 1 && $1 <= 0) bad = 1 }
    END { exit !(NR == 7 && !bad && s > 99.6 && s < 100.4) }'
  # -q says nothing
  run wdl-train -m "$D/m0" --batch 8 --seq 160 --threads 2 -q -o "$D/t2" --steps 1 "$D/train.jsonl"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
}

@test "WD-JT trains both models; frozen weak leaves the weak model unchanged" {
  train -o "$D/m1" --steps 4 "$D/train.jsonl"
  train -o "$D/j" --weak "$D/m0" --weak-out "$D/jw" --steps 3 "$D/train.jsonl"
  run ! cmp -s "$D/m0/model.safetensors" "$D/jw/model.safetensors"
  train -o "$D/f" --weak "$D/m0" --freeze-weak --weak-out "$D/fw" --steps 3 "$D/train.jsonl"
  cmp "$D/m0/model.safetensors" "$D/fw/model.safetensors"
  train -o "$D/cst" --weak-constant --lambda 0.5 --steps 3 "$D/train.jsonl"
  [ -f "$D/cst/model.safetensors" ]
}

@test "bad input: one-line errors, non-zero exit, no output" {
  printf '{"prompt": "a", "completion": "b"}\n{"prompt": "x"\n' > "$D/bad.jsonl"
  run train -o "$D/o" --steps 2 "$D/bad.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"bad.jsonl:2"* ]]
  [ ! -e "$D/o" ]
  printf '{"prompt": "a"}\n' > "$D/nocomp.jsonl"
  run train -o "$D/o" --steps 2 "$D/nocomp.jsonl"
  [ "$status" -ne 0 ]
  [ "$output" = "wdl-train: $D/nocomp.jsonl: no training examples (1 records without a completion, 0 with no loss token within --seq)" ]
  [ ! -e "$D/o" ]
  # a completion of another type is an error, not a record without one (training or scoring)
  printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": 5}\n' > "$D/numcomp.jsonl"
  run train -o "$D/o" --steps 2 "$D/numcomp.jsonl"
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-train: $D/numcomp.jsonl:2: record's \"completion\" is not a string" ]
  run wdl-score -m "$D/m0" --field h -o "$D/o.jsonl" "$D/numcomp.jsonl"
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-score: $D/numcomp.jsonl:2: record's \"completion\" is not a string" ]
  [ ! -e "$D/o" ]
  [ ! -e "$D/o.jsonl" ]
  run train -o "$D/o" --lr nan "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [ ! -e "$D/o" ]
  run train -o "$D/o" --lr 1e9 --clip 0 --steps 3 "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *diverged* ]]
  [ ! -e "$D/o" ]
  run wdl-train -m "$D/nowhere" -o "$D/o" "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [ "${#lines[@]}" -eq 1 ]
  [ ! -e "$D/o" ]
  head -c 1000 "$D/m0/model.safetensors" > "$D/trunc.st"
  mkdir "$D/tm" && cp "$D/m0/config.json" "$D/tm/" && mv "$D/trunc.st" "$D/tm/model.safetensors"
  run wdl-train -m "$D/tm" -o "$D/o" "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *model.safetensors* ]]
  [ ! -e "$D/o" ]
}

@test "weights or scores that are not finite: one line, exit 1, nothing written" {
  run wdl-init --preset nano --std 1e99 -o "$D/inf"
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == *"weights are not finite"* ]]
  [ ! -e "$D/inf" ]
  run train -o "$D/div" --steps 1 --warmup 0 --lr 1e99 "$D/train.jsonl"
  [ "$status" -eq 1 ]
  [[ "$output" == *"weights are not finite"* ]]
  [ ! -e "$D/div" ]
  # finite weights whose logits overflow: no record leaves without its scores
  wdl-init --preset nano --std 1e19 --seed 1 -o "$D/wide" -q
  run wdl-score -m "$D/wide" --field h --threads 1 --summary "$D/sum.json" -o "$D/sc.jsonl" "$D/train.jsonl"
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == *"scores are not finite"* ]]
  [ ! -e "$D/sc.jsonl" ]
  [ ! -e "$D/sum.json" ]
  [ -z "$(ls -A "$D" | grep '\.tmp\.')" ]
}

@test "wdl-score adds entropy, NLL and token count, streaming in order" {
  head -n 5 "$D/train.jsonl" | wdl-score -m "$D/m0" --field h --batch 2 > "$D/s.jsonl"
  [ "$(wc -l < "$D/s.jsonl")" -eq 5 ]
  jq -e '(.h > 0) and (.h_nll > 0) and (.h_tokens > 0) and .prompt' "$D/s.jsonl" > /dev/null
  [ "$(jq -s 'map(.idx)' -c "$D/s.jsonl")" = "$(head -n 5 "$D/train.jsonl" | jq -s 'map(.idx)' -c)" ]
  # an untrained model's entropy is near log(vocab)
  jq -e '.h > 4.5 and .h < 5.7' "$D/s.jsonl" > /dev/null
  # batch size does not change the scores
  head -n 5 "$D/train.jsonl" | wdl-score -m "$D/m0" --field h --batch 5 > "$D/s5.jsonl"
  paste <(jq .h "$D/s.jsonl") <(jq .h "$D/s5.jsonl") | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5) exit 1 }'
  # a completion wholly past --seq is not scored (no entropy of 0 that
  # selection would take for the easiest record), and is counted
  { head -n 1 "$D/train.jsonl"; head -n 1 "$D/train.jsonl" | jq -c '.prompt = (.prompt * 20) | .h = 9'; } > "$D/long.jsonl"
  run wdl-score -m "$D/m0" --field h --seq 400 -o "$D/sl.jsonl" "$D/long.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *"1 records with no completion token in their first 400 passed through unscored"* ]]
  jq -se '(.[0].h > 0) and (.[1] | has("h") or has("h_tokens") | not)' "$D/sl.jsonl"
}

@test "wdl-init reproduces the committed transformers-checked checkpoint byte for byte" {
  F=$BATS_TEST_DIRNAME/fixtures/c_written
  wdl-init --config "$F/config.json" --tokenizer byte --seed 7 --std 0.1 -o "$D/ci" 2>/dev/null
  cmp "$D/ci/model.safetensors" "$F/init/model.safetensors"
  cmp "$D/ci/config.json" "$F/init/config.json"
}
