#!/usr/bin/env bash
# same_run.sh RUNDIR NAME=VALUE...: whether the settings that change a run's
# results are those RUNDIR was made with (its first step recorded them in
# RUNDIR/settings, one NAME=VALUE a line). Prints one line naming the ones
# that differ, old and new, and what to do; prints nothing when they agree,
# or when RUNDIR has no record (yet, or ever: its steps predate it). Make decides from timestamps alone, so
# without this an LR changed on the command line would find every target
# up to date and report the old run as the new one.
set -u
dir=$1
shift
rec=$dir/settings
[ -f "$rec" ] || exit 0
grep -q '^# not recorded' "$rec" && exit 0   # a run from before the record
declare -A old
while IFS= read -r line; do old[${line%%=*}]=${line#*=}; done < "$rec"
was="" now=""
# a setting the record lacks came after it was written (the wdl that made
# the directory had no such setting): not checked
for kv in "$@"; do
  n=${kv%%=*} v=${kv#*=}
  if [ -n "${old[$n]+x}" ] && [ "${old[$n]}" != "$v" ]; then
    was+=" $n=${old[$n]}"
    now+=" $n=$v"
  fi
done
[ -z "$now" ] && exit 0
run=${dir#runs/}
echo "$dir was made with$was, not$now: give another RUN=, or remove it first (make pipeline-clean RUN=$run)"
