#!/usr/bin/env bash
# Installs what AILink needs on Debian 12: nginx with its module sources,
# the C libraries, the services and tools the tests use.  Idempotent and
# quick when everything is there.  Pass "test" to add the test clients.
set -euo pipefail

packages=(nginx nginx-dev libpcre2-dev libcjson-dev libhiredis-dev libpq-dev
          libssl-dev libyaml-dev gcc make curl python3 openssl ca-certificates
          tzdata)  # policies in IANA time zones

if [ "${1:-}" = test ]; then
    packages+=(perl libtest-base-perl libtext-diff-perl libtest-longstring-perl
               liblist-moreutils-perl libwww-perl liburi-perl
               libhttp-message-perl libipc-run-perl valgrind
               python3-pip nodejs npm redis-server postgresql
               chromium chromium-driver fonts-liberation)  # the approvals
               # page's browser test (fonts: a Recommends, not pulled in)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

# nodejs/npm may come from outside Debian on some machines
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=()
    for p in "${missing[@]}"; do
        case "$p" in nodejs|npm) ;; *) tmp+=("$p") ;; esac
    done
    missing=("${tmp[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
    sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
