#!/usr/bin/env bats
# wdl-report on small synthetic run directories: tables, notes, plots,
# default output places, determinism, errors.
bats_require_minimum_version 1.5.0  # run ! (a command that must fail)

# mkrun DIR SFT2_ACC WMSS_ACC: eval summaries, logs, scored records
mkrun() {
  local r=$1
  mkdir -p "$r/eval" "$r/logs"
  echo "{\"accuracy\": $2, \"n\": 300, \"correct\": 1, \"tasks\": {\"arith\": {\"accuracy\": 0.5, \"n\": 200, \"correct\": 100}, \"equation\": {\"accuracy\": 0.25, \"n\": 100, \"correct\": 25}}}" > "$r/eval/sft2.json"
  echo "{\"accuracy\": $3, \"n\": 300, \"correct\": 1, \"tasks\": {\"arith\": {\"accuracy\": 0.6, \"n\": 200, \"correct\": 120}, \"equation\": {\"accuracy\": 0.2, \"n\": 100, \"correct\": 20}}, \"tokens_per_s\": 5}" > "$r/eval/wmss.json"
  for arm in sft2 wmss; do
    {
      echo '{"step":0,"probe_target_logit":5,"probe_nontarget_logit":2,"probe_margin":3,"probe_nontarget_mass":0.4,"probe_nontarget_grad_norm":0.5}'
      for i in $(seq 1 12); do
        p=""
        [ "$i" = 12 ] && p=',"probe_target_logit":5.5,"probe_nontarget_logit":1,"probe_margin":4.5,"probe_nontarget_mass":0.1,"probe_nontarget_grad_norm":0.25'
        [ "$arm" = wmss ] && [ "$i" = 12 ] && p=',"probe_target_logit":5.5,"probe_nontarget_logit":0.5,"probe_margin":5,"probe_nontarget_mass":0.05,"probe_nontarget_grad_norm":0.2'
        echo "{\"step\":$i,\"epoch\":0,\"loss\":$((13 - i)).0,\"lr\":1e-05,\"grad_norm\":1.0,\"tokens\":64,\"tokens_per_s\":100.0,\"elapsed_s\":$i.0$p}"
      done
    } > "$r/logs/$arm.jsonl"
  done
  for i in $(seq 0 8); do echo "{\"idx\":$i,\"h_weak\":1.$i,\"h_strong\":0.$((i + 1))}"; done | zstd -q -o "$r/scored.jsonl.zst"
}

setup() {
  D=$BATS_TEST_TMPDIR
  mkdir -p "$D/runs"
  mkrun "$D/runs/s1" 0.40 0.45
  mkrun "$D/runs/s2" 0.42 0.47
  mkdir -p "$D/runs/s1/eval" && echo '{"accuracy": 0.1, "n": 300, "tasks": {"arith": {"accuracy": 0.15, "n": 200}}}' > "$D/runs/s1/eval/m0.json"
}

have_gnuplot() { command -v gnuplot >/dev/null 2>&1; }

@test "report: --help fits a screen and names the defaults" {
  run wdl-report --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"RUN/report for one run"* ]]
  [ "${#lines[@]}" -le 24 ]
}

@test "report: accuracy table over two seeds, in reading order, with deltas" {
  cd "$D"
  run wdl-report runs/s1 runs/s2
  [ "$status" -eq 0 ]
  md=runs/report/report.md
  [ -f "$md" ]
  grep -qxF '2 runs (seeds): `runs/s1`, `runs/s2`.' "$md"
  grep -qxF '| arm | seeds | arith | equation | overall | Δ |' "$md"
  grep -qxF '| m0 | 1 | 15.0 (n=200) | — | 10.0 (n=300) | -31.0 |' "$md"
  grep -qxF '| sft2 | 2 | 50.0 ± 0.0 (n=200) | 25.0 ± 0.0 (n=100) | 41.0 ± 1.4 (n=300) | — |' "$md"
  grep -qxF '| wmss | 2 | 60.0 ± 0.0 (n=200) | 20.0 ± 0.0 (n=100) | 46.0 ± 1.4 (n=300) | +5.0 |' "$md"
  # rows in reading order: m0, sft2, wmss
  [ "$(sed -n '/^## Accuracy/,/^## Training/p' "$md" | grep '^| [a-z]' | cut -d' ' -f2 | tr '\n' ' ')" = "arm m0 sft2 wmss " ]
  # stdout carries the same Markdown (stderr only says where it went)
  diff <(wdl-report runs/s1 runs/s2 2>/dev/null) "$md"
}

@test "report: training, diagnostics and selection tables" {
  cd "$D"
  wdl-report runs/s1 runs/s2 > /dev/null 2>&1
  md=runs/report/report.md
  # final loss = mean of the last 10 losses: (10 + 9 + ... + 1) / 10 = 5.5
  grep -qxF '| sft2 | 2 | 12 | 5.5000 ± 0.0000 | 100 ± 0 | 12.0 ± 0.0 |' "$md"
  grep -qxF '| wmss | 5 → 5.5 | 2 → 0.5 | 3 → 5 | 0.4 → 0.05 | 0.5 → 0.2 |' "$md"
  grep -qxF '| sft2 | 5 → 5.5 | 2 → 1 | 3 → 4.5 | 0.4 → 0.1 | 0.5 → 0.25 |' "$md"
  # relative to sft2: target +0%, non-target (0.5-1)/1 = -50%, margin +11.1%, mass -50%
  grep -qxF '| wmss | +0.0 | -50.0 | +11.1 | -50.0 |' "$md"
  # 9 scored records, h_strong 0.1..0.9 -> 3 per bucket
  grep -qF '| runs/s1 | scored.jsonl.zst | 9 | 1.4 | 0.5 | 100.0% | 3 / 3 / 3 |' "$md"
}

@test "report: plots exist as non-empty PNG and SVG" {
  have_gnuplot || skip "gnuplot not installed"
  cd "$D"
  wdl-report runs/s1 runs/s2 > /dev/null 2>&1
  for p in accuracy loss diagnostics entropy; do
    [ -s "runs/report/$p.png" ]
    [ -s "runs/report/$p.svg" ]
    [ "$(head -c 4 "runs/report/$p.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ]
    grep -q '<svg' "runs/report/$p.svg"
    grep -qF "($p.png)" runs/report/report.md
  done
  [ -s runs/report/plots.gp ]
  [ -s runs/report/accuracy.dat ]
  [ ! -e runs/report/plots.log ]
  # the scatter data has every scored point, in bucket blocks
  [ "$(grep -c '^[0-9]' runs/report/entropy.dat)" -eq 9 ]
  [ "$(grep -c '^# bucket' runs/report/entropy.dat)" -eq 3 ]
}

@test "report: one run writes RUN/report; --out elsewhere; same inputs same report.md" {
  cd "$D"
  wdl-report runs/s2/ > /dev/null 2>&1
  [ -f runs/s2/report/report.md ]
  grep -qxF '| sft2 | 1 | 50.0 (n=200) | 25.0 (n=100) | 42.0 (n=300) | — |' runs/s2/report/report.md
  wdl-report --out "$D/out/r1" --title "Seeds 1-2" runs/s1 runs/s2 > /dev/null 2>&1
  wdl-report --out "$D/out/r2" --title "Seeds 1-2" runs/s1 runs/s2 > /dev/null 2>&1
  head -n1 "$D/out/r1/report.md" | grep -qxF '# Seeds 1-2'
  cmp "$D/out/r1/report.md" "$D/out/r2/report.md"
  # rerunning replaces the directory (no stale output survives; a file of
  # another kind would stop it: cli.bats)
  touch "$D/out/r1/stale.png"
  wdl-report --out "$D/out/r1" runs/s1 > /dev/null 2>&1
  [ ! -e "$D/out/r1/stale.png" ]
  [ -z "$(ls -A "$D/out" | grep '^\.')" ]
  # it says where the report went, except with -q
  [ "$(wdl-report --no-plots --out "$D/out/r3" runs/s1 2>&1 >/dev/null)" = "wdl-report: report written to $D/out/r3/" ]
  [ -z "$(wdl-report -q --no-plots --out "$D/out/r3" runs/s1 2>&1 >/dev/null)" ]
}

@test "report: a glob over runs/ skips the report directory itself" {
  cd "$D"
  wdl-report runs/s1 runs/s2 > /dev/null 2>&1
  run wdl-report runs/*
  [ "$status" -eq 0 ]
  grep -qxF '2 runs (seeds): `runs/s1`, `runs/s2`.' runs/report/report.md
  grep -qxF -- '- runs/report: skipped, it is the output directory' runs/report/report.md
}

@test "report: missing pieces are notes, not errors" {
  cd "$D"
  mkdir -p partial/eval
  cp runs/s1/eval/wmss.json partial/eval/
  run wdl-report partial
  [ "$status" -eq 0 ]
  grep -qxF -- '- partial: no logs/ directory' partial/report/report.md
  grep -qxF -- '- partial: no scored.jsonl[.zst] or selected.jsonl[.zst]' partial/report/report.md
  grep -qxF 'No training logs (logs/<arm>.jsonl) found.' partial/report/report.md
  grep -qxF '| wmss | 1 | 60.0 (n=200) | 20.0 (n=100) | 45.0 (n=300) |' partial/report/report.md
}

@test "report: selected records with their bucket field" {
  cd "$D"
  mkdir -p sel
  for i in $(seq 0 9); do echo "{\"idx\":$i,\"h_weak\":1,\"h_strong\":0.$i}"; done |
    wdl-select --buckets 2 --dedup --n 5000 --seed 1 -q -o sel/selected.jsonl.zst
  run wdl-report --no-plots sel
  [ "$status" -eq 0 ]
  grep -qF '| sel | selected.jsonl.zst | 10 |' sel/report/report.md
  # buckets as written by wdl-select (2 buckets), not recomputed with 3
  grep -qF '| 5 / 5 |' sel/report/report.md
  [ ! -e sel/report/accuracy.png ]
  grep -qxF -- '- plots not drawn (--no-plots)' sel/report/report.md
}

@test "report: without gnuplot only report.md is written" {
  cd "$D"
  WDL_GNUPLOT=/nonexistent/gnuplot run wdl-report --out "$D/ng" runs/s1
  [ "$status" -eq 0 ]
  [ -f "$D/ng/report.md" ]
  [ ! -e "$D/ng/accuracy.png" ]
  grep -qF 'gnuplot not found' "$D/ng/report.md"
  run ! grep -qF '.png)' "$D/ng/report.md"
}

@test "report: errors are one line and leave no output" {
  cd "$D"
  run wdl-report
  [ "$status" -ne 0 ]
  [ "$output" = "wdl-report: no run directory given (see --help)" ]
  run wdl-report nowhere
  [ "$status" -ne 0 ]
  [ "$output" = "wdl-report: nowhere: not a run directory" ]
  run wdl-report --bogus runs/s1
  [ "$status" -ne 0 ]
  [ "${#lines[@]}" -eq 1 ]
  # one run twice would be two seeds; a baseline no run has, no verdict
  run wdl-report -o "$D/twice" runs/s1 ./runs/s1/
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-report: ./runs/s1: the same run given twice" ]
  [ ! -e "$D/twice" ]
  run wdl-report -o "$D/nob" --baseline nosuch runs/s1 runs/s2
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-report: --baseline nosuch: no run has that arm (eval/nosuch.json)" ]
  [ ! -e "$D/nob" ]
  mkdir -p empty
  run wdl-report empty
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-report: nothing to report"* ]]
  [ -z "$(ls -A empty)" ]
  printf '{"accuracy": 0.5,\n "n": }\n' > runs/s1/eval/broken.json
  run wdl-report runs/s1
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-report: runs/s1/eval/broken.json:2: "* ]]
  [ "${#lines[@]}" -eq 1 ]
  [ ! -e runs/s1/report ]
  [ -z "$(ls -A runs/s1 | grep '^\.')" ]
  echo '{"n": 3}' > runs/s1/eval/broken.json
  run wdl-report runs/s1
  [ "$status" -ne 0 ]
  [[ "$output" == *'broken.json: no numeric "accuracy"'* ]]
  # values no wdl-eval writes
  for bad in '{"accuracy": 1e308, "n": 3}/is not a fraction' '{"accuracy": 0.5, "n": -3}/"n" is not a count' \
             '{"accuracy": 0.5, "n": 2, "tasks": {"arith": {"accuracy": 0.5, "n": "x"}}}/"n" is not a count'; do
    echo "${bad%/*}" > runs/s1/eval/broken.json
    run wdl-report runs/s1
    [ "$status" -eq 1 ] && [ "${#lines[@]}" -eq 1 ] && [[ "$output" == *"broken.json: "*"${bad#*/}"* ]] ||
      { echo "$bad: $status $output"; false; }
    [ ! -e runs/s1/report ]
  done
  rm runs/s1/eval/broken.json
  printf '{"step":1,"loss":1.0}\n{"step":2,"loss":\n' >> runs/s1/logs/wmss.jsonl
  run wdl-report runs/s1
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-report: runs/s1/logs/wmss.jsonl:15: "* ]]
  [ ! -e runs/s1/report ]
}
