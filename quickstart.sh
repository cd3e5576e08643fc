#!/usr/bin/env bash
# Runs AILink in the foreground on http://127.0.0.1:8080 with
# conf-examples/quickstart.conf: installs what is missing, builds the
# module, mints a demo token and prints it.  Each of OpenAI, Anthropic and
# Gemini without its key (OPENAI_API_KEY, ANTHROPIC_API_KEY,
# GEMINI_API_KEY) is served by the project's mock provider, so gpt-*,
# claude-* and gemini-* all work with no keys; a provider whose key is set
# is the real API.
set -euo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
cd "$repo"

scripts/install-deps.sh
./build.sh >/dev/null

mkdir -p .run
if [ ! -s .run/demo-token ]; then
    scripts/ailink-token demo | awk '/^token:/ { print $2 }' > .run/demo-token
    chmod 600 .run/demo-token
fi
token=$(cat .run/demo-token)

# the admin API's key (shown once, only its hash is in .run/admin.conf)
# and the vault's master key
admin_key=
if [ ! -s .run/admin.conf ]; then
    admin_key=$(scripts/ailink-admin | awk '/^admin key:/ { print $3 }')
    scripts/ailink-admin --master-key > .run/vault.key
    chmod 600 .run/vault.key
    {
        echo "ailink_admin_key $(printf '%s' "$admin_key" | sha256sum | cut -d' ' -f1);"
        echo "ailink_vault_master_key file:../.run/vault.key;"
    } > .run/admin.conf
fi
AILINK_DEMO_TOKEN_HASH=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
export AILINK_DEMO_TOKEN_HASH

# nginx resolves upstream names itself, without blocking: give it the
# system's name servers
awk '/^nameserver/ { a = $2; if (a ~ /:/) a = "[" a "]"; ns = ns " " a }
     END { if (ns) print "resolver" ns " ipv6=off;" }' /etc/resolv.conf \
    > .run/resolver.conf

mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true; }
trap cleanup EXIT

# each provider without a key is served by the project's mock provider
# (OpenAI, Anthropic Messages and Gemini formats), so claude-* and gemini-*
# work through translation with no keys at all
mock_port=9901
. scripts/quickstart-providers.sh "$mock_port"
mocked=$quickstart_mocked
served=$quickstart_served

if [ -n "$mocked" ]; then
    rm -f .run/mock.ready
    python3 t/mock/mock_provider.py --port "$mock_port" \
        --ready-file .run/mock.ready --log-level WARNING &
    mock_pid=$!
    for _ in $(seq 100); do [ -s .run/mock.ready ] && break; sleep 0.05; done
    mode="the mock provider for${mocked} (set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY for the real APIs)"
    [ -n "$served" ] && mode="$mode; the real API for${served}"
else
    mode="the real APIs of OpenAI, Anthropic and Gemini"
fi

cat <<MSG

AILink gateway on http://127.0.0.1:8080; models served by
$mode.

  demo token:  $token

  curl -s http://127.0.0.1:8080/v1/chat/completions \\
    -H "Authorization: Bearer $token" \\
    -H "Content-Type: application/json" \\
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'

  (or "claude-sonnet-4-5", "gemini-2.5-flash": same request, translated)

  admin API:   http://127.0.0.1:8081/api/v1/  (127.0.0.1 only)
  admin key:   ${admin_key:-(minted on the first run and shown then; rm .run/admin.conf for a new one)}

  curl -s http://127.0.0.1:8081/api/v1/tokens -H "Authorization: Bearer <admin key>"
  (also /approvals, /cache/stats, /health/upstreams, /spend?group_by=model, /audit)

  metrics:     curl -s http://127.0.0.1:8081/metrics   (Prometheus text format)

  audit records: $repo/.run/audit.jsonl     (Ctrl-C stops)

MSG

/usr/sbin/nginx -p "$repo/" -c conf-examples/quickstart.conf &
nginx_pid=$!
trap 'kill -QUIT $nginx_pid 2>/dev/null; wait $nginx_pid; cleanup' INT TERM
wait $nginx_pid
