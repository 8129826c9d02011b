#!/usr/bin/env bats
# Scoring and evaluation split over processes: `mpirun -np 2` and
# `--shard K/N` + merge give byte-identical records and the same summaries
# as one process (summaries exactly; wdl-eval's tokens_per_s is a timing);
# bad --shard values, bad partial summaries, and a bad record on rank 1 fail
# with one line and leave no output.

load mpi

setup_file() {
  export C=$BATS_FILE_TMPDIR
  wdl-init --preset nano --seed 1 -o "$C/m" -q
  # wdl-score: 3 records without a completion, then 150; --batch 2 makes
  # windows of 32 records: 5 of them
  wdl-data gen --task equation,prog --n 150 --seed 3 --split train > "$C/train.jsonl"
  { head -n 3 "$C/train.jsonl" | jq -c 'del(.completion)'; cat "$C/train.jsonl"; } > "$C/sd.jsonl"
  export SCORE="wdl-score -m $C/m --field h --batch 2 --threads 1 -q"
  $SCORE --summary "$C/s1.json" -o "$C/s1.jsonl" "$C/sd.jsonl"
  # wdl-eval: 300 records, windows of 256: 2
  wdl-data gen --task equation,prog --n 300 --seed 4 --split test > "$C/ed.jsonl"
  export EVAL="wdl-eval -m $C/m --max-new 4 --batch 8 --threads 1 -q"
  $EVAL --preds "$C/e1.jsonl" -o "$C/e1.json" "$C/ed.jsonl"
  # --score-only: every third prediction right
  jq -c '.prediction = (if .idx % 3 == 0 then .completion else "no" end)' "$C/ed.jsonl" > "$C/pd.jsonl"
  wdl-eval --score-only --preds "$C/p1.jsonl" -o "$C/p1.json" "$C/pd.jsonl"
}

# the summary without its timing
counts() { jq -c 'del(.tokens_per_s)' "$1"; }

# no file and no temporary beside it
no_output() {
  [ ! -e "$1" ]
  [ -z "$(ls -A "$(dirname "$1")" | grep -F ".$(basename "$1").tmp." || true)" ]
}

@test "shard: the references are what they should be" {
  [ "$(wc -l < "$C/s1.jsonl")" -eq 153 ]
  jq -e '.records == 153 and .positions > 0' "$C/s1.json"
  jq -e '.n == 300' "$C/e1.json"
  jq -e '.n == 300 and .correct == 100' "$C/p1.json"
}

@test "shard: mpirun -np 2 wdl-score == one process (records, summary, .zst, stdin)" {
  need_mpirun
  cd "$C"
  mpi 2 $SCORE --summary s2.json -o s2.jsonl sd.jsonl
  cmp s1.jsonl s2.jsonl
  cmp s1.json s2.json
  mpi 2 $SCORE -o s2.jsonl.zst sd.jsonl
  $SCORE -o s1.jsonl.zst sd.jsonl
  cmp s1.jsonl.zst s2.jsonl.zst
  mpi 2 $SCORE < sd.jsonl > s2.stdin.jsonl
  cmp s1.jsonl s2.stdin.jsonl
  # more ranks than windows: some get none
  mpi 7 $SCORE --summary s7.json -o s7.jsonl sd.jsonl
  cmp s1.jsonl s7.jsonl
  cmp s1.json s7.json
}

@test "shard: wdl-score --shard K/N outputs concatenated, summaries merged == one process" {
  cd "$C"
  for n in 2 7; do   # 7: more shards than windows, some empty
    parts=() sums=()
    for ((k = 0; k < n; k++)); do
      $SCORE --shard $k/$n --summary sp$k.json -o sp$k.jsonl.zst sd.jsonl
      parts+=(sp$k.jsonl.zst) sums+=(sp$k.json)
    done
    cat "${parts[@]}" | zstd -dcq | cmp - s1.jsonl
    # the partials in any order
    wdl-score --merge-summaries -o merged.json $(printf '%s\n' "${sums[@]}" | sort -r)
    cmp merged.json s1.json
  done
  # wdl-data cat merges too (one zstd frame, as one process writes)
  $SCORE -o s1.jsonl.zst sd.jsonl
  wdl-data cat -o m.jsonl.zst sp0.jsonl.zst sp1.jsonl.zst sp2.jsonl.zst sp3.jsonl.zst sp4.jsonl.zst sp5.jsonl.zst sp6.jsonl.zst
  cmp m.jsonl.zst s1.jsonl.zst
  jq -e '.shard == "6/7" and .window == 32 and (.windows | length) == 1' sp6.json
}

@test "shard: scoring and decoding give the same bytes at 1 and 2 threads (ranks run fewer threads)" {
  cd "$C"
  # default --batch: products large enough for OpenBLAS to thread them,
  # whose bytes then depended on the thread count (on Zen 3's kernels)
  for p in fp32 bf16; do
    for t in 1 2; do
      wdl-score -m m --field h --precision $p --threads $t -q -o st$t.jsonl sd.jsonl 2>/dev/null
      wdl-eval -m m --max-new 8 --precision $p --threads $t -q --preds et$t.jsonl -o et$t.json ed.jsonl 2>/dev/null
    done
    cmp st1.jsonl st2.jsonl
    cmp et1.jsonl et2.jsonl
    [ "$(counts et1.json)" = "$(counts et2.json)" ]
  done
}

@test "shard: --shard under mpirun == the same shard from one process" {
  need_mpirun
  cd "$C"
  $SCORE --shard 1/2 --summary a.json -o a.jsonl sd.jsonl
  mpi 2 $SCORE --shard 1/2 --summary b.json -o b.jsonl sd.jsonl
  cmp a.jsonl b.jsonl
  cmp a.json b.json
}

@test "shard: mpirun -np 2 wdl-eval == one process (predictions, counts; -m and --score-only)" {
  need_mpirun
  cd "$C"
  mpi 2 $EVAL --preds e2.jsonl -o e2.json ed.jsonl
  cmp e1.jsonl e2.jsonl
  [ "$(counts e1.json)" = "$(counts e2.json)" ]
  jq -e '.tokens_per_s > 0' e2.json
  mpi 2 wdl-eval --score-only --preds p2.jsonl < pd.jsonl > p2.json
  cmp p1.jsonl p2.jsonl
  cmp p1.json p2.json
}

@test "shard: wdl-eval --shard K/N predictions concatenated, summaries merged == one process" {
  cd "$C"
  for k in 0 1; do $EVAL --shard $k/2 --preds ep$k.jsonl -o es$k.json ed.jsonl; done
  cat ep0.jsonl ep1.jsonl | cmp - e1.jsonl
  wdl-eval --merge-summaries -o em.json es1.json es0.json
  [ "$(counts em.json)" = "$(counts e1.json)" ]
  jq -e '.n == 256 and .shard == "0/2" and .tokens > 0' es0.json
  for k in 0 1 2; do wdl-eval --score-only --shard $k/3 --preds pp$k.jsonl -o ps$k.json pd.jsonl; done
  cat pp0.jsonl pp1.jsonl pp2.jsonl | cmp - p1.jsonl
  wdl-eval --merge-summaries ps0.json ps1.json ps2.json > pm.json
  cmp pm.json p1.json
}

@test "shard: a bad --shard is a usage error: one line, exit 2" {
  cd "$C"
  for s in 2/2 -1/2 1/0 0/0 1 a/b 0/2x /2 0/; do
    for p in "$SCORE" "$EVAL"; do
      run $p --shard "$s" -o x.out sd.jsonl
      [ "$status" -eq 2 ] || { echo "$p --shard $s: $status"; false; }
      [ "${#lines[@]}" -eq 1 ]
      [[ "$output" == *"--shard: expected K/N with 0 <= K < N, got '$s'" ]]
    done
  done
  for p in "$SCORE" "$EVAL"; do
    run $p --shard 0/2 -o x.out
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == *"--shard: needs input files"* ]]
    run $p --shard 0/2 -o x.out - < sd.jsonl
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
  done
  run wdl-score --merge-summaries -m m -o x.out s1.json
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 1 ]
  no_output "$C/x.out"
}

@test "shard: merging the wrong summaries fails with one line and no output" {
  cd "$C"
  $SCORE --shard 0/2 --summary q0.json -o /dev/null sd.jsonl
  $SCORE --shard 1/2 --summary q1.json -o /dev/null sd.jsonl
  $SCORE --shard 1/3 --summary r1.json -o /dev/null sd.jsonl
  $SCORE --batch 4 --shard 1/2 --summary w1.json -o /dev/null sd.jsonl
  for set in "q0.json" "q0.json q0.json" "q0.json r1.json" "q0.json w1.json" "q0.json s1.json"; do
    run wdl-score --merge-summaries -o x.json $set
    [ "$status" -eq 1 ] || { echo "$set: $status"; false; }
    [ "${#lines[@]}" -eq 1 ]
    no_output "$C/x.json"
  done
  run wdl-score --merge-summaries q0.json
  [[ "$output" == "wdl-score: shard 1/2 is missing"* ]]
  run wdl-score --merge-summaries q0.json q0.json
  [[ "$output" == "wdl-score: shard 0/2 given twice"* ]]
  run wdl-score --merge-summaries q0.json w1.json
  [[ "$output" == *"same --batch"* ]]
  run wdl-eval --merge-summaries -o x.json q0.json q1.json
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == *"not a wdl-eval summary"* ]]
  no_output "$C/x.json"
  # counts and durations that no wdl-eval wrote
  for k in 0 1; do wdl-eval --score-only --shard $k/2 -o g$k.json pd.jsonl; done
  for edit in '.tasks |= map_values(.n = "x")/"n" is not a count' '.tasks |= map_values(.correct = -1)/"correct" is not a count' \
              '.tasks |= map_values(.correct = .n + 1)/correct of' '.tokens = 1.5/"tokens" is not a count' \
              '.seconds = -1/"seconds" is not a duration'; do
    jq -c "${edit%/*}" g1.json > gb.json
    run wdl-eval --merge-summaries -o x.json g0.json gb.json
    [ "$status" -eq 1 ] && [ "${#lines[@]}" -eq 1 ] && [[ "$output" == *"shard 1/2: "*"${edit#*/}"* ]] ||
      { echo "$edit: $status $output"; false; }
    no_output "$C/x.json"
  done
  wdl-eval --merge-summaries -o x.json g0.json g1.json
}

@test "shard: a bad record on rank 1 ends the job: one line naming the rank, no output" {
  need_mpirun
  cd "$C"
  # line 40 is in window 1 (records 33..64), which rank 1 scores
  awk 'NR == 40 { print "{\"x\": 1}"; next } 1' sd.jsonl > bad.jsonl
  run mpi 2 $SCORE --summary bad.json -o bad.jsonl.zst bad.jsonl
  [ "$status" -ne 0 ]
  [ "${#lines[@]}" -eq 1 ]
  [ "$output" = "wdl-score: rank 1: bad.jsonl:40: record has no prompt" ]
  no_output "$C/bad.jsonl.zst"
  no_output "$C/bad.json"
  # wdl-eval: record 300 is in window 1
  awk 'NR == 300 { print "{\"prompt\": \"2+2\"}"; next } 1' pd.jsonl > badp.jsonl
  run mpi 2 wdl-eval --score-only --preds badp.out -o badp.json badp.jsonl
  [ "$status" -ne 0 ]
  [ "${#lines[@]}" -eq 1 ]
  [ "$output" = "wdl-eval: rank 1: badp.jsonl:300: record has no \"prediction\" string" ]
  no_output "$C/badp.out"
  no_output "$C/badp.json"
}

@test "shard: the pipeline runs training, scoring and evaluation as RANKS ranks" {
  cd "$BATS_TEST_DIRNAME/.."
  # BATCH a multiple of RANKS: each rank trains on BATCH/RANKS sequences
  run make -n -s runs/bats-rk/scored_weak.jsonl.zst runs/bats-rk/eval/m1.json runs/bats-rk/saturation/m1.json \
    SCALE=smoke RUN=bats-rk RANKS=3 THREADS=6 BATCH=9 MPIRUN="mpirun --hostfile h"
  [ "$status" -eq 0 ]
  [ "$(grep -c -- '-- mpirun --hostfile h -np 3 [^ ]*/wdl-\(score\|eval\) --threads 2 ' <<<"$output")" -eq 3 ]
  [ "$(grep -c -- '-- mpirun --hostfile h -np 3 [^ ]*/wdl-train --threads 2 [^|]* --batch 3 ' <<<"$output")" -ge 2 ]
  run make -n -s runs/bats-rk/scored_weak.jsonl.zst SCALE=smoke RUN=bats-rk THREADS=6
  [[ "$output" != *mpirun* ]]
  [[ "$output" == *"/wdl-score --threads 6 "* ]]
}
