#!/usr/bin/env bash
# kill -9 chaos test: all-or-nothing durability of a Tycho home under SIGKILL.
#
#   tests/chaos/run.sh [BUILD_DIR]          (default: build)
#
# Environment: TRIALS (8 per scenario), SCENARIOS ("ingest registry serving dag"),
# SEED (bash RANDOM seed, printed), INGEST_MS / REGISTRY_MS / DAG_MS (kill
# windows, default: calibrated from one unkilled run; printed, so SEED and these
# replay the same kill delays), ROWS (50000), NICE (10), KEEP_FAILED=1 (keep the
# home and logs of an inconsistent trial under /tmp/tycho-chaos-failed-*).
# See tests/chaos/README.md. Exit 0 when every trial is consistent, 1 otherwise,
# 2 on a usage or setup error.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-build}
if [[ -x "$build/tycho" ]]; then TYCHO=$(cd "$build" && pwd)/tycho
elif [[ -x "$repo/$build/tycho" ]]; then TYCHO=$(cd "$repo/$build" && pwd)/tycho
else echo "chaos: no tycho binary in $build" >&2; exit 2; fi
cd "$repo"

TRIALS=${TRIALS:-8}
SCENARIOS=${SCENARIOS:-ingest registry serving dag}
ROWS=${ROWS:-50000}
NICE=${NICE:-10}
SEED=${SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
DAG_DATE=2026-01-05
FX=tests/chaos

WORK=$(mktemp -d /tmp/tycho-chaos-XXXXXX)
STARTED=()   # PID:STARTTIME of every process this script started (and the serve workers): killed at exit if still alive

cleanup() {
  local p
  # PID:STARTTIME, so a PID recycled by an unrelated process is left alone.
  for p in "${STARTED[@]}"; do
    if alive_rec "$p"; then kill -9 "${p%%:*}" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers -------------------------------------------------------------------------

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
rand_ms() { echo $(( (RANDOM * 32768 + RANDOM) % ($1 + 1) )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )))"; }

# poll TIMEOUT_MS CMD...: runs CMD until it succeeds (0) or the deadline passes (1).
poll() {
  local deadline=$(( $(now_ms) + $1 )); shift
  while true; do
    if "$@"; then return 0; fi
    if (( $(now_ms) >= deadline )); then return 1; fi
    sleep 0.02
  done
}

# "STATE STARTTIME" of a process, from /proc/PID/stat (fields 3 and 22).
proc_state() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  local a
  read -r -a a <<< "$s"
  echo "${a[0]} ${a[19]}"
}
starttime() { local st; st=$(proc_state "$1") || return 0; echo "${st#* }"; }
# alive PID [STARTTIME]: the process exists, is not a zombie, and (if given) is
# the one that started at STARTTIME (not a recycled PID).
alive() {
  local st
  st=$(proc_state "$1") || return 1
  local a
  read -r -a a <<< "$st"
  [[ ${a[0]} != Z && ${a[0]} != X ]] || return 1
  [[ -z ${2:-} || ${a[1]} == "$2" ]]
}
# alive_rec PID:STARTTIME: that very process lives (an empty STARTTIME means
# it was gone already when recorded).
alive_rec() { [[ -n ${1#*:} ]] && alive "${1%%:*}" "${1#*:}"; }
# none_alive "PID:STARTTIME ...": true when none of them lives.
none_alive() {
  local p
  for p in $1; do if alive_rec "$p"; then return 1; fi; done
  return 0
}
# Kills a process this shell started and reaps it; its exit status goes in
# REAPED (0: it had finished before the kill, 137: killed). Not in a $(...):
# only this shell can wait for its children.
REAPED=0
kill9_reap() {
  kill -9 "$1" 2>/dev/null || true
  REAPED=0
  wait "$1" 2>/dev/null || REAPED=$?
}
# Runs a check or setup command with a deadline (seconds).
T() { timeout -k 5 "$1" nice -n "$NICE" "$TYCHO" "${@:2}"; }
lines() { if [[ -f $1 ]]; then wc -l < "$1"; else echo 0; fi; }

declare -A N_TRIALS N_OK N_BAD NOTES
record() {  # record SCENARIO ok|bad TEXT
  N_TRIALS[$1]=$(( ${N_TRIALS[$1]:-0} + 1 ))
  if [[ $2 == ok ]]; then N_OK[$1]=$(( ${N_OK[$1]:-0} + 1 )); else N_BAD[$1]=$(( ${N_BAD[$1]:-0} + 1 )); fi
  printf '  %-8s #%-2d %s %s\n' "$1" "${N_TRIALS[$1]}" "$([[ $2 == ok ]] && echo "consistent:  " || echo "INCONSISTENT:")" "$3"
}
note() { NOTES[$1]="${NOTES[$1]:-} $2"; }
# On an inconsistency: show the evidence, keep it when KEEP_FAILED=1.
evidence() {  # evidence TRIAL_DIR FILE...
  local d=$1 f; shift
  for f in "$@"; do
    [[ -s $d/$f ]] && { echo "    --- $f (last 15 lines)"; tail -n 15 "$d/$f" | sed 's/^/    | /'; }
  done
  if [[ ${KEEP_FAILED:-0} == 1 ]]; then
    local keep; keep=$(mktemp -d /tmp/tycho-chaos-failed-XXXXXX)
    cp -a "$d/." "$keep/"
    echo "    kept in $keep"
  fi
}
track() { local p; for p in "$@"; do STARTED+=("$p:$(starttime "$p")"); done; }
new_trial() { mktemp -d "$WORK/$1.XXXXXX"; }   # a trial dir; its home is $dir/home

# ---- 1. ingest: a 50k-row fs:ingest is all or nothing ------------------------------------

scenario_ingest() {
  local csv=$WORK/rows.csv
  awk -v n="$ROWS" 'BEGIN { print "id,event_time,x"; for (i = 1; i <= n; i++) printf "k%06d,%d,%s\n", i, 1700000000 + i, i * 0.5 }' > "$csv"
  local d t0 ms window=${INGEST_MS:-}
  if [[ -z $window ]]; then
    d=$(new_trial ingest-cal)
    t0=$(now_ms)
    T 120 --home "$d/home" run $FX/ingest.lua ingest "$csv" > "$d/out" 2> "$d/err" || { echo "chaos: calibration ingest failed"; cat "$d/err"; exit 2; }
    ms=$(( $(now_ms) - t0 ))
    rm -rf "$d"
    window=$(( ms * 13 / 10 ))   # a share of the kills land after the commit
    echo "ingest: $ROWS rows, one unkilled run takes $ms ms; kills at 0-$window ms (INGEST_MS=$window)"
  else
    echo "ingest: $ROWS rows; kills at 0-$window ms (INGEST_MS=$window)"
  fi
  local i none=0 all=0
  for (( i = 1; i <= TRIALS; i++ )); do
    d=$(new_trial ingest)
    local delay; delay=$(rand_ms "$window")
    nice -n "$NICE" "$TYCHO" --home "$d/home" run $FX/ingest.lua ingest "$csv" > "$d/killed.out" 2> "$d/killed.err" &
    local pid=$!; track "$pid"
    sleep_ms "$delay"
    kill9_reap "$pid"
    local when; when=$([[ $REAPED == 0 ]] && echo "after it finished" || echo "mid-run")
    local crc=0
    T 120 --home "$d/home" run $FX/ingest.lua check "$csv" "$ROWS" > "$d/check.out" 2> "$d/check.err" || crc=$?
    local what; what=$(grep -m1 '^after kill' "$d/check.out" || echo "home did not open (exit $crc)")
    if [[ $crc == 0 ]]; then
      if grep -q 'consistent (none)' "$d/check.out"; then none=$(( none + 1 )); else all=$(( all + 1 )); fi
      record ingest ok "kill -9 at $delay ms ($when): $what; re-ingest complete"
    else
      record ingest bad "kill -9 at $delay ms ($when): $(grep -m1 INCONSISTENT "$d/check.out" || echo "check failed, exit $crc")"
      evidence "$d" check.out check.err killed.out killed.err
    fi
    rm -rf "$d"
  done
  note ingest "none visible $none, all visible $all"
}

# ---- 2. registry: versions and aliases are never half-written ----------------------------

scenario_registry() {
  local k=100 d t0 ms=${REGISTRY_MS:-}
  if [[ -z $ms ]]; then
    d=$(new_trial registry-cal)
    t0=$(now_ms)
    T 120 --home "$d/home" run $FX/registry.lua loop $k > "$d/out" 2> "$d/err" || { echo "chaos: calibration registry loop failed"; cat "$d/err"; exit 2; }
    ms=$(( $(now_ms) - t0 ))
    rm -rf "$d"
    echo "registry: $k register+promote rounds, one unkilled run takes $ms ms; kills at 0-$ms ms (REGISTRY_MS=$ms)"
  else
    echo "registry: $k register+promote rounds; kills at 0-$ms ms (REGISTRY_MS=$ms)"
  fi
  local i total_acked=0
  for (( i = 1; i <= TRIALS; i++ )); do
    d=$(new_trial registry)
    local delay; delay=$(rand_ms "$ms")
    nice -n "$NICE" "$TYCHO" --home "$d/home" run $FX/registry.lua loop $k > "$d/acks" 2> "$d/killed.err" &
    local pid=$!; track "$pid"
    sleep_ms "$delay"
    kill9_reap "$pid"
    local crc=0
    T 120 --home "$d/home" run $FX/registry.lua check "$d/acks" > "$d/check.out" 2> "$d/check.err" || crc=$?
    local acked; acked=$(grep -c '^registered' "$d/acks" || true)
    total_acked=$(( total_acked + acked ))
    if [[ $crc == 0 ]]; then
      record registry ok "kill -9 at $delay ms: $(grep -m1 '^after kill' "$d/check.out"); next version registers"
    else
      record registry bad "kill -9 at $delay ms: $(grep -m1 INCONSISTENT "$d/check.out" || echo "check failed, exit $crc")"
      evidence "$d" check.out check.err acks killed.err
    fi
    rm -rf "$d"
  done
  note registry "$total_acked acknowledged registrations checked"
}

# ---- 3. serving: workers and master killed under predict + feedback traffic --------------

ready() { [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/v2/health/ready" 2>/dev/null) == 200 ]]; }
workers_of() { { ps -o pid= --ppid "$1" 2>/dev/null || true; } | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
# The server answers again and the master has restarted the killed worker.
recovered() {  # PORT MASTER VICTIM
  ready "$1" || return 1
  local w; w=$(workers_of "$2")
  local a
  read -r -a a <<< "$w"
  [[ ${#a[@]} -eq 2 && " $w " != *" $3 "* ]]
}
acks_reach() { (( $(lines "$1") >= $2 )); }

scenario_serving() {
  echo "serving: 2 workers; a worker killed in every trial, the master killed too in even trials"
  local i total_acked=0 lost_pending=0
  for (( i = 1; i <= TRIALS; i++ )); do
    local d; d=$(new_trial serving)
    local why="" detail=""
    if ! T 60 --home "$d/home" run $FX/serve_setup.lua > "$d/setup.out" 2> "$d/setup.err"; then
      record serving bad "setup failed"; evidence "$d" setup.err; rm -rf "$d"; continue
    fi
    nice -n "$NICE" "$TYCHO" --home "$d/home" serve $FX/serve_app.lua --host 127.0.0.1 --port 0 --workers 2 \
      > "$d/serve.out" 2> "$d/serve.err" &
    local master=$!; track "$master"
    local port=""
    if poll 15000 grep -qs 'serving .* on http://' "$d/serve.out"; then
      port=$(sed -n 's|.*on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$d/serve.out" | head -1)
    fi
    if [[ -z $port ]] || ! poll 15000 ready "$port"; then
      kill9_reap "$master"
      record serving bad "server did not start"; evidence "$d" serve.out serve.err; rm -rf "$d"; continue
    fi
    local w0; w0=$(workers_of "$master")
    # shellcheck disable=SC2086  # a list of PIDs
    track $w0
    nice -n "$NICE" "$TYCHO" --home "$d/home" run $FX/serve_client.lua "$port" "$d/acks" "$d/stop" \
      > "$d/client.out" 2> "$d/client.err" &
    local client=$!; track "$client"
    poll 15000 acks_reach "$d/acks" 10 || why="no feedback acknowledged before the kill"

    # Kill one worker at random; the server must answer again within 10 s.
    local a
    read -r -a a <<< "$w0"
    if (( ${#a[@]} == 0 )); then
      kill9_reap "$master"; : > "$d/stop"; kill9_reap "$client"
      record serving bad "no worker processes under master $master"; evidence "$d" serve.err; rm -rf "$d"; continue
    fi
    local victim=${a[$(( RANDOM % ${#a[@]} ))]}
    local d1; d1=$(rand_ms 800)
    sleep_ms "$d1"
    kill -9 "$victim" 2>/dev/null || true
    local t0; t0=$(now_ms)
    if [[ -z $why ]] && ! poll 10000 recovered "$port" "$master" "$victim"; then
      why="not serving with 2 workers 10 s after worker $victim was killed (workers: $(workers_of "$master"))"
    fi
    local rec_ms=$(( $(now_ms) - t0 ))
    local w1; w1=$(workers_of "$master")
    # shellcheck disable=SC2086  # a list of PIDs
    track $w1
    # Traffic goes on after the restart.
    local n0; n0=$(lines "$d/acks")
    if [[ -z $why ]] && ! poll 10000 acks_reach "$d/acks" $(( n0 + 20 )); then
      why="feedback stopped being acknowledged after the worker restart"
    fi
    detail="worker killed at +$d1 ms, serving again in $rec_ms ms"

    if (( i % 2 == 0 )); then
      # kill -9 the master: its workers must exit (PR_SET_PDEATHSIG) within 10 s.
      local pids="" p
      for p in $w1; do pids+="$p:$(starttime "$p") "; done
      local d2; d2=$(rand_ms 500)
      sleep_ms "$d2"
      kill9_reap "$master"
      t0=$(now_ms)
      if ! poll 10000 none_alive "$pids"; then
        why="${why:+$why; }workers left running 10 s after the master was killed:$(for p in $pids; do if alive_rec "$p"; then echo -n " ${p%%:*}"; fi; done)"
        for p in $pids; do if alive_rec "$p"; then kill -9 "${p%%:*}" 2>/dev/null || true; fi; done
      fi
      detail+=", master killed at +$d2 ms, workers gone in $(( $(now_ms) - t0 )) ms"
    else
      kill -TERM "$master" 2>/dev/null || true
      if poll 15000 eval '! alive '"$master"; then
        local mrc=0; wait "$master" 2>/dev/null || mrc=$?
        [[ $mrc == 0 ]] || why="${why:+$why; }master exited $mrc on SIGTERM after a worker restart"
      else
        kill9_reap "$master"
        why="${why:+$why; }master did not exit within 15 s of SIGTERM"
      fi
      detail+=", then SIGTERM"
    fi
    : > "$d/stop"
    if ! poll 10000 eval '! alive '"$client"; then kill -9 "$client" 2>/dev/null || true; fi
    wait "$client" 2>/dev/null || true

    local crc=0
    T 60 --home "$d/home" run $FX/serve_check.lua "$d/acks" > "$d/check.out" 2> "$d/check.err" || crc=$?
    local n; n=$(lines "$d/acks")
    total_acked=$(( total_acked + n ))
    local lp; lp=$(sed -n 's/.*which dropped with their unlogged prediction \([0-9]*\).*/\1/p' "$d/check.out")
    lost_pending=$(( lost_pending + ${lp:-0} ))
    [[ $crc == 0 ]] || why="${why:+$why; }$(grep -m1 INCONSISTENT "$d/check.out" || echo "check failed, exit $crc")"
    if [[ -z $why ]]; then
      record serving ok "$detail; $(grep -m1 '^acked' "$d/check.out"), all durable"
    else
      record serving bad "$detail: $why"
      evidence "$d" check.out check.err serve.err client.out client.err
    fi
    rm -rf "$d"
  done
  note serving "$total_acked acknowledged outcomes checked, $lost_pending pending with a lost prediction"
}

# ---- 4. dag: a killed runner's run resumes without rerunning what succeeded ------------

# PIDs of `tycho dag _task ... RUNNER_PID` processes of a runner.
tasks_of_runner() {
  local f out=""
  for f in /proc/[0-9]*/cmdline; do
    local c; c=$(tr '\0' ' ' 2>/dev/null < "$f") || continue
    if [[ $c == *" dag _task "*" $1 " ]]; then out+="${f//[!0-9]/}:$(starttime "${f//[!0-9]/}") "; fi
  done
  echo "$out"
}

scenario_dag() {
  local d t0 ms=${DAG_MS:-}
  if [[ -z $ms ]]; then
    d=$(new_trial dag-cal); mkdir "$d/marks"
    t0=$(now_ms)
    CHAOS_MARKS=$d/marks T 120 --home "$d/home" dag run $FX/dag.lua --date $DAG_DATE > "$d/out" 2> "$d/err" \
      || { echo "chaos: calibration dag run failed"; cat "$d/out" "$d/err"; exit 2; }
    ms=$(( $(now_ms) - t0 ))
    rm -rf "$d"
    echo "dag: 5 tasks of 250 ms (2 at a time), one unkilled run takes $ms ms; kills at 0-$ms ms (DAG_MS=$ms)"
  else
    echo "dag: 5 tasks of 250 ms (2 at a time); kills at 0-$ms ms (DAG_MS=$ms)"
  fi
  local i resumed_runs=0 redone=0
  for (( i = 1; i <= TRIALS; i++ )); do
    d=$(new_trial dag); mkdir "$d/marks"
    local why=""
    local delay; delay=$(rand_ms "$ms")
    CHAOS_MARKS=$d/marks nice -n "$NICE" "$TYCHO" --home "$d/home" dag run $FX/dag.lua --date $DAG_DATE \
      > "$d/killed.out" 2> "$d/killed.err" &
    local pid=$!; track "$pid"
    sleep_ms "$delay"
    local tasks; tasks=$(tasks_of_runner "$pid")
    kill9_reap "$pid"
    # Its task processes die with it (PR_SET_PDEATHSIG).
    local crc=0
    T 60 --home "$d/home" run $FX/dag_check.lua pre "$d/marks" $DAG_DATE > "$d/pre" 2> "$d/pre.err" || crc=$?
    [[ $crc == 0 ]] || why="home did not open after the kill (exit $crc)"
    local p
    # shellcheck disable=SC2013  # PIDs, one line of words
    for p in $(sed -n 's/^# pids //p' "$d/pre"); do tasks+="$p:$(starttime "$p") "; done
    if ! poll 5000 none_alive "$tasks"; then
      why="${why:+$why; }task processes left running 5 s after their runner was killed"
      for p in $tasks; do if alive_rec "$p"; then kill -9 "${p%%:*}" 2>/dev/null || true; fi; done
    fi
    local before; before=$(sed -n 's/^# run //p' "$d/pre")
    local done_before; done_before=$(grep -c '^[a-z]* success ' "$d/pre" || true)
    # The rerun resumes and succeeds; status shows it.
    local rrc=0
    CHAOS_MARKS=$d/marks T 120 --home "$d/home" dag run $FX/dag.lua --date $DAG_DATE > "$d/rerun.out" 2> "$d/rerun.err" || rrc=$?
    [[ $rrc == 0 ]] || why="${why:+$why; }rerun exited $rrc"
    crc=0
    T 60 --home "$d/home" run $FX/dag_check.lua post "$d/marks" $DAG_DATE "$d/pre" > "$d/check.out" 2> "$d/check.err" || crc=$?
    [[ $crc == 0 ]] || why="${why:+$why; }$(grep -m1 INCONSISTENT "$d/check.out" || echo "check failed, exit $crc")"
    T 60 --home "$d/home" dag status $FX/dag.lua > "$d/status.out" 2> "$d/status.err" || true
    grep -Eq "^$DAG_DATE +success " "$d/status.out" || why="${why:+$why; }tycho dag status does not show $DAG_DATE success"
    grep -q resumed "$d/rerun.out" && resumed_runs=$(( resumed_runs + 1 ))
    local r; r=$(sed -n 's/.*(\([0-9]*\) had finished unrecorded).*/\1/p' "$d/check.out")
    redone=$(( redone + ${r:-0} ))
    local what="kill -9 at $delay ms: run ${before:-none}, $done_before/5 tasks succeeded"
    if [[ -z $why ]]; then
      record dag ok "$what; $(grep -m1 '^rerun' "$d/check.out")"
    else
      record dag bad "$what: $why"
      evidence "$d" pre check.out rerun.out rerun.err status.out killed.err
    fi
    rm -rf "$d"
  done
  note dag "$resumed_runs reruns resumed an interrupted run; $redone tasks had finished unrecorded and ran again"
}

# ---- main ----------------------------------------------------------------------------------

echo "tycho chaos: $TYCHO, TRIALS=$TRIALS, SEED=$SEED, nice $NICE"
started=$(now_ms)
summary=()
for s in $SCENARIOS; do
  case $s in
    ingest|registry|serving|dag) ;;
    *) echo "chaos: unknown scenario '$s'" >&2; exit 2 ;;
  esac
  t0=$(now_ms)
  "scenario_$s"
  line="$s: ${N_TRIALS[$s]:-0} trials, ${N_OK[$s]:-0} consistent, ${N_BAD[$s]:-0} inconsistent"
  echo "$line ($(( ($(now_ms) - t0) / 1000 )) s)"
  summary+=("$s")
done

echo
printf '%-10s %7s %11s %13s  %s\n' SCENARIO TRIALS CONSISTENT INCONSISTENT NOTES
tt=0; tok=0; tbad=0
for s in "${summary[@]}"; do
  printf '%-10s %7d %11d %13d  %s\n' "$s" "${N_TRIALS[$s]:-0}" "${N_OK[$s]:-0}" "${N_BAD[$s]:-0}" "${NOTES[$s]:- }"
  tt=$(( tt + ${N_TRIALS[$s]:-0} )); tok=$(( tok + ${N_OK[$s]:-0} )); tbad=$(( tbad + ${N_BAD[$s]:-0} ))
done
printf '%-10s %7d %11d %13d  %s\n' total "$tt" "$tok" "$tbad" "$(( ($(now_ms) - started) / 1000 )) s, SEED=$SEED"
(( tbad == 0 ))
