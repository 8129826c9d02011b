#!/usr/bin/env bats
# wdl-select command line: pipes, files, .zst, schemes, dedup, stats, errors.
bats_require_minimum_version 1.5.0  # run ! (a command that must fail)

setup() {
  D=$BATS_TEST_TMPDIR
  # 3 records with hand-computed weights (code scheme: .825 .15 .025)
  printf '%s\n' \
    '{"idx":0,"task":"t","h_weak":1,"h_strong":0.5}' \
    '{"idx":1,"task":"t","h_weak":2,"h_strong":2.5}' \
    '{"idx":2,"task":"t","h_weak":1,"h_strong":1}' > "$D/three.jsonl"
  # 200 records with varied scores, one unscored (string) and one missing
  for i in $(seq 0 199); do
    hw=$(( (i * 37) % 100 + 1 )); hs=$(( (i * 53) % 100 + 1 ))
    if [ "$i" = 50 ]; then echo "{\"idx\":$i,\"extra\":[1,{\"k\":\"v\"}],\"h_weak\":\"x\",\"h_strong\":1.0}"
    elif [ "$i" = 60 ]; then echo "{\"idx\":$i,\"h_weak\":0.5}"
    else echo "{\"idx\":$i,\"extra\":[1,{\"k\":\"v\"}],\"h_weak\":$hw.5e-2,\"h_strong\":$hs.25e-2}"; fi
  done > "$D/many.jsonl"
}

@test "select: --help names the defaults" {
  run wdl-select --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"--scheme code   (default"* ]]
  [[ "$output" == *"--keep-dups     every draw is output (default with code)"* ]]
  [[ "$output" == *"--dedup         each drawn record once (default with paper)"* ]]
  [ "$(wdl-select --help | wc -l)" -le 24 ]
}

@test "select: hand-computed weights on the three-record case (both schemes)" {
  wdl-select --dedup --n 2000 --seed 1 -q < "$D/three.jsonl" > "$D/o.jsonl"
  [ "$(jq -s -c 'sort_by(.idx) | map(.weight * 1e9 | round)' "$D/o.jsonl")" = "[825000000,150000000,25000000]" ]
  wdl-select --scheme paper --n 2000 --seed 1 -q < "$D/three.jsonl" > "$D/p.jsonl"
  # .45/3.3, 2.05/3.3, .8/3.3
  [ "$(jq -s 'map(select(.idx==1))[0].weight * 3.3 * 1000 | round' "$D/p.jsonl")" = 2050 ]
  [ "$(jq -s 'map(select(.idx==0))[0].weight * 3.3 * 1000 | round' "$D/p.jsonl")" = 450 ]
  [ "$(wc -l < "$D/p.jsonl")" -eq 3 ]   # paper: dedup by default
}

@test "select: filter keeps every field, adds weight, bucket, draws; N = input size" {
  run bash -c "wdl-select --seed 5 < '$D/many.jsonl' > '$D/o.jsonl'"
  [ "$status" -eq 0 ]
  [ "$(wc -l < "$D/o.jsonl")" -eq 200 ]
  [ "$(jq -c 'select(.extra != [1,{"k":"v"}])' "$D/o.jsonl" | wc -l)" -eq 0 ]
  [ "$(jq -c 'select((.weight|type)!="number" or (.bucket|type)!="number" or (.draws|type)!="number")' "$D/o.jsonl" | wc -l)" -eq 0 ]
  # the input fields come first, ours last, in a fixed order
  head -n1 "$D/o.jsonl" | grep -q '"h_strong":[0-9.e-]*,"weight":[0-9.e-]*,"bucket":[0-2],"draws":[0-9]*}$'
  # unscored records are never drawn and are reported
  [ "$(jq 'select(.idx==50 or .idx==60)' "$D/o.jsonl" | wc -l)" -eq 0 ]
  [[ "$output" == *"2 of 200 records lack a numeric 'h_weak' or 'h_strong' (first at <stdin>:51)"* ]]
  # keep-dups: draws = how often the record appears
  [ "$(jq -s 'group_by(.idx) | map(select(length != .[0].draws)) | length' "$D/o.jsonl")" = 0 ]
  # weights of the distinct drawn records are each the same normalised p
  [ "$(jq -s 'group_by(.idx) | map(select((map(.weight)|unique|length) != 1)) | length' "$D/o.jsonl")" = 0 ]
}

@test "select: weights sum to 1 over the scored input (--n large, dedup sees all)" {
  wdl-select --dedup --n 2000000 --seed 2 -q < "$D/many.jsonl" > "$D/o.jsonl"
  [ "$(wc -l < "$D/o.jsonl")" -eq 198 ]
  [ "$(jq -s 'map(.weight) | add | . * 1e9 | round' "$D/o.jsonl")" = 1000000000 ]
  [ "$(jq -s 'map(.draws) | add' "$D/o.jsonl")" = 2000000 ]
}

@test "select: same seed same bytes, other seed other bytes" {
  wdl-select --seed 9 -q < "$D/many.jsonl" > "$D/a"
  wdl-select --seed 9 -q "$D/many.jsonl" > "$D/b"
  wdl-select --seed 10 -q < "$D/many.jsonl" > "$D/c"
  cmp "$D/a" "$D/b"
  run ! cmp -s "$D/a" "$D/c"
}

@test "select: dedup keeps each record once, in first-draw order" {
  wdl-select --seed 4 -q < "$D/many.jsonl" > "$D/all"
  wdl-select --seed 4 --dedup -q < "$D/many.jsonl" > "$D/dd"
  [ "$(jq -s 'map(.idx) | length == (unique | length)' "$D/dd")" = true ]
  diff <(jq -r .idx "$D/all" | awk '!s[$0]++') <(jq -r .idx "$D/dd")
  [ "$(jq -s 'map(.draws) | add' "$D/dd")" = 200 ]
}

@test "select: --n, --order input and --order bucket" {
  wdl-select --n 50 --seed 1 -q < "$D/many.jsonl" > "$D/o"
  [ "$(wc -l < "$D/o")" -eq 50 ]
  wdl-select --seed 1 --order input -q < "$D/many.jsonl" | jq -r .idx > "$D/i"
  sort -n -c "$D/i"
  wdl-select --seed 1 --order bucket -q < "$D/many.jsonl" | jq -r .bucket > "$D/b"
  sort -n -c "$D/b"
  # same multiset of records whatever the order
  diff <(wdl-select --seed 1 -q < "$D/many.jsonl" | sort) <(wdl-select --seed 1 --order bucket -q < "$D/many.jsonl" | sort)
}

@test "select: buckets are H_strong quantiles over the scored input" {
  for i in 0 1 2 3 4 5 6 7 8; do echo "{\"idx\":$i,\"h_weak\":1,\"h_strong\":0.$((9 - i))}"; done > "$D/q.jsonl"
  wdl-select --dedup --n 100000 --buckets 3 -q < "$D/q.jsonl" > "$D/o"
  # h_strong 0.1 0.2 0.3 -> 0, 0.4 0.5 0.6 -> 1, 0.7 0.8 0.9 -> 2
  [ "$(jq -s -c 'sort_by(.h_strong) | map(.bucket)' "$D/o")" = "[0,0,0,1,1,1,2,2,2]" ]
}

@test "select: .zst in and out, several files, -o" {
  head -n 100 "$D/many.jsonl" > "$D/a.jsonl"
  tail -n 100 "$D/many.jsonl" | zstd -q -o "$D/b.jsonl.zst"
  wdl-select --seed 3 -q -o "$D/out.jsonl.zst" "$D/a.jsonl" "$D/b.jsonl.zst"
  wdl-select --seed 3 -q < "$D/many.jsonl" > "$D/plain"
  zstd -t -q "$D/out.jsonl.zst"
  diff <(zstd -dc "$D/out.jsonl.zst") "$D/plain"
  cat "$D/many.jsonl" | wdl-select --seed 3 -q - > "$D/dash"
  cmp "$D/dash" "$D/plain"
}

@test "select: --stats writes the summary as one JSON object" {
  wdl-select --seed 1 --dedup --stats "$D/st.json" -q < "$D/many.jsonl" > "$D/o"
  run jq -r '[.scheme, .dedup, .n_in, .n_scored, .n_unscored, .n_draws, .n_out, (.bucket_counts_out|add), (.bucket_counts_in|add)] | @tsv' "$D/st.json"
  [ "$output" = "$(printf 'code\ttrue\t200\t198\t2\t200\t%s\t%s\t198' "$(wc -l < "$D/o")" "$(wc -l < "$D/o")")" ]
  [ "$(jq '.term_mass.alpha * 1000 | round' "$D/st.json")" = 100 ]
  [ "$(jq '.term_mass.beta * 1000 | round' "$D/st.json")" = 800 ]
  [ "$(jq '(.unique_fraction * .n_draws | round) == .n_unique and .n_unique == .n_out' "$D/st.json")" = true ]
  [ "$(jq -r '.terms.alpha' "$D/st.json")" = "H_weak/Z1" ]
  # mean dH over the scored input
  want=$(jq -s 'map(select((.h_weak|type)=="number" and (.h_strong|type)=="number")) | (map(.h_strong - .h_weak) | add / length) * 1e6 | round' "$D/many.jsonl")
  [ "$(jq '.mean_dh * 1e6 | round' "$D/st.json")" = "$want" ]
}

@test "select: custom field names" {
  sed 's/h_weak/hw/; s/h_strong/hs/' "$D/three.jsonl" > "$D/r.jsonl"
  wdl-select --weak-field hw --strong-field hs --dedup --n 2000 --seed 1 -q < "$D/r.jsonl" > "$D/o"
  [ "$(jq -s -c 'sort_by(.idx) | map(.weight * 1e9 | round)' "$D/o")" = "[825000000,150000000,25000000]" ]
  run wdl-select -q < "$D/r.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-select: nothing to select: no record has numeric 'h_weak' and 'h_strong' (first at <stdin>:1)" ]]
}

@test "select: bad command lines fail with one line and leave no file" {
  for args in "--bogus" "--alpha x" "--alpha -0.1" "--alpha 0 --beta 0 --gamma 0" \
              "--scheme v3" "--buckets 0" "--n 0" "--n -5" "--seed 1.5" "--order random" "--stats -" "--alpha"; do
    run wdl-select $args -o "$D/out.jsonl" "$D/three.jsonl"
    [ "$status" -ne 0 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "${lines[0]}" == wdl-select:* ]]
    [ ! -e "$D/out.jsonl" ]
  done
}

@test "select: bad input fails with file:line and leaves no output or stats" {
  printf '{"idx":0,"h_weak":1,"h_strong":1}\n{"idx":1,"h_weak":\n' > "$D/bad.jsonl"
  run wdl-select --stats "$D/st.json" -o "$D/out.jsonl" "$D/bad.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == "wdl-select: $D/bad.jsonl:2:"* ]]
  [ ! -e "$D/out.jsonl" ]
  [ ! -e "$D/st.json" ]
  printf '{"idx":0}\n{"idx":1,"h_weak":null,"h_strong":2}\n' > "$D/none.jsonl"
  run wdl-select -o "$D/out.jsonl" "$D/none.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"nothing to select"* ]]
  [ ! -e "$D/out.jsonl" ]
  : > "$D/empty.jsonl"
  run wdl-select -o "$D/out.jsonl" "$D/empty.jsonl"
  [ "$status" -ne 0 ]
  [ "$output" = "wdl-select: nothing to select: no input records" ]
  # every weight zero (paper scheme, zero entropies)
  printf '{"idx":0,"h_weak":0,"h_strong":0}\n' > "$D/zero.jsonl"
  run wdl-select --scheme paper -o "$D/out.jsonl" "$D/zero.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"every sampling weight is zero"* ]]
  [ ! -e "$D/out.jsonl" ]
  # values whose sums overflow are not entropies (the stats lost their means)
  printf '{"idx":0,"h_weak":1e308,"h_strong":1}\n{"idx":1,"h_weak":1e308,"h_strong":1}\n' > "$D/huge.jsonl"
  run wdl-select --stats "$D/st.json" -o "$D/out.jsonl" "$D/huge.jsonl"
  [ "$status" -eq 1 ]
  [[ "$output" == "wdl-select: the entropies are too large to sum"* ]]
  [ ! -e "$D/out.jsonl" ]
  [ ! -e "$D/st.json" ]
}

@test "select: a zero-weight record is never drawn" {
  # paper scheme: record 1 has H_strong 0 and dH 0 -> weight 0
  printf '%s\n' '{"idx":0,"h_weak":1,"h_strong":1}' '{"idx":1,"h_weak":0,"h_strong":0}' > "$D/z.jsonl"
  wdl-select --scheme paper --keep-dups --n 5000 -q < "$D/z.jsonl" > "$D/o"
  [ "$(jq 'select(.idx==1)' "$D/o" | wc -l)" -eq 0 ]
  [ "$(wc -l < "$D/o")" -eq 5000 ]
}
