#!/usr/bin/env bash
# Builds the AILink modules as one dynamic module (.so).
#
#   ./build.sh                     against the installed Debian nginx (nginx-dev)
#   ./build.sh --nginx-src DIR     against any nginx source tree (--with-compat)
#   ./build.sh --sanitize          AddressSanitizer + UBSan variant
#   ./build.sh --clean             forget the build folders first
#
# Rebuilds are incremental: configure runs again only when `config` or the
# options change.  The result is copied to build/<variant>/ngx_ailink_module.so
# (build/<variant>-<tree>/out/ for another source tree).
set -euo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
nginx_src=/usr/share/nginx/src
variant=release
clean=no

while [ $# -gt 0 ]; do
    case "$1" in
        --nginx-src) nginx_src=$(cd "$2" && pwd); shift 2 ;;
        --sanitize)  variant=sanitize; shift ;;
        --clean)     clean=yes; shift ;;
        -h|--help)   sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

if [ ! -x "$nginx_src/configure" ] && [ ! -x "$nginx_src/auto/configure" ]; then
    echo "build.sh: no nginx source tree at $nginx_src" \
         "(install nginx-dev, or pass --nginx-src DIR)" >&2
    exit 1
fi

cc_opt="-g -O2 -fPIC -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat -Werror=format-security"
ld_opt="-fPIC"
if [ "$variant" = sanitize ]; then
    cc_opt="-g -O1 -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    ld_opt="-fPIC -fsanitize=address,undefined"
fi

tag=$(printf '%s' "$nginx_src" | cksum | cut -d' ' -f1)
work="$repo/build/$variant-$tag"
out="$repo/build/$variant"
if [ "$nginx_src" != /usr/share/nginx/src ]; then
    # a module for another nginx never replaces the default one
    out="$work/out"
fi
[ "$clean" = yes ] && rm -rf "$work" "$out"
mkdir -p "$work" "$out"

# configure flags: Debian's own when building against nginx-dev
flags=(--with-compat)
if [ -f "$nginx_src/conf_flags" ]; then
    # shellcheck disable=SC1091
    . "$nginx_src/conf_flags"
    flags=("${NGX_CONF_FLAGS[@]}")
fi

stamp=$(printf '%s\n' "${flags[@]}" "$cc_opt" "$ld_opt" | cat - "$repo/config" | cksum)

if [ ! -f "$work/src/objs/Makefile" ] || [ "$(cat "$work/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$work/src"
    cp -a "$nginx_src" "$work/src"
    chmod -R u+w "$work/src"
    (
        cd "$work/src"
        conf=./configure
        [ -x "$conf" ] || conf=./auto/configure
        "$conf" "${flags[@]}" --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" \
            --add-dynamic-module="$repo" > "$work/configure.log" 2>&1 \
            || { tail -30 "$work/configure.log" >&2; exit 1; }
    )
    printf '%s' "$stamp" > "$work/stamp"
fi

make -s -C "$work/src" -f objs/Makefile modules -j"$(nproc)" >&2

cp "$work/src/objs/ngx_ailink_auth_module.so" "$out/ngx_ailink_module.so.tmp"
mv "$out/ngx_ailink_module.so.tmp" "$out/ngx_ailink_module.so"

echo "built: $out/ngx_ailink_module.so"
echo "use it with:"
echo "    load_module $out/ngx_ailink_module.so;"
if [ "$variant" = sanitize ]; then
    echo "and run nginx with the sanitizer runtime preloaded:"
    echo "    LD_PRELOAD=$(gcc -print-file-name=libasan.so) nginx ..."
fi
