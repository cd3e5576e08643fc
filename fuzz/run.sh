#!/usr/bin/env bash
# Builds and runs the AILink fuzz targets for a bounded time each.
#
#   fuzz/run.sh [SECONDS]          every target, SECONDS each (default 30)
#   fuzz/run.sh SECONDS TARGET...  only these targets
#   fuzz/run.sh --replay           only replay the corpora (no fuzzing)
#
# For each target: first every input in fuzz/corpus/<target>/ runs once
# (seeds and saved crashers: a regression check), then libFuzzer mutates
# for SECONDS with -rss_limit_mb=2048.  New inputs go to
# fuzz/out/corpus/<target>/ (the checked-in corpus is only read);
# a crash, leak, timeout or sanitizer report leaves its input in
# fuzz/out/artifacts/<target>/ and makes the run fail.  One line per
# target; exit status 0 only when every target passed.
set -uo pipefail

fuzz=$(cd "$(dirname "$0")" && pwd)
out="$fuzz/out"
seconds=30
replay_only=no

case "${1:-}" in
    --replay) replay_only=yes; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    '') ;;
    *) seconds=$1; shift ;;
esac

all=(fuzz_sse fuzz_json fuzz_anthropic_stream fuzz_gemini_stream
     fuzz_request fuzz_direct fuzz_response fuzz_guard)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

"$fuzz/build.sh" "${targets[@]}" || { echo "fuzz: build failed"; exit 1; }

sym=$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | tail -1)
export ASAN_SYMBOLIZER_PATH=${sym:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0

for t in "${targets[@]}"; do
    bin="$out/$t"
    seeds="$fuzz/corpus/$t"
    logs="$out/logs"
    art="$out/artifacts/$t/"
    mkdir -p "$logs" "$art" "$out/corpus/$t" "$seeds"

    if [ ! -x "$bin" ]; then
        printf '%-22s SKIP  (not built)\n' "$t"
        continue
    fi

    # 1. the corpus, each input once; on a failure, every failing input
    inputs=("$seeds"/*)
    if [ -e "${inputs[0]}" ] \
       && ! "$bin" -rss_limit_mb=2048 -timeout=10 "${inputs[@]}" \
            > "$logs/$t.replay.log" 2>&1
    then
        for f in "${inputs[@]}"; do
            "$bin" -rss_limit_mb=2048 -timeout=10 "$f" \
                > "$logs/$t.replay.one.log" 2>&1 && continue
            why=$(grep -m1 -E 'invariant failed|ERROR: |runtime error' \
                  "$logs/$t.replay.one.log" | sed 's/^==[0-9]*==//')
            printf '%-22s FAIL  corpus input %s: %s\n' \
                   "$t" "${f#$fuzz/}" "$why"
            cat "$logs/$t.replay.one.log" >> "$logs/$t.replay.log"
        done
        rm -f "$logs/$t.replay.one.log"
        status=1
        continue
    fi

    [ $replay_only = yes ] && { printf '%-22s ok    %d corpus inputs\n' \
                                "$t" "${#inputs[@]}"; continue; }

    # 2. fuzzing, bounded
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
           -max_len=8192 -print_final_stats=1 -artifact_prefix="$art" \
           -dict="$fuzz/ailink.dict" \
           "$out/corpus/$t" "$seeds" > "$logs/$t.log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$logs/$t.log" \
          | tail -1)

    if [ $rc -ne 0 ]; then
        why=$(grep -m1 -E 'invariant failed|ERROR: |runtime error|SUMMARY' \
              "$logs/$t.log" | sed 's/^==[0-9]*==//')
        crash=$(sed -n 's/.*Test unit written to //p' "$logs/$t.log" | tail -1)
        printf '%-22s FAIL  %s; input: %s (log: %s)\n' \
               "$t" "$why" "${crash#$fuzz/}" "${logs#$fuzz/}/$t.log"
        status=1
    else
        printf '%-22s ok    %ss %s execs %s/s %s\n' \
               "$t" "$seconds" "${execs:-?}" "${speed:-?}" "${cov:-}"
    fi
done

exit $status
