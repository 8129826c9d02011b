#!/usr/bin/env bats
# The command line every wdl program shares (lib/cli.c): the same test for
# each program in bin/: help, version, usage errors, missing input, and
# outputs that appear whole or not at all.

PROGS="init train score select eval report data tok"

setup_file() {
  export C=$BATS_FILE_TMPDIR
  wdl-init --preset nano --seed 1 -o "$C/m" -q
  wdl-data gen --task arith --n 8 --seed 1 --split train | jq -c '.h_weak = (.idx % 3) + 1 | .h_strong = 1.5' > "$C/good.jsonl"
  # a valid record, then a broken line
  { head -n 2 "$C/good.jsonl"; echo '{"prompt":'; } > "$C/bad.jsonl"
  mkdir -p "$C/run/eval"
  echo '{"accuracy":' > "$C/run/eval/broken.json"
}

# A command line of program $1 whose input is the file $2 and whose output
# is $3: the input is read after the output is opened where the program
# streams.
cmdline() {
  case $1 in
    init) echo "wdl-init --config $2 -o $3" ;;
    train) echo "wdl-train -m $C/m --steps 1 --threads 1 -q -o $3 $2" ;;
    score) echo "wdl-score -m $C/m --field h --threads 1 -o $3 $2" ;;
    select) echo "wdl-select -q -o $3 $2" ;;
    eval) echo "wdl-eval -m $C/m --max-new 4 --threads 1 --preds $3.preds -o $3 $2" ;;
    report) echo "wdl-report --no-plots -o $3 $2" ;;
    data) echo "wdl-data cat -o $3 $2" ;;
    tok) echo "wdl-tok -t byte encode --text-field prompt -o $3 $2" ;;
  esac
}

# no output and no temporary left beside it
no_output() {
  [ ! -e "$1" ]
  [ -z "$(ls -A "$(dirname "$1")" | grep -F ".$(basename "$1").tmp." || true)" ]
}

@test "cli: -h/--help prints usage on stdout, fits a screen, exits 0" {
  for p in $PROGS; do
    for h in -h --help; do
      run wdl-$p $h
      [ "$status" -eq 0 ] || { echo "wdl-$p $h: $status"; false; }
      [[ "$output" == "usage: wdl-$p"* ]]
      [[ "$output" == *"--threads N"* ]]
      [ "$(echo "$output" | wc -l)" -le 40 ] || { echo "wdl-$p: $(echo "$output" | wc -l) lines"; false; }
      [ "$(echo "$output" | LC_ALL=C.UTF-8 awk '{ if (length($0) > m) m = length($0) } END { print m }')" -le 80 ] ||
        { echo "wdl-$p: a line over 80 columns"; false; }
    done
  done
}

@test "cli: --version prints the program and version" {
  for p in $PROGS; do
    run wdl-$p --version
    [ "$status" -eq 0 ]
    [[ "$output" =~ ^wdl-$p\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
  done
}

@test "cli: unknown option, missing value, bad number exit 2 with one line" {
  for p in $PROGS; do
    run wdl-$p --bogus
    [ "$status" -eq 2 ] || { echo "wdl-$p --bogus: $status"; false; }
    [ "$output" = "wdl-$p: unknown option '--bogus' (see --help)" ]
    run wdl-$p -Z
    [ "$status" -eq 2 ]
    [ "$output" = "wdl-$p: unknown option '-Z' (see --help)" ]
    run wdl-$p --threads
    [ "$status" -eq 2 ]
    [ "$output" = "wdl-$p: --threads needs a value (see --help)" ]
    run wdl-$p --threads two
    [ "$status" -eq 2 ]
    [ "$output" = "wdl-$p: --threads: not an integer: 'two'" ]
    run wdl-$p --threads 0
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
  done
}

@test "cli: a missing required option or argument exits 2 with one line" {
  for c in "wdl-init -o $C/x" "wdl-init --preset nano" "wdl-train -o $C/x" "wdl-train -m $C/m" \
           "wdl-score -m $C/m" "wdl-eval" "wdl-report" "wdl-data" "wdl-data gen --n 3" "wdl-tok encode" \
           "wdl-data split --head 1 -o $C/x" "wdl-select --n 0"; do
    run $c
    [ "$status" -eq 2 ] || { echo "$c: $status: $output"; false; }
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == wdl-* ]]
  done
}

@test "cli: a malformed or out-of-range value exits 2 with one line" {
  for c in "wdl-train -m $C/m -o $C/x --schedule foo $C/good.jsonl" "wdl-init --preset nano --template foo -o $C/x" \
           "wdl-init --preset foo -o $C/x" "wdl-train -m $C/m -o $C/x --probe-every -1 $C/good.jsonl" \
           "wdl-train -m $C/m -o $C/x --save-every -1 $C/good.jsonl" \
           "wdl-train -m $C/m -o $C/x --threads 1 --batch 2 --epochs 9000000000000000000 $C/good.jsonl" \
           "wdl-score -m $C/m --field prompt $C/good.jsonl" "wdl-eval --score-only $C/good.jsonl --preds -" \
           "wdl-select --n -1 -o $C/x $C/good.jsonl" "wdl-data take --to -1 -o $C/x $C/good.jsonl" \
           "wdl-data split --head -1 -o $C/x --rest $C/y $C/good.jsonl" "wdl-data gen --task arith --n -2 --split train -o $C/x" \
           "wdl-train -m $C/m -o $C/x --seed 18446744073709551615 $C/good.jsonl"; do
    run $c
    [ "$status" -eq 2 ] && [ "${#lines[@]}" -eq 1 ] || { echo "$c: $status: $output"; false; }
    no_output "$C/x"
  done
  run wdl-data gen --task arith --n " 5" --split train
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-data: --n: not an integer: ' 5'" ]
  run wdl-init --preset nano --seed 99999999999999999999 -o "$C/x"
  [ "$status" -eq 2 ]
  [ "$output" = "wdl-init: --seed: out of range: '99999999999999999999'" ]
}

@test "cli: two outputs that name one file are refused before anything is written" {
  cd "$C"
  for c in "wdl-data split --head 3 -o same.jsonl --rest ./same.jsonl good.jsonl" \
           "wdl-select -q --stats same.jsonl -o same.jsonl good.jsonl" \
           "wdl-score -m m --field h --threads 1 --summary same.jsonl -o $C/same.jsonl good.jsonl" \
           "wdl-eval -m m --max-new 4 --threads 1 --preds same.jsonl -o same.jsonl good.jsonl" \
           "wdl-train -m m --steps 1 --threads 1 --log same.jsonl -o same.jsonl good.jsonl"; do
    run $c
    [ "$status" -eq 2 ] && [ "${#lines[@]}" -eq 1 ] || { echo "$c: $status: $output"; false; }
    [[ "$output" == *" name the same file '"* ]]
    no_output "$C/same.jsonl"
  done
}

@test "cli: an output directory holding files the program does not write is not replaced" {
  mkdir -p "$C/keep" && touch "$C/keep/notes.txt"
  for c in "wdl-init --preset nano -o $C/keep" "wdl-train -m $C/m --steps 1 --threads 1 -o $C/keep $C/good.jsonl" \
           "wdl-report -o $C/keep $C/run"; do
    run $c
    [ "$status" -eq 2 ] && [ "${#lines[@]}" -eq 1 ] || { echo "$c: $status: $output"; false; }
    [[ "$output" == *"-o $C/keep: the directory holds 'notes.txt'"* ]]
    [ -f "$C/keep/notes.txt" ]
  done
  # a directory of what the program writes is replaced, as the pipeline's reruns need
  wdl-init --preset nano --seed 2 -o "$C/keep2" -q
  wdl-init --preset nano --seed 1 -o "$C/keep2" -q
  cmp "$C/keep2/model.safetensors" "$C/m/model.safetensors"
}

@test "cli: a missing input file exits 1 with one line naming it" {
  for p in $PROGS; do
    run $(cmdline $p "$C/missing.jsonl" "$C/out.$p")
    [ "$status" -eq 1 ] || { echo "wdl-$p: $status: $output"; false; }
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "wdl-$p: $C/missing.jsonl"* ]]
    no_output "$C/out.$p"
  done
}

@test "cli: bad input leaves no output and no temporary file" {
  for p in $PROGS; do
    in=$C/bad.jsonl
    [ $p = init ] && in=$C/run/eval/broken.json
    [ $p = report ] && in=$C/run
    run $(cmdline $p "$in" "$C/out.$p")
    [ "$status" -eq 1 ] || { echo "wdl-$p: $status: $output"; false; }
    [ "${#lines[@]}" -eq 1 ]
    no_output "$C/out.$p"
    [ $p = eval ] && no_output "$C/out.$p.preds"
    true
  done
}

@test "cli: -o and --output are the same option; the output is complete" {
  for p in $PROGS; do
    [ $p = init ] || [ $p = report ] && continue
    c=$(cmdline $p "$C/good.jsonl" "$C/a.$p")
    $c > /dev/null 2>&1 || { echo "$c failed"; false; }
    c=$(cmdline $p "$C/good.jsonl" "$C/b.$p")
    ${c/ -o / --output } > /dev/null 2>&1
    if [ $p = train ]; then cmp "$C/a.$p/model.safetensors" "$C/b.$p/model.safetensors"
    elif [ $p = eval ]; then   # the summary holds a speed: compare the rest
      [ "$(jq -c 'del(.tokens_per_s)' "$C/a.$p")" = "$(jq -c 'del(.tokens_per_s)' "$C/b.$p")" ]
      jq -e '.n == 8' "$C/a.$p"
    else [ -s "$C/a.$p" ] && cmp "$C/a.$p" "$C/b.$p"; fi
  done
  wdl-init --preset nano --seed 1 -q --output "$C/m2"
  cmp "$C/m2/model.safetensors" "$C/m/model.safetensors"
}

@test "cli: SIGTERM while writing removes the temporary output (file and directory)" {
  wdl-data gen --task arith --n 50000000 --seed 1 --split train -o "$C/big.jsonl.zst" &
  pid=$!
  for i in $(seq 1 200); do ls -A "$C" | grep -q '^\.big\.jsonl\.zst\.tmp\.' && break; sleep 0.05; done
  sleep 0.2
  kill -TERM $pid
  wait $pid || status=$?
  [ "$status" -eq 143 ]
  no_output "$C/big.jsonl.zst"
  wdl-init --preset small -o "$C/small" -q &
  pid=$!
  for i in $(seq 1 400); do ls -A "$C" | grep -q '^\.small\.tmp\.' && break; sleep 0.02; done
  kill -TERM $pid
  wait $pid || true
  no_output "$C/small"
}

@test "cli: options and file arguments may be mixed; -- ends options" {
  wdl-data cat "$C/good.jsonl" -o "$C/mixed.jsonl"
  cmp "$C/mixed.jsonl" "$C/good.jsonl"
  cp "$C/good.jsonl" "$C/-dash.jsonl"
  (cd "$C" && wdl-data cat -o mixed2.jsonl -- -dash.jsonl)
  cmp "$C/mixed2.jsonl" "$C/good.jsonl"
}

@test "cli: messages that quote invalid UTF-8 are valid UTF-8 (U+FFFD)" {
  x=$'\xc3'
  for c in "wdl-init --preset a${x}b -o $C/x" "wdl-train -m $C/m -o $C/x --order a${x}b" \
           "wdl-score -m $C/a${x}b --field h" "wdl-select --scheme a${x}b" \
           "wdl-eval --score-only $C/a${x}b" "wdl-report $C/a${x}b" \
           "wdl-data gen --task a${x}b --n 1 --split train" "wdl-tok -t byte a${x}b"; do
    run $c
    [ "$status" -ne 0 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == *"a"$'\xef\xbf\xbd'"b"* ]] || { echo "$c: $output"; false; }
    printf '%s' "$output" | iconv -f UTF-8 -t UTF-8 > /dev/null
  done
}

@test "cli: a progress line on a terminal only, and not with -q" {
  command -v script > /dev/null || skip "script (util-linux) absent"
  gen="wdl-data gen --task arith --n 3000 --seed 1 --split train -o $C/p.jsonl"
  out=$(script -qec "$gen" /dev/null)
  [[ "$out" == *"wdl-data: ["*"] 3000/3000 records "*"/s ETA"* ]]
  [ -z "$(script -qec "$gen -q" /dev/null)" ]
  run $gen
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  train="wdl-train -m $C/m --steps 3 --threads 1 -o $C/tp $C/good.jsonl"
  out=$(script -qec "$train" /dev/null)
  [[ "$out" == *"3/3 steps"*"loss "* ]]
  [[ "$(script -qec "$train -q" /dev/null)" != *steps* ]]
  out=$(script -qec "wdl-score -m $C/m --field h -o $C/sp.jsonl $C/good.jsonl" /dev/null)
  [[ "$out" == *"wdl-score: 8 records "* ]]
  out=$(script -qec "wdl-eval -m $C/m --max-new 2 -o $C/ep.json $C/good.jsonl" /dev/null)
  [[ "$out" == *"wdl-eval: 8 records "* ]]
}

@test "cli: wdl-score's last lines give its time and where it went, the shares adding up to the run" {
  run wdl-score -m "$C/m" --field h --threads 1 -o "$C/st.jsonl" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [[ "${lines[${#lines[@]}-2]}" =~ ^wdl-score:\ scored\ 8\ records\ in\ [0-9]+\.[0-9]s$ ]]
  last="${lines[${#lines[@]}-1]}"
  [[ "$last" == "wdl-score: time: products "*"%, attention "*"%, norms "*"%, swiglu "*"%, embedding "*"%, loss "*"%, the rest "*"% (opening the model "*"s, reading and writing records)" ]]
  # seven shares from 0 to 100, the products' above 0, adding up to 100 (printed to 0.1)
  echo "$last" | grep -oE '[0-9]+\.[0-9]%' | tr -d '%' | awk '{ s += $1; if ($1 < 0 || $1 > 100) bad = 1; if (NR == 1 && $1 <= 0) bad = 1 }
    END { exit !(NR == 7 && !bad && s > 99.6 && s < 100.4) }'
  run wdl-score -m "$C/m" --field h --threads 1 -q -o "$C/st.jsonl" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
}

@test "cli: executed again for its wait policy under OMP_PROC_BIND, a program keeps every CPU" {
  # libgomp binds the initial thread to one CPU before main; the program
  # executed again (OMP_WAIT_POLICY unset) must not inherit only that one
  [ "$(nproc)" -ge 2 ] || skip "one CPU: nothing to lose"
  for p in $PROGS; do
    run env -u OMP_WAIT_POLICY OMP_PROC_BIND=true OMP_DISPLAY_ENV=true wdl-$p --version
    [ "$status" -eq 0 ]
    places=$(echo "$output" | grep "OMP_PLACES")
    [ "$(echo "$places" | wc -l)" -eq 2 ] || { echo "wdl-$p: not executed again: $places"; false; }
    [ "$(echo "$places" | sort -u | wc -l)" -eq 1 ] || { echo "wdl-$p: $places"; false; }
  done
}

@test "cli: the default thread count is the CPUs the program may use, not every online one" {
  command -v taskset >/dev/null || skip "no taskset"
  run env -u OMP_NUM_THREADS wdl-train -m "$C/m" --steps 1 -o "$C/threads_all" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  n=$(env -u OMP_NUM_THREADS nproc)
  [[ "$output" == *", $n thread"* ]] || { echo "nproc $n: $output"; false; }
  run env -u OMP_NUM_THREADS taskset -c 0 wdl-train -m "$C/m" --steps 1 -o "$C/threads_one" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *", 1 thread"$'\n'* || "$output" == *", 1 thread" ]] || { echo "$output"; false; }
}

@test "cli: OMP_NUM_THREADS sets the default thread count, --threads overrides it" {
  run env OMP_NUM_THREADS=3 wdl-train -m "$C/m" --steps 1 -o "$C/threads_env" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *", 3 threads"* ]] || { echo "$output"; false; }
  run env OMP_NUM_THREADS=3,1 wdl-train -m "$C/m" --steps 1 --threads 2 -o "$C/threads_flag" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *", 2 threads"* ]] || { echo "$output"; false; }
}

@test "cli: --seq past max_position_embeddings runs, with one warning (train, score)" {
  run wdl-train -m "$C/m" --steps 1 --threads 1 --seq 600 -o "$C/long" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [ "$(grep -c 'max_position_embeddings (512)' <<<"$output")" -eq 1 ]
  run wdl-score -m "$C/m" --field h --threads 1 --seq 600 -o "$C/long.jsonl" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [ "$(grep -c 'max_position_embeddings (512)' <<<"$output")" -eq 1 ]
  run wdl-train -m "$C/m" --steps 1 --threads 1 --seq 512 -o "$C/short" "$C/good.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" != *max_position_embeddings* ]]
}
