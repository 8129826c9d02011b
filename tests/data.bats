#!/usr/bin/env bats
# Command-line tests for wdl-data and wdl-eval --score-only: pipes, .zst,
# archive members, error messages with file:line, no partial outputs.
bats_require_minimum_version 1.5.0  # run ! (a command that must fail)

setup() {
  T=$BATS_TEST_TMPDIR
  SHARED=${WDL_SHARED:-../shared}
}

# The records of an import, without the note on stderr naming the layout.
import_quiet() { wdl-data import "$@" 2>/dev/null; }

# A record file with a bad line 3.
bad_file() {
  printf '%s\n' '{"idx":0,"prompt":"a"}' '' '{"idx":1,"prompt":' '{"idx":2}' > "$1"
}

@test "wdl-data --help and wdl-eval --help fit a screen and exit 0" {
  run wdl-data --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"wdl-data gen"* ]]
  [ "$(echo "$output" | wc -l)" -le 30 ]
  run wdl-eval --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"--score-only"* ]]
  [ "$(echo "$output" | wc -l)" -le 30 ]
  run wdl-data gen --help
  [ "$status" -eq 0 ]
}

@test "wdl-data: unknown command and option are one-line errors" {
  run wdl-data frobnicate
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: unknown command 'frobnicate'"* ]]
  run wdl-data gen --task arith --n 2 --seed 1 --split train --bogus
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: unknown option '--bogus'"* ]]
  run wdl-data gen --task nope --n 2 --seed 1 --split train
  [ "$status" -ne 0 ]
  [[ "$output" == *"unknown task 'nope'"* ]]
  run wdl-data gen --task arith --n 2 --seed 1 --split train --difficulty 5
  [ "$status" -ne 0 ]
  [[ "$output" == *"1..4"* ]]
  run wdl-data gen --task arith --n x --seed 1 --split train
  [ "$status" -ne 0 ]
  [[ "$output" == *"--n: not an integer"* ]]
}

@test "gen is deterministic, N records, unique idx, seeds differ" {
  wdl-data gen --task mix --n 60 --seed 5 --split train > "$T/a.jsonl"
  wdl-data gen --task mix --n 60 --seed 5 --split train > "$T/b.jsonl"
  wdl-data gen --task mix --n 60 --seed 6 --split train > "$T/c.jsonl"
  cmp "$T/a.jsonl" "$T/b.jsonl"
  run ! cmp -s "$T/a.jsonl" "$T/c.jsonl"
  [ "$(wc -l < "$T/a.jsonl")" -eq 60 ]
  [ "$(jq -r .idx "$T/a.jsonl" | sort -u | wc -l)" -eq 60 ]
  [ "$(jq -r .task "$T/a.jsonl" | sort | uniq -c | awk '{print $1}' | sort -u)" = "20" ]
  jq -e 'has("prompt") and has("completion") and has("answer")' "$T/a.jsonl" > /dev/null
}

@test "gen splits never share a prompt, across seeds" {
  wdl-data gen --task mix --n 600 --seed 1 --split train --difficulty 1 | jq -r '.prompt|ascii_downcase' | sort > "$T/tr"
  wdl-data gen --task mix --n 150 --seed 2 --split dev --difficulty 1 | jq -r '.prompt|ascii_downcase' | sort > "$T/dv"
  wdl-data gen --task mix --n 150 --seed 3 --split test --difficulty 1 | jq -r '.prompt|ascii_downcase' | sort > "$T/te"
  [ "$(sort -u "$T/tr" | wc -l)" -eq 600 ]
  [ -z "$(comm -12 "$T/tr" "$T/dv")" ]
  [ -z "$(comm -12 "$T/tr" "$T/te")" ]
  [ -z "$(comm -12 "$T/dv" "$T/te")" ]
}

@test "gen -o FILE.zst is zstd, equal to the plain output, no temp left" {
  wdl-data gen --task prog --n 40 --seed 3 --split dev > "$T/p.jsonl"
  wdl-data gen --task prog --n 40 --seed 3 --split dev -o "$T/p.jsonl.zst"
  [ "$(head -c 4 "$T/p.jsonl.zst" | od -An -tx1 | tr -d ' ')" = "28b52ffd" ]
  zstd -dc "$T/p.jsonl.zst" | cmp - "$T/p.jsonl"
  wdl-data cat "$T/p.jsonl.zst" | cmp - "$T/p.jsonl"
  [ "$(ls -A "$T" | grep -c '\.tmp\.')" -eq 0 ]
}

@test "cat: pipes, several files, stdin as -" {
  wdl-data gen --task arith --n 5 --seed 1 --split train > "$T/a.jsonl"
  wdl-data gen --task arith --n 5 --seed 2 --split train | zstd -q > "$T/b.jsonl.zst"
  run bash -c "cat '$T/a.jsonl' | wdl-data cat - '$T/b.jsonl.zst' | wc -l"
  [ "$output" -eq 10 ]
  run bash -c "wdl-data cat < '$T/a.jsonl' | cmp - '$T/a.jsonl'"
  [ "$status" -eq 0 ]
}

@test "cat passes unknown fields through unchanged" {
  line='{"idx":3,"zz":{"b":[1,2.5,"x\n\"é"],"a":null},"w":1.0,"neg":-7,"r":0.1,"t":true}'
  printf '%s\n' "$line" > "$T/u.jsonl"
  run wdl-data cat "$T/u.jsonl"
  [ "$status" -eq 0 ]
  [ "$output" = "$line" ]
}

@test "archive members: tar, tar.gz, tar.zst, zip" {
  mkdir -p "$T/src/data"
  wdl-data gen --task equation --n 7 --seed 1 --split train > "$T/src/data/e.jsonl"
  (cd "$T/src" && tar -cf ../x.tar data && tar -czf ../x.tar.gz data && tar --zstd -cf ../x.tar.zst data)
  for a in x.tar x.tar.gz x.tar.zst; do
    run wdl-data cat "$T/$a:data/e.jsonl"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | wc -l)" -eq 7 ]
  done
  if command -v zip > /dev/null; then
    (cd "$T/src" && zip -q -r ../x.zip data)
    run wdl-data cat "$T/x.zip:data/e.jsonl"
    [ "$status" -eq 0 ]
  fi
  run wdl-data cat "$T/x.tar:data/missing.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: $T/x.tar:data/missing.jsonl: cannot open: no member"* ]]
}

@test "malformed input: file:line message, no partial output" {
  bad_file "$T/bad.jsonl"
  run wdl-data cat "$T/bad.jsonl" -o "$T/out.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: $T/bad.jsonl:3: "* ]]
  [ "$(echo "$output" | wc -l)" -eq 1 ]
  [ ! -e "$T/out.jsonl" ]
  [ "$(ls -A "$T" | grep -c '\.tmp\.')" -eq 0 ]
  zstd -q -c "$T/bad.jsonl" > "$T/bad.jsonl.zst"
  run wdl-data cat "$T/bad.jsonl.zst" -o "$T/out.jsonl.zst"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: $T/bad.jsonl.zst:3: "* ]]
  [ ! -e "$T/out.jsonl.zst" ]
  run bash -c "cat '$T/bad.jsonl' | wdl-data cat"
  [[ "$output" == *"wdl-data: <stdin>:3: "* ]]
}

@test "non-object lines, truncated zstd, missing files are reported" {
  printf '{"a":1}\n[1,2]\n' > "$T/arr.jsonl"
  run wdl-data cat "$T/arr.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$T/arr.jsonl:2: expected a JSON object"* ]]
  printf '{"a":1}\n42\n' > "$T/num.jsonl"
  run wdl-data cat "$T/num.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$T/num.jsonl:2: "* ]]
  wdl-data gen --task arith --n 200 --seed 1 --split train -o "$T/g.jsonl.zst"
  head -c 300 "$T/g.jsonl.zst" > "$T/cut.jsonl.zst"
  run wdl-data cat "$T/cut.jsonl.zst" -o "$T/o.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$T/cut.jsonl.zst"* ]]
  [ ! -e "$T/o.jsonl" ]
  run wdl-data cat "$T/nothere.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: $T/nothere.jsonl: cannot open: "* ]]
}

@test "a line of 2 MB reads and writes back" {
  head -c 2000000 /dev/zero | tr '\0' 'a' > "$T/long"
  printf '{"idx":1,"text":"%s"}\n' "$(cat "$T/long")" > "$T/big.jsonl"
  wdl-data cat "$T/big.jsonl" -o "$T/big2.jsonl.zst"
  zstd -dc "$T/big2.jsonl.zst" | cmp - "$T/big.jsonl"
}

@test "import: synthetic mawps, svamp, gsm8k, aqua, aime, chat" {
  cat > "$T/m.json" <<'EOF'
[{"id": 7, "original_text": "Tom had 9 apples . He ate 4 . How many are left ?", "equation": "X=(9.0-4.0)", "ans": 5.0},
 {"id": 8, "original_text": "A bad one .", "equation": "X=1=2", "ans": "3"}]
EOF
  run wdl-data import --format mawps "$T/m.json"
  [ "$status" -eq 0 ]
  [[ "$output" == *'{"idx":7,"task":"mawps","prompt":"Tom had 9 apples. He ate 4. How many are left?","completion":"x=9-4","answer":"5"'* ]]
  [[ "$output" == *"1 of 2 mawps record(s) have no completion"* ]]
  echo '{"ID":"chal-12","Body":"Sam has 3 pens.","Question":"He buys 2 more. How many now?","Equation":"( 3.0 + 2.0 )","Answer":5.0}' > "$T/s.jsonl"
  run import_quiet --format svamp "$T/s.jsonl"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -c '[.idx,.prompt,.completion,.answer,.source_id]')" = '[12,"Sam has 3 pens. He buys 2 more. How many now?","x=3+2","5","chal-12"]' ]
  echo '[{"instruction":"Q?","input":"","output":"\nA: 2 + 2 = 4. The answer is 4.","answer":"4.0"}]' > "$T/g.json"
  run import_quiet --format gsm8k "$T/g.json"
  [ "$(echo "$output" | jq -c '[.idx,.task,.completion,.answer]')" = '[0,"gsm8k","2 + 2 = 4. The answer is 4.","4"]' ]
  echo '{"question":"Q?","answer":"He had 3 and 2, so 5."}' > "$T/gb.jsonl"   # a solution without "#### N"
  run wdl-data import --format gsm8k "$T/gb.jsonl"
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-data: $T/gb.jsonl:1: gsm8k record has an answer that is not a number (and no \"#### N\" after a solution)" ]
  echo '[{"instruction":"Pick. Answer Choices: (A) 1 (B) 2 (C) 3 (D) 4 (E) 5","input":"","output":"x","answer":"B"}]' > "$T/q.json"
  run import_quiet --format aqua "$T/q.json"
  [ "$(echo "$output" | jq -c '[.answer,.choices.B,.choices.E]')" = '["B","2","5"]' ]
  # an answer no choice carries, or options that are not a list, could never be checked
  for bad in '{"instruction":"Pick. Answer Choices: (A) 1 (B) 2","answer":"C"}/not the letter of one of its choices' \
             '{"question":"Pick.","options":"A)1 B)2","correct":"A"}/"options" that are not an array'; do
    echo "[${bad%/*}]" > "$T/qb.json"
    run wdl-data import --format aqua "$T/qb.json" -o "$T/qb.jsonl"
    [ "$status" -eq 1 ] && [ "${#lines[@]}" -eq 1 ] && [[ "$output" == *"qb.json:item 0: aqua record "*"${bad#*/}"* ]] ||
      { echo "$bad: $status $output"; false; }
    [ ! -e "$T/qb.jsonl" ]
  done
  echo '[{"question":"Find x.","answer":"70"},{"question":"Find y.","answer":"336^\\circ"}]' > "$T/a.json"
  run wdl-data import --format aime --task aime25 "$T/a.json"
  [ "$(echo "$output" | jq -c '[.idx,.task,.answer]' | tr -d '\n')" = '[0,"aime25","70"][1,"aime25","336"]' ]
  printf '%s\n' '{"messages":[{"role":"user","content":"1+1?"},{"role":"assistant","content":"<think>easy</think> <answer>\\boxed{2}</answer>"}],"extra":1}' | zstd -q > "$T/c.jsonl.zst"
  run wdl-data import --format chat "$T/c.jsonl.zst"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -c '[.idx,.task,.answer,.extra,(.messages|length)]')" = '[0,"chat","2",1,2]' ]
}

@test "import: errors name the file and record, duplicates rejected" {
  echo '[{"id": 1, "original_text": "a", "ans": 1}, {"id": 1, "original_text": "b", "ans": 2}]' > "$T/d.json"
  run wdl-data import --format mawps "$T/d.json" -o "$T/o.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$T/d.json:item 1: duplicate idx 1"* ]]
  [ ! -e "$T/o.jsonl" ]
  printf '{"question":"ok","answer":"1"}\n{"question":"no answer"}\n' > "$T/e.jsonl"
  run wdl-data import --format amc "$T/e.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$T/e.jsonl:2: amc record needs"* ]]
  echo '[{"question": ' > "$T/broken.json"
  run wdl-data import --format aime "$T/broken.json"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-data: $T/broken.json:"* ]]
  run wdl-data import --format nope "$T/e.jsonl"
  [ "$status" -ne 0 ]
}

@test "import: archive member input" {
  mkdir -p "$T/src/b"
  echo '[{"question":"Q1","answer":"5"},{"question":"Q2","answer":"6"}]' > "$T/src/b/test.json"
  (cd "$T/src" && tar -czf ../b.tar.gz b)
  run wdl-data import --format amc "$T/b.tar.gz:b/test.json"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | wc -l)" -eq 2 ]
}

@test "import: the real benchmarks in ../shared (skipped when absent)" {
  B="$SHARED/data/benchmarks"
  [ -d "$B" ] || skip "no $B"
  run wdl-data import --format mawps "$B/mawps/trainset.json" "$B/mawps/validset.json" -o "$T/m.jsonl"
  [ "$status" -eq 0 ]
  [ "$(wc -l < "$T/m.jsonl")" -eq 2135 ]
  [ "$(jq -r .idx "$T/m.jsonl" | sort -u | wc -l)" -eq 2135 ]
  for f in gsm8k:gsm8k/test.json:1319 aqua:AQuA/test.json:254 aime:aime2025/test.json:30 amc:amc23/test.json:40; do
    IFS=: read fmt path n <<< "$f"
    wdl-data import --format "$fmt" "$B/$path" -o "$T/$fmt.jsonl"
    [ "$(wc -l < "$T/$fmt.jsonl")" -eq "$n" ]
    jq -e '.prompt and .answer' "$T/$fmt.jsonl" > /dev/null
  done
  # the reference equations check as correct
  jq -c 'select(.completion) | .prediction = .completion' "$T/m.jsonl" | wdl-eval --score-only | jq -e '.accuracy == 1'
}

@test "wdl-eval --score-only: summary, --preds, per task" {
  wdl-data gen --task mix --n 30 --seed 4 --split test | jq -c '.prediction = .completion' > "$T/right.jsonl"
  run wdl-eval --score-only "$T/right.jsonl"
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.accuracy == 1 and .n == 30 and .correct == 30 and .tasks.arith.n == 10 and .tasks.prog.accuracy == 1'
  [[ "$output" == '{"accuracy":1.0,"n":30,'* ]]
  wdl-data gen --task mix --n 30 --seed 4 --split test | jq -c '.prediction = "\\boxed{-1}"' > "$T/wrong.jsonl"
  run wdl-eval --score-only "$T/wrong.jsonl" --preds "$T/p.jsonl.zst"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq .correct)" -eq 0 ]
  [ "$(zstd -dc "$T/p.jsonl.zst" | jq -c 'select(.task != "prog") | [.correct,.extracted]' | sort -u)" = '[false,"-1"]' ]
  # half right: accuracy 0.5
  (head -15 "$T/right.jsonl"; tail -15 "$T/wrong.jsonl") | wdl-eval --score-only - > "$T/s.json"
  [ "$(jq .accuracy "$T/s.json")" = "0.5" ]
}

@test "wdl-eval: missing prediction is file:line; bad mode combinations" {
  printf '{"task":"arith","answer":"1","prediction":"1"}\n{"task":"arith","answer":"1"}\n' > "$T/e.jsonl"
  run wdl-eval --score-only "$T/e.jsonl" --preds "$T/p.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-eval: $T/e.jsonl:2: "* ]]
  [ ! -e "$T/p.jsonl" ]
  run wdl-eval -m "$T" --score-only "$T/e.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"exclude each other"* ]]
  # a record that could only count as wrong is an error, not a wrong answer
  for bad in '{"task":"arith","prediction":"1"}/has no "answer" to check against' \
             '{"task":"arith","answer":"","prediction":"1"}/has no "answer" to check against' \
             '{"task":"arith","answer":[1],"prediction":"1"}/has no "answer" to check against' \
             '{"task":5,"answer":"1","prediction":"1"}/its "task" is not a string' \
             '{"task":"prog","prediction":"a+b"}/has no "tests" list' \
             '{"task":"prog","tests":[{"in":{"a":1}}],"prediction":"a"}/has a test without "in" and "out"'; do
    printf '{"task":"arith","answer":"1","prediction":"1"}\n%s\n' "${bad%/*}" > "$T/e2.jsonl"
    run wdl-eval --score-only "$T/e2.jsonl" -o "$T/s2.json"
    [ "$status" -eq 1 ] && [[ "$output" == "wdl-eval: $T/e2.jsonl:2: record ${bad#*/}"* ]] || { echo "$bad: $output"; false; }
    [ ! -e "$T/s2.json" ]
  done
  run wdl-eval
  [ "$status" -eq 2 ]
}

@test "pipeline: gen | cat | eval with zstd in the middle" {
  run bash -c "wdl-data gen --task equation --n 25 --seed 9 --split dev | wdl-data cat -o '$T/x.jsonl.zst' && wdl-data cat '$T/x.jsonl.zst' | jq -c '.prediction=.completion' | wdl-eval --score-only | jq .n"
  [ "$status" -eq 0 ]
  [ "$output" -eq 25 ]
}

@test "wdl-data take: a range of records over all inputs" {
  wdl-data gen --task arith --n 10 --seed 1 --split train -o "$T/a.jsonl"
  wdl-data take --from 2 --to 5 "$T/a.jsonl" > "$T/t.jsonl"
  [ "$(sed -n 3,5p "$T/a.jsonl")" = "$(cat "$T/t.jsonl")" ]
  wdl-data take --from 8 "$T/a.jsonl" "$T/a.jsonl" -o "$T/t.jsonl.zst"
  [ "$(zstd -dc "$T/t.jsonl.zst" | wc -l)" -eq 12 ]
  [ "$(wdl-data take --to 3 < "$T/a.jsonl")" = "$(head -n 3 "$T/a.jsonl")" ]
  [ -z "$(wdl-data take --from 20 "$T/a.jsonl")" ]
  run wdl-data take --from 5 --to 2 "$T/a.jsonl"
  [ "$status" -eq 2 ]
  [[ "$output" == *"before --from"* ]]
}

@test "wdl-data split: head and rest, both or neither" {
  wdl-data gen --task arith --n 10 --seed 1 --split train -o "$T/a.jsonl.zst"
  wdl-data split --head 7 -o "$T/h.jsonl" --rest "$T/r.jsonl.zst" "$T/a.jsonl.zst"
  [ "$(cat "$T/h.jsonl")" = "$(zstd -dc "$T/a.jsonl.zst" | head -n 7)" ]
  [ "$(zstd -dc "$T/r.jsonl.zst")" = "$(zstd -dc "$T/a.jsonl.zst" | tail -n 3)" ]
  { zstd -dc "$T/a.jsonl.zst"; echo '{"broken":'; } > "$T/bad.jsonl"
  run wdl-data split --head 3 -o "$T/h2.jsonl" --rest "$T/r2.jsonl" "$T/bad.jsonl"
  [ "$status" -eq 1 ]
  [[ "$output" == "wdl-data: $T/bad.jsonl:11: "* ]]
  [ ! -e "$T/h2.jsonl" ]
  [ ! -e "$T/r2.jsonl" ]
  [ -z "$(ls -A "$T" | grep tmp || true)" ]
  run wdl-data split -o "$T/h2.jsonl" --rest "$T/r2.jsonl" "$T/bad.jsonl"
  [ "$status" -eq 2 ]
}

@test "wdl-eval -o writes the summary atomically; stdout stays empty" {
  wdl-data gen --task arith --n 5 --seed 1 --split dev | jq -c '.prediction=.completion' > "$T/p.jsonl"
  run wdl-eval --score-only -o "$T/s.json" "$T/p.jsonl"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  jq -e '.n == 5 and .correct == 5' "$T/s.json"
  [ "$(wdl-eval --score-only "$T/p.jsonl")" = "$(cat "$T/s.json")" ]
}

@test "import: SVAMP and MAWPS in each known layout give the same record, and say which was read" {
  want='[12,"Sam has 3 pens. He buys 2 more. How many now?","x=3+2","5"]'
  echo '{"ID":"chal-12","Body":"Sam has 3 pens.","Question":"He buys 2 more. How many now?","Equation":"( 3.0 + 2.0 )","Answer":5.0,"Type":"Addition"}' > "$T/s1.jsonl"
  echo '[{"ID":"chal-12","Body":"Sam has 3 pens.","Question":"He buys 2 more. How many now?","Equation":"( 3.0 + 2.0 )","Answer":5.0,"Type":"Addition","question_concat":"Sam has 3 pens. He buys 2 more. How many now?"}]' > "$T/s2.json"
  echo '{"id":"chal-12","body":"Sam has 3 pens.","question":"He buys 2 more. How many now?","equation":"( 3.0 + 2.0 )","answer":"5"}' > "$T/s3.jsonl"
  echo '{"ID":"chal-12","Question":"Sam has 3 pens. He buys 2 more. How many now?","Equation":"( 3.0 + 2.0 )","Answer":5}' > "$T/s4.jsonl"
  echo '[{"iIndex":12,"sQuestion":"Sam has 3 pens. He buys 2 more. How many now?","lEquations":["X=(3.0+2.0)"],"lSolutions":[5.0]}]' > "$T/s5.json"
  for f in s1.jsonl s2.json s3.jsonl s4.jsonl s5.json; do
    wdl-data import --format svamp "$T/$f" > "$T/out" 2> "$T/err"
    [ "$(jq -c '[.idx,.prompt,.completion,.answer]' "$T/out")" = "$want" ] || { echo "$f: $(cat "$T/out")"; false; }
    [ "$(wc -l < "$T/err")" -eq 1 ]
  done
  wdl-data import --format svamp "$T/s1.jsonl" 2>&1 >/dev/null | grep -qx "wdl-data: read 1 svamp record(s) in the Body+Question/Answer layout"
  wdl-data import --format svamp "$T/s3.jsonl" 2>&1 >/dev/null | grep -q "Body+Question/Answer layout"
  wdl-data import --format svamp "$T/s4.jsonl" 2>&1 >/dev/null | grep -q "in the Question/Answer layout"
  wdl-data import --format svamp "$T/s5.json" 2>&1 >/dev/null | grep -q "in the sQuestion/lSolutions layout"
  [ -z "$(wdl-data import -q --format svamp "$T/s1.jsonl" 2>&1 >/dev/null)" ]   # -q: no note
  [ "$(jq -r .type "$T/out")" = null ]
  [ "$(wdl-data import --format svamp "$T/s1.jsonl" 2>/dev/null | jq -r .type)" = Addition ]
  # two files of different layouts in one run
  run wdl-data import --format svamp "$T/s1.jsonl" "$T/s5.json" -o "$T/both.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"duplicate idx 12"* ]]
  jq -c '.[0].iIndex = 13' "$T/s5.json" > "$T/s6.json"
  run wdl-data import --format svamp "$T/s1.jsonl" "$T/s6.json" -o "$T/both.jsonl"
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 2 ]
  # MAWPS in the repository layout
  echo '[{"iIndex":7,"sQuestion":"Tom had 9 apples . He ate 4 . How many are left ?","lEquations":["X=(9.0-4.0)"],"lSolutions":[5.0]}]' > "$T/m.json"
  run wdl-data import --format mawps "$T/m.json"
  [[ "$output" == *'{"idx":7,"task":"mawps","prompt":"Tom had 9 apples. He ate 4. How many are left?","completion":"x=9-4","answer":"5"'* ]]
  [[ "$output" == *"sQuestion/lEquations/lSolutions layout"* ]]
  echo '{"Body":"x"}' > "$T/bad.jsonl"
  run wdl-data import --format svamp "$T/bad.jsonl"
  [ "$status" -eq 1 ]
  [[ "$output" == "wdl-data: $T/bad.jsonl:1: svamp record needs"* ]]
}
