#!/usr/bin/env bats
# wdl-tok command line: pipes, files, .zst, specials, errors, bad tokenizer files.

setup() {
  D=$BATS_TEST_TMPDIR
  SHARED=${WDL_SHARED:-$BATS_TEST_DIRNAME/../../shared}
  Q=$SHARED/data/qwen3-tokenizer/tokenizer.json
  G=$SHARED/data/qwen3-tokenizer/golden_ids.jsonl
}

@test "tok: --help fits a screen and names both commands" {
  run wdl-tok --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"encode"* ]]
  [[ "$output" == *"decode"* ]]
  [ "$(wdl-tok --help | wc -l)" -le 24 ]
  run wdl-tok --version
  [ "$status" -eq 0 ]
  [[ "$output" == "wdl-tok "* ]]
}

@test "tok: usage errors" {
  run wdl-tok -t byte
  [ "$status" -ne 0 ]
  [[ "$output" == *"wdl-tok: no command given"* ]]
  run wdl-tok -t byte frobnicate
  [ "$status" -ne 0 ]
  [[ "$output" == *"wdl-tok: unknown command 'frobnicate'"* ]]
  run wdl-tok encode
  [ "$status" -ne 0 ]
  [[ "$output" == *"wdl-tok: no tokenizer given"* ]]
  run wdl-tok -t byte encode --bogus
  [ "$status" -ne 0 ]
  [ "$status" -eq 2 ]
  [[ "$output" == "wdl-tok: unknown option '--bogus' (see --help)" ]]
}

@test "tok: byte encode/decode through a pipe keeps other fields" {
  out=$(echo '{"idx":3,"text":"Hi <|im_end|>","x":[1,{"k":"v"}]}' | wdl-tok -t byte encode)
  [ "$out" = '{"idx":3,"text":"Hi <|im_end|>","x":[1,{"k":"v"}],"ids":[72,105,32,258]}' ]
  back=$(echo "$out" | jq -c 'del(.text)' | wdl-tok -t byte decode)
  [ "$back" = '{"idx":3,"x":[1,{"k":"v"}],"ids":[72,105,32,258],"text":"Hi <|im_end|>"}' ]
}

@test "tok: --no-special encodes markers as bytes" {
  out=$(echo '{"text":"<think>"}' | wdl-tok -t byte encode --no-special | jq -c .ids)
  [ "$out" = "[60,116,104,105,110,107,62]" ]
  out=$(echo '{"text":"<think>"}' | wdl-tok -t byte encode | jq -c .ids)
  [ "$out" = "[259]" ]
}

@test "tok: files, '-', .zst in and out, -o written whole" {
  printf '%s\n' '{"text":"a"}' '{"text":"bc"}' > "$D/a.jsonl"
  printf '%s\n' '{"text":"d"}' | zstd -q -o "$D/b.jsonl.zst"
  echo '{"text":"e"}' | wdl-tok -t byte encode "$D/a.jsonl" - "$D/b.jsonl.zst" -o "$D/o.jsonl.zst"
  [ "$(zstd -dc "$D/o.jsonl.zst" | jq -c .ids | tr '\n' ' ')" = "[97] [98,99] [101] [100] " ]
  wdl-tok -t byte decode "$D/o.jsonl.zst" > "$D/d.jsonl"
  [ "$(jq -r .text "$D/d.jsonl" | tr -d '\n')" = "abced" ]
  [ -z "$(ls -A "$D" | grep tmp)" ]
}

@test "tok: a record without text is an error with file:line, no partial output" {
  printf '%s\n' '{"text":"ok"}' '{"prompt":"no text here"}' > "$D/in.jsonl"
  run wdl-tok -t byte encode "$D/in.jsonl" -o "$D/out.jsonl"
  [ "$status" -ne 0 ]
  [ "$output" = "wdl-tok: $D/in.jsonl:2: record has no \"text\" string" ]
  [ ! -e "$D/out.jsonl" ]
  [ -z "$(ls -A "$D" | grep tmp)" ]
  run bash -c "echo '{\"text\":5}' | wdl-tok -t byte encode"
  [ "$status" -ne 0 ]
  [[ "$output" == *"<stdin>:1: record has no \"text\" string"* ]]
}

@test "tok: bad ids are errors with file:line" {
  printf '%s\n' '{"ids":[1,2]}' '{"ids":[1,"x"]}' > "$D/in.jsonl"
  run wdl-tok -t byte decode "$D/in.jsonl"
  [ "$status" -ne 0 ]
  [[ "$output" == *"wdl-tok: $D/in.jsonl:2: ids[1] is not a token id of this tokenizer (vocabulary size 272)"* ]]
  run bash -c "echo '{\"ids\":[261]}' | wdl-tok -t byte decode"   # reserved
  [ "$status" -ne 0 ]
  [[ "$output" == *"<stdin>:1: ids[0] is not a token id"* ]]
  run bash -c "echo '{\"ids\":[-1]}' | wdl-tok -t byte decode"
  [ "$status" -ne 0 ]
  run bash -c "echo '{\"text\":\"no ids\"}' | wdl-tok -t byte decode"
  [ "$status" -ne 0 ]
  [[ "$output" == *"<stdin>:1: record has no \"ids\" array"* ]]
}

@test "tok: bytes that are not UTF-8 decode to U+FFFD" {
  # one U+FFFD per maximal ill-formed subpart, as HF (from_utf8_lossy) and
  # Python's errors="replace" decode: 0xFF is one, the cut-off E2 82 one
  out=$(echo '{"ids":[104,255,105,226,130]}' | wdl-tok -t byte decode | jq -r .text)
  [ "$out" = "h"$'\xef\xbf\xbd'"i"$'\xef\xbf\xbd' ]
  want=$(printf 'h\xffi\xe2\x82' | python3 -c 'import sys; print(sys.stdin.buffer.read().decode("utf-8", "replace"))')
  [ "$out" = "$want" ]
}

@test "tok: a NUL byte decodes to U+FFFD, which encode reads back; a NUL in a record is refused" {
  echo '{"ids":[104,0,105]}' | wdl-tok -t byte decode > "$D/nul.jsonl"
  [ "$(jq -r .text "$D/nul.jsonl")" = "h"$'\xef\xbf\xbd'"i" ]
  [ "$(wdl-tok -t byte encode "$D/nul.jsonl" | jq -c .ids)" = "[104,239,191,189,105]" ]
  run bash -c "echo '{\"text\":\"h\\u0000i\"}' | wdl-tok -t byte encode"
  [ "$status" -eq 1 ]
  [ "$output" = 'wdl-tok: <stdin>:1: a string holds \u0000 (NUL), which records may not carry' ]
}

@test "tok: malformed or unsupported tokenizer files name the file and the problem" {
  printf '{"model": {"type": "BPE",\n "vocab": {"a": 0,}}}' > "$D/t1.json"
  run bash -c "echo '{\"text\":\"a\"}' | wdl-tok -t '$D/t1.json' encode"
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-tok: $D/t1.json:2: expected a string key" ]
  printf '{"model": ' > "$D/t2.json"
  run wdl-tok -t "$D/t2.json" encode /dev/null
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-tok: $D/t2.json:1: unexpected end of input" ]
  echo '{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "Unigram", "vocab": []}}' > "$D/t3.json"
  run wdl-tok -t "$D/t3.json" encode /dev/null
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-tok: $D/t3.json: model type \"Unigram\" is not supported (only BPE)" ]
  echo '{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}' > "$D/t4.json"
  run wdl-tok -t "$D/t4.json" encode /dev/null
  [ "$status" -eq 1 ]
  [ "$output" = "wdl-tok: $D/t4.json: model.merges[0]: \"b\" is not in the vocabulary" ]
  run wdl-tok -t "$D/missing.json" encode /dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == "wdl-tok: $D/missing.json: cannot open"* ]]
  mkdir "$D/empty"
  run wdl-tok -t "$D/empty" encode /dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *"$D/empty: no tokenizer.json and no config.json"* ]]
}

@test "tok: a model directory with the byte tokenizer" {
  mkdir "$D/m"
  echo '{"model_type": "qwen3", "wdl_tokenizer": "byte"}' > "$D/m/config.json"
  [ "$(echo '{"text":"A"}' | wdl-tok -t "$D/m" encode | jq -c .ids)" = "[65]" ]
  echo '{"model_type": "qwen3"}' > "$D/m/config.json"
  run wdl-tok -t "$D/m" encode /dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *"no \"wdl_tokenizer\": \"byte\""* ]]
}

@test "tok: qwen3 reproduces golden encodings and decodes them back" {
  [ -f "$Q" ] && [ -f "$G" ] || skip "shared Qwen3 tokenizer absent"
  head -n 50 "$G" | jq -c '{text, want: .ids}' > "$D/g.jsonl"
  wdl-tok -t "$Q" encode "$D/g.jsonl" > "$D/e.jsonl"
  [ "$(jq -s 'map(select(.ids != .want)) | length' "$D/e.jsonl")" = 0 ]
  [ "$(jq -s length "$D/e.jsonl")" = 50 ]
  jq -c '{ids, orig: .text}' "$D/e.jsonl" | wdl-tok -t "$Q" decode > "$D/d.jsonl"
  [ "$(jq -s 'map(select(.text != .orig)) | length' "$D/d.jsonl")" = 0 ]
}

@test "tok: qwen3 specials match in text, --no-special keeps them plain" {
  [ -f "$Q" ] || skip "shared Qwen3 tokenizer absent"
  [ "$(echo '{"text":"<|im_start|>user\nhi<|im_end|>"}' | wdl-tok -t "$Q" encode | jq -c .ids)" = "[151644,872,198,6023,151645]" ]
  out=$(echo '{"text":"<think>"}' | wdl-tok -t "$Q" encode --no-special | jq -c '.ids | map(select(. >= 151643)) | length')
  [ "$out" = 0 ]
  run bash -c "echo '{\"ids\":[151669]}' | wdl-tok -t '$Q' decode"
  [ "$status" -ne 0 ]
  [[ "$output" == *"ids[0] is not a token id of this tokenizer (vocabulary size 151669)"* ]]
}
