#!/bin/bash
# Cost per packet (issue #20, docs/benchmarks.md "Cost per packet"): one stack at a
# time on loopback, started, warmed 2 s, loaded DUR s, stopped.
#
#   bench/cost.sh LABEL KIND SLUICE DUR [VAR=value ...]
#
# KIND: ceiling (sluice-bench ceiling, LOOPS=n for its loops), own (three
# `sluice analyzer`s, batches), plainown (the same with --batch false), plain
# (three `sluice-bench plain-analyzer`s: net/http, encoding/json). Weights
# 0.5/0.3/0.2; VAR=value go to the distributor. Load: wrk -t1 -c64, or with RATE=n
# the emitter at n packets/s over 64 connections. IDLE=s: afterwards, the
# distributor's CPU over s seconds of idleness. TASKSET="taskset -c 0" pins the
# server. Prints one line: packets/s, the distributor's CPU per packet (perf stat
# task-clock), the analyzers' (/proc/<pid>/stat), the load generator's p99 and the
# distributor's context switches and system calls per packet (perf tracepoints).
# Needs wrk, perf; bin/sluice-bench (make bench builds it); the emitter is
# SLUICE's (bin/sluice for the ceiling), or EMITTER's.
set -u
LABEL=$1 KIND=$2 BIN=$3 DUR=$4; shift 4
TS=${TASKSET:-}
BENCH=${SLUICE_BENCH:-bin/sluice-bench}
EMITTER=${EMITTER:-$BIN}
[ "$EMITTER" = - ] && EMITTER=bin/sluice
P=$((20000 + RANDOM % 20000))
tmp=$(mktemp -d)
pids=(); apids=()
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
cleanup() { for p in "${pids[@]}" "${apids[@]}"; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
$BENCH wrk-script > $tmp/ingest.lua
if [ $KIND = ceiling ]; then
  $TS $BENCH ceiling -addr 127.0.0.1:$P -loops ${LOOPS:-0} 2>/dev/null & pids+=($!)
  sleep 0.5
else
  for i in 1 2 3; do
    case $KIND in
      own) $BIN analyzer --port 127.0.0.1:$((P+i)) --id a$i >/dev/null 2>&1 & apids+=($!);;
      plainown) $BIN analyzer --port 127.0.0.1:$((P+i)) --batch false --id a$i >/dev/null 2>&1 & apids+=($!);;
      plain) $BENCH plain-analyzer 127.0.0.1:$((P+i)) & apids+=($!);;
    esac
  done
  sleep 0.3
  env "$@" ANALYZERS=http://127.0.0.1:$((P+1))=0.5,http://127.0.0.1:$((P+2))=0.3,http://127.0.0.1:$((P+3))=0.2 \
    LISTEN_ADDR=127.0.0.1:$P METRICS_ADDR= LOG_LEVEL=error $TS $BIN distributor & pids+=($!)
  for k in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$P/readyz && break; sleep 0.05; done
fi
D=${pids[0]}
wrk -t1 -c64 -d2s -s $tmp/ingest.lua http://127.0.0.1:$P/ingest w$RANDOM- >/dev/null
a0=0; for a in "${apids[@]}"; do a0=$((a0+$(cpu $a))); done
perf stat -x, -o $tmp/perf -p $D -e task-clock,context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read & PP=$!
sleep 0.1
if [ -n "${RATE:-}" ]; then
  out=$($EMITTER emitter --target http://127.0.0.1:$P/ingest --rate $RATE --concurrency 64 --duration ${DUR}s --retries -1 --json 2>/dev/null | tail -1)
  req=$(echo "$out" | sed 's/.*"accepted":\([0-9]*\).*/\1/')
  p99=$(echo "$out" | sed 's/.*"p99_ms":\([0-9.]*\).*/\1/' | awk '{printf "%d", $1*1000}')
  us=$((DUR*1000000)); se=0
else
  out=$(wrk -t1 -c64 -d${DUR}s --timeout 10s -s $tmp/ingest.lua http://127.0.0.1:$P/ingest $LABEL$RANDOM- | grep sluice-bench-wrk)
  req=$(echo "$out" | sed 's/.*"requests":\([0-9]*\).*/\1/')
  us=$(echo "$out" | sed 's/.*"duration_us":\([0-9]*\).*/\1/')
  p99=$(echo "$out" | sed 's/.*"p99_us":\([0-9]*\).*/\1/')
  se=$(echo "$out" | sed 's/.*"status_errors":\([0-9]*\).*/\1/')
fi
kill -INT $PP  # perf prints its counts on SIGINT
for k in 1 2 3 4 5 6 7 8 9 10; do kill -0 $PP 2>/dev/null || break; sleep 0.2; done
kill -0 $PP 2>/dev/null && kill -TERM $PP  # a SIGINT before perf set its handler is ignored
wait $PP 2>/dev/null
a1=0; for a in "${apids[@]}"; do a1=$((a1+$(cpu $a))); done
awk -F, -v l=$LABEL -v r=$req -v us=$us -v a=$((a1-a0)) -v p=$p99 -v se=$se '
  /task-clock/{tc=$1} /context-switches/{cs=$1} /epoll_wait/{ew=$1} /futex/{fx=$1} /sys_enter_write,/{wr=$1} /writev/{wv=$1} /sys_enter_read,/{rd=$1}
  END{printf "%-12s %7.0f pkt/s cpu %5.2f us/pkt an %5.2f p99 %6.2f ms | per pkt: cs %.3f epoll %.3f futex %.3f write %.3f writev %.3f read %.3f %s\n", l, r/(us/1e6), tc*1000/r, a*1e4/r, p/1000, cs/r, ew/r, fx/r, wr/r, wv/r, rd/r, (se>0?"ERRS "se:"")}' $tmp/perf
if [ -n "${IDLE:-}" ]; then
  sleep 2; c0=$(cpu $D); sleep $IDLE; c1=$(cpu $D)
  awk -v l=$LABEL -v c=$((c1-c0)) -v t=$IDLE 'BEGIN{printf "%-12s idle %ds: %.2f %% of a core\n", l, t, c/t}'
fi
