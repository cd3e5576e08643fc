#!/usr/bin/env bash
# Builds the AILink libFuzzer targets (clang, ASan + UBSan) into fuzz/out/.
#
#   fuzz/build.sh            build every target whose sources are present
#   fuzz/build.sh TARGET...  build only these (fuzz_sse, fuzz_request, ...)
#
# Needs: clang with libFuzzer (installed with apt when missing), the
# configured nginx tree ./build.sh makes (build/release-*/src, run first
# when missing), and nginx's own ngx_palloc.c, ngx_string.c, ngx_array.c
# and ngx_alloc.c, which Debian's nginx-dev does not ship: they are taken from
# $NGX_FULL_SRC, else fuzz/.cache/nginx-<version>, else fetched there with
# `apt-get source --download-only nginx` (upstream tarball, same version).
set -euo pipefail

fuzz=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$fuzz")
out="$fuzz/out"
cache="$fuzz/.cache"

log() { echo "fuzz/build.sh: $*" >&2; }


# --- clang -----------------------------------------------------------------

find_clang() {
    local c
    for c in "${CC:-}" clang-14 clang clang-15 clang-16 clang-13; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        # libFuzzer present?
        if echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long s){return 0;}' \
           | "$c" -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1
        then
            echo "$c"; return 0
        fi
    done
    return 1
}

if ! CLANG=$(find_clang); then
    log "installing clang-14 and libFuzzer (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null
    fi
    CLANG=$(find_clang) || { log "no clang with libFuzzer"; exit 1; }
fi


# --- the configured nginx tree ---------------------------------------------

find_tree() {
    local d
    for d in "$repo"/build/release-*/src "$repo"/build/sanitize-*/src; do
        if [ -f "$d/objs/ngx_auto_config.h" ] && [ -f "$d/src/core/nginx.h" ]
        then
            echo "$d"; return 0
        fi
    done
    return 1
}

if ! tree=$(find_tree); then
    log "no configured nginx tree: running ./build.sh"
    "$repo/build.sh" >&2
    tree=$(find_tree) || { log "./build.sh made no nginx tree"; exit 1; }
fi

version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$tree/src/core/nginx.h")


# --- nginx core sources ----------------------------------------------------

ngx_core_files=(src/core/ngx_palloc.c src/core/ngx_string.c src/core/ngx_array.c
                src/os/unix/ngx_alloc.c)

has_core() {
    local f
    for f in "${ngx_core_files[@]}"; do
        [ -f "$1/$f" ] || return 1
    done
}

full=""
for d in "${NGX_FULL_SRC:-}" "$tree" "$cache/nginx-$version"; do
    if [ -n "$d" ] && has_core "$d"; then
        full=$d; break
    fi
done

if [ -z "$full" ]; then
    log "fetching nginx $version sources (apt-get source)"
    mkdir -p "$cache"
    if ! grep -rqs '^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ \
       && ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/
    then
        # a deb-src twin of the Debian entry (see shared toolchain guide)
        sed 's/^Types: deb$/Types: deb-src/' \
            /etc/apt/sources.list.d/debian.sources \
            > /etc/apt/sources.list.d/ailink-fuzz-src.sources
        apt-get update -q >/dev/null
    fi
    (cd "$cache" && apt-get source --download-only -q nginx >/dev/null 2>&1 || true)
    tarball=$(ls "$cache"/nginx_"$version".orig.tar.gz 2>/dev/null || true)
    [ -n "$tarball" ] || { log "could not fetch nginx_$version.orig.tar.gz"; exit 1; }
    tar -xzf "$tarball" -C "$cache" "nginx-$version/src"
    full="$cache/nginx-$version"
    has_core "$full" || { log "nginx sources incomplete in $full"; exit 1; }
fi


# --- flags -----------------------------------------------------------------

incs=(-I "$tree/src/core" -I "$tree/src/event" -I "$tree/src/event/modules"
      -I "$tree/src/os/unix" -I "$tree/objs"
      -I "$tree/src/http" -I "$tree/src/http/modules" -I "$tree/src/http/v2"
      -I "$repo/ngx_ailink_common" -I "$repo/ngx_ailink_auth_module"
      -I "$repo/ngx_ailink_translate_module"
      -I "$repo/ngx_ailink_policy_module" -I "$fuzz")

san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined
     -fno-omit-frame-pointer)
base=(-g -O1 -std=gnu11 -Wall -Wno-unused-parameter -Wno-unused-function
      -Wno-unused-but-set-variable -Wno-sign-compare -Wno-pointer-sign)
# project code and the targets get coverage; nginx and the stubs do not
cov=(-fsanitize=fuzzer-no-link)
libs=(-lcjson -lpcre2-8)

mkdir -p "$out/obj"

# any of these changing rebuilds every object
headers=("$fuzz"/*.h "$repo"/ngx_ailink_common/*.h "$repo"/ngx_ailink_auth_module/*.h
         "$repo"/ngx_ailink_translate_module/*.h
         "$repo"/ngx_ailink_policy_module/*.h)

compile() {     # src obj extra-flags...
    local src=$1 obj=$2; shift 2
    local h stale=no
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$out/flags" -nt "$obj" ]; then
        stale=yes
    else
        for h in "${headers[@]}"; do
            [ "$h" -nt "$obj" ] && { stale=yes; break; }
        done
    fi
    if [ $stale = yes ]; then
        "$CLANG" "${base[@]}" "${san[@]}" "$@" "${incs[@]}" -c "$src" -o "$obj"
    fi
}

# rebuild everything when the compiler, tree or flags change
flags="$CLANG $tree $full ${base[*]} ${san[*]} ${cov[*]}"
if [ "$(cat "$out/flags" 2>/dev/null)" != "$flags" ]; then
    rm -f "$out"/obj/*.o
    echo "$flags" > "$out/flags"
fi


# nginx core, the stubs
ngx_objs=()
for f in "${ngx_core_files[@]}"; do
    o="$out/obj/ngx_$(basename "$f" .c).o"
    # nginx passes NULL with length 0 to memcpy everywhere ("%V" of an
    # empty ngx_str_t): not ours to report
    compile "$full/$f" "$o" -w -fno-sanitize=nonnull-attribute
    ngx_objs+=("$o")
done
compile "$fuzz/ngx_fuzz_stubs.c" "$out/obj/ngx_fuzz_stubs.o"
ngx_objs+=("$out/obj/ngx_fuzz_stubs.o")


# project sources each target links (beyond nginx and the stubs)
common="ngx_ailink_common/ngx_ailink_sse.c ngx_ailink_common/ngx_ailink_json.c ngx_ailink_common/ngx_ailink_json_scan.c"
xlate="$common ngx_ailink_translate_module/ngx_ailink_xlate.c
       ngx_ailink_translate_module/ngx_ailink_direct.c
       ngx_ailink_translate_module/ngx_ailink_anthropic.c
       ngx_ailink_translate_module/ngx_ailink_gemini.c
       ngx_ailink_translate_module/ngx_ailink_reasoning.c
       ngx_ailink_translate_module/ngx_ailink_structured.c
       ngx_ailink_translate_module/ngx_ailink_choices.c"

declare -A srcs=(
    [fuzz_sse]="$common"
    [fuzz_json]="$common"
    [fuzz_anthropic_stream]="$xlate"
    [fuzz_gemini_stream]="$xlate"
    [fuzz_request]="$xlate"
    [fuzz_direct]="$xlate"
    [fuzz_response]="$xlate"
    [fuzz_guard]="ngx_ailink_policy_module/ngx_ailink_guard.c
                  ngx_ailink_policy_module/ngx_ailink_guard_pii.c
                  ngx_ailink_policy_module/ngx_ailink_guard_inject.c"
)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz_sse fuzz_json fuzz_anthropic_stream fuzz_gemini_stream
             fuzz_request fuzz_direct fuzz_response fuzz_guard)
fi

built=()
for t in "${targets[@]}"; do
    [ -n "${srcs[$t]+x}" ] || { log "unknown target $t"; exit 2; }
    [ -f "$fuzz/$t.c" ] || { log "skipping $t: no fuzz/$t.c"; continue; }

    objs=("${ngx_objs[@]}")
    for s in ${srcs[$t]}; do
        o="$out/obj/$(basename "$s" .c).o"
        compile "$repo/$s" "$o" "${cov[@]}"
        objs+=("$o")
    done
    compile "$fuzz/$t.c" "$out/obj/$t.o" "${cov[@]}"
    objs+=("$out/obj/$t.o")

    "$CLANG" -g "${san[@]}" -fsanitize=fuzzer "${objs[@]}" "${libs[@]}" \
        -o "$out/$t"
    built+=("$t")
done

log "built ${built[*]:-nothing} in $out (clang: $CLANG, nginx $version)"
