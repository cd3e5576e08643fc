#!/usr/bin/env bash
# Runs every AILink test suite on a fresh Debian 12 machine: installs what
# is missing, builds the module twice (release, and AddressSanitizer +
# UBSan), runs the nginx suites (t/*.t) against both builds (and the
# self-test of their fallback runner, t/runner/t), then the end-to-end
# tests with the official openai clients (t/e2e), the Python SDK's tests
# (sdk/python/tests), then the libFuzzer targets for a bounded time
# (fuzz/, corpora replayed first).
# Any sanitizer report fails the run.  Ends with one line:
# "N passed, N failed, N skipped" (skipped: SDK tests marked as strict
# expected failures; none is today).
#
#   ./test.sh               everything
#   ./test.sh t/010-auth.t  only these nginx suites, release build only
set -uo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
cd "$repo"

scripts/install-deps.sh test || exit 1

# t/e2e calls the admin API with httpx itself; openai 3 moved to httpx2
# and is not what the suites were written against
python3 -c 'import openai, pytest, httpx, sys
sys.exit(int(openai.__version__.split(".")[0]) >= 3)' 2>/dev/null \
    || python3 -m pip install -q "openai>=1.50,<3" pytest httpx || exit 1
# the approvals page's browser test (t/e2e/test_approvals_page_browser.py)
python3 -c 'import selenium' 2>/dev/null \
    || python3 -m pip install -q selenium || exit 1
# Prometheus's parser reads GET /metrics (t/e2e/test_metrics_prometheus.py)
python3 -c 'import prometheus_client' 2>/dev/null \
    || python3 -m pip install -q prometheus_client || exit 1

if [ ! -d t/e2e/node_modules/openai ]; then
    npm ci --prefix t/e2e --no-audit --no-fund --loglevel=error || exit 1
fi

./build.sh >/dev/null || exit 1

passed=0
failed=0
skipped=0
logs=$(mktemp -d)

# adds prove's counts from its output file to the totals
count_prove() {
    local total bad
    total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$1" | tail -1)
    bad=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$1" \
          | awk '{ s += $1 } END { print s + 0 }')
    passed=$((passed + ${total:-0} - bad))
    failed=$((failed + bad))
    if ! grep -q '^Result: PASS' "$1"; then
        [ "$bad" -gt 0 ] || failed=$((failed + 1))
    fi
}

echo "== nginx suites, release build"
t/run "$@" 2>&1 | tee "$logs/release.log"
count_prove "$logs/release.log"

if [ $# -eq 0 ]; then
    echo "== test runner self-test"
    t/run t/runner/t/selftest.t 2>&1 | tee "$logs/runner.log"
    count_prove "$logs/runner.log"

    ./build.sh --sanitize >/dev/null || exit 1

    echo "== nginx suites, AddressSanitizer + UBSan build"
    mkdir -p "$logs/san"
    ASAN_OPTIONS="detect_leaks=1:log_path=$logs/san/asan" \
    LSAN_OPTIONS="suppressions=$repo/scripts/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/san/ubsan" \
    TEST_NGINX_BINARY="$repo/scripts/nginx-sanitized" \
    TEST_NGINX_LOAD_MODULES="$repo/build/sanitize/ngx_ailink_module.so" \
        t/run 2>&1 | tee "$logs/sanitize.log"
    count_prove "$logs/sanitize.log"

    reports=$(find "$logs/san" -type f -size +0 | wc -l)
    if [ "$reports" -gt 0 ]; then
        echo "sanitizer reports:"
        cat "$logs/san"/*
        failed=$((failed + reports))
    fi

    echo "== end-to-end, official openai clients"
    python3 -m pytest -q t/e2e 2>&1 | tee "$logs/e2e.log"
    e2e_pass=$(sed -n 's/.* \([0-9]*\) passed.*/\1/p; s/^\([0-9]*\) passed.*/\1/p' \
               "$logs/e2e.log" | tail -1)
    e2e_fail=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p; s/^\([0-9]*\) failed.*/\1/p' \
               "$logs/e2e.log" | tail -1)
    e2e_err=$(sed -n 's/.* \([0-9]*\) error.*/\1/p' "$logs/e2e.log" | tail -1)
    passed=$((passed + ${e2e_pass:-0}))
    failed=$((failed + ${e2e_fail:-0} + ${e2e_err:-0}))
    [ -n "$e2e_pass" ] || failed=$((failed + 1))

    echo "== Python SDK (sdk/python), against the gateway and the contract stub"
    python3 -m pip install -q "./sdk/python[all,test]" 2>&1 | tail -5
    python3 -m pytest -q -p no:cacheprovider sdk/python/tests 2>&1 | tee "$logs/sdk.log"
    # the last line is pytest's summary: an expected failure (strict
    # xfail) counts as skipped, never as passed; a strict xfail that
    # passed is among pytest's "failed"
    sdk_sum=$(tail -1 "$logs/sdk.log")
    sdk_n() {
        local n
        n=$(echo "$sdk_sum" | grep -Eo "[0-9]+ $1" | head -1 | cut -d' ' -f1)
        echo "${n:-0}"
    }
    passed=$((passed + $(sdk_n passed) + $(sdk_n xpassed)))
    skipped=$((skipped + $(sdk_n xfailed)))
    failed=$((failed + $(sdk_n failed) + $(sdk_n 'errors?')))
    echo "$sdk_sum" | grep -Eq '[0-9]+ passed' || failed=$((failed + 1))

    echo "== fuzzing, ${AILINK_FUZZ_SECONDS:-20} s per target"
    fuzz/run.sh "${AILINK_FUZZ_SECONDS:-20}" 2>&1 | tee "$logs/fuzz.log"
    passed=$((passed + $(grep -c '^fuzz_[a-z_]* *ok' "$logs/fuzz.log")))
    failed=$((failed + $(grep -c -E '^fuzz_[a-z_]* *(FAIL|SKIP)' "$logs/fuzz.log")))
    grep -q '^fuzz_[a-z_]* *ok' "$logs/fuzz.log" || failed=$((failed + 1))
fi

rm -rf "$logs"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
