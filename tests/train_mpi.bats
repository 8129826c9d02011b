#!/usr/bin/env bats
# wdl-train under mpirun -np 2: how a failing rank ends the job. (The
# numerical equivalence to one process is tests/test_dist.c.)

load mpi

setup() {
  need_mpirun
  D=$BATS_TEST_TMPDIR
  wdl-data gen --task arith --n 48 --seed 3 --split train > "$D/train.jsonl"
  wdl-init --preset nano --seed 1 -o "$D/m0" 2>/dev/null
}

mpitrain() { mpi 2 wdl-train -m "$D/m0" --batch 4 --seq 128 --threads 1 -q "$@"; }

# exactly one line of ours, naming the rank and the cause (mpirun may add
# its own framed notice)
one_error_line() {
  local n
  n=$(grep -c '^wdl-train: ' <<<"$output")
  [ "$n" -eq 1 ] && grep '^wdl-train: ' <<<"$output" | grep -q "$1"
}

@test "a bad record read by rank 0 ends the job with one line and no output" {
  { head -3 "$D/train.jsonl"; echo '{"completion":"no prompt"}'; } > "$D/bad.jsonl"
  run mpitrain -o "$D/out" "$D/bad.jsonl"
  [ "$status" -ne 0 ]
  one_error_line 'rank 0: .*bad.jsonl:4: record has no prompt'
  [ ! -e "$D/out" ]
  [ -z "$(ls "$D"/out.* 2>/dev/null)" ]
}

@test "a diverging run names the first rank whose loss is not finite" {
  run mpitrain -o "$D/out" --lr 1e6 --clip 0 --steps 40 "$D/train.jsonl"
  [ "$status" -ne 0 ]
  one_error_line 'rank [01]: loss is .*nan.* at step [0-9]*: training diverged'
  [ ! -e "$D/out" ]
}

@test "a rank killed mid-run ends the job; mpirun names the rank and the signal" {
  # mpirun itself in the background (not a function's subshell): its
  # children are the ranks; without -q, so that it says what happened
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 wdl-train -m "$D/m0" --batch 4 --seq 128 --threads 1 -q \
    -o "$D/out" --steps 400 --log "$D/log" "$D/train.jsonl" 2>"$D/err" &
  pid=$!
  for i in $(seq 1 200); do [ -s "$D/log" ] && break; sleep 0.05; done
  # rank 1 among mpirun's children, known by the rank Open MPI gave it
  for p in $(pgrep -P "$pid"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && kill -9 "$p"
  done
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -ne 0 ]
  grep -q "rank 1 .*signal 9" "$D/err"
  [ ! -e "$D/out" ]
  [ -z "$(ls "$D"/out.tmp* 2>/dev/null)" ]
}

@test "usage errors under mpirun are said once" {
  run mpitrain -o "$D/out" --batch 0 "$D/train.jsonl"
  [ "$status" -ne 0 ]
  [ "$(grep -c 'must be >= 1' <<<"$output")" -eq 1 ]
}

@test "stdin reaches rank 0, which shares the data" {
  mpitrain -o "$D/a" --steps 4 --seed 2 < "$D/train.jsonl"
  mpitrain -o "$D/b" --steps 4 --seed 2 "$D/train.jsonl"
  cmp "$D/a/model.safetensors" "$D/b/model.safetensors"
}

@test "programs that do not run as ranks refuse mpirun -np 2 with one line" {
  for p in wdl-data wdl-select wdl-report wdl-tok wdl-init; do
    run mpi 2 "$p" --help
    [ "$status" -ne 0 ]
    [ "$(grep -c "^$p: does not run as several MPI ranks" <<<"$output")" -eq 1 ]
  done
}
