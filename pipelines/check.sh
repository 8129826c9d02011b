#!/usr/bin/env bash
# check.sh NAME=VALUE...: the pipeline's settings, checked before any step
# runs (wmss.mk calls it when a pipeline target is asked for). Prints the
# first bad one as one line naming it and what it must be; prints nothing
# when all are fine. A bad value found only by a program half-way through
# would leave the steps before it done for nothing (at full scale, M1).
set -u
declare -A v
for kv in "$@"; do v[${kv%%=*}]=${kv#*=}; done
bad() { echo "$1"; exit 0; }
whole() { [[ $2 =~ ^[0-9]+$ ]] && (( 10#$2 >= $3 )) || bad "$1=$2: must be a whole number >= $3"; }
real() {   # $1 name, $2 value, $3 awk condition on x, $4 what it says
  [[ $2 =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] && awk -v x="$2" "BEGIN { exit !($3) }" ||
    bad "$1=$2: must be $4"
}
for n in THREADS RANKS N_TRAIN N_POOL N_TEST BATCH PRE_EPOCHS SFT_EPOCHS SEQ MAX_NEW N_LOGITS; do
  [ -n "${v[$n]+x}" ] && whole "$n" "${v[$n]}" 1
done
for n in SEED TEST_SEED; do [ -n "${v[$n]+x}" ] && whole "$n" "${v[$n]}" 0; done
for s in ${v[SEEDS]-}; do whole "SEEDS (a seed)" "$s" 0; done
dup=$(tr ' ' '\n' <<<"${v[SEEDS]-}" | grep . | sort | uniq -d | head -n 1)
[ -z "$dup" ] || bad "SEEDS=${v[SEEDS]}: seed $dup given twice (one run would count as two seeds)"
for n in LR LR_PRE LR_ARM; do [ -n "${v[$n]+x}" ] && real "$n" "${v[$n]}" "x > 0" "a number above 0"; done
[ -n "${v[NEFTUNE_ALPHA]+x}" ] && real NEFTUNE_ALPHA "${v[NEFTUNE_ALPHA]}" "x > 0" "a number above 0"
[ -n "${v[LAMBDA]+x}" ] && real LAMBDA "${v[LAMBDA]}" "x > 0 && x <= 1" "a number in (0, 1]"
for l in ${v[LAMBDAS]-}; do real "LAMBDAS (a lambda)" "$l" "x > 0 && x <= 1" "a number in (0, 1]"; done
case ${v[PRECISION]-fp32} in fp32 | fp32-openblas | bf16) ;; *) bad "PRECISION=${v[PRECISION]}: must be fp32, fp32-openblas or bf16" ;; esac
(( 10#${v[BATCH]:-1} % 10#${v[RANKS]:-1} == 0 )) || bad "BATCH=${v[BATCH]}: must be a multiple of RANKS=${v[RANKS]} (each rank takes BATCH/RANKS)"
# generated data: the task names wdl-data gen knows, alone or as a list
task=${v[TASK]-}
if [ -z "${v[TRAIN]-}" ] && [ "$task" != mawps ] && [ "$task" != mix ] &&
  ! [[ ,$task, =~ ^(,(arith|equation|prog))+,$ && $(tr , '\n' <<<"$task" | sort | uniq -d) = "" ]]; then
  bad "TASK=$task: must be arith, equation, prog, a list of them (equation,prog), mix or mawps"
fi
if [ -n "${v[MODEL]-}" ] && [ ! -f "${v[MODEL]}/config.json" ]; then
  bad "MODEL=${v[MODEL]}: no config.json there (an HF Qwen3 model directory)"
fi
exit 0
