#!/usr/bin/env bash
# Packs the release CLI for a Linux x86-64 machine that has no Swift toolchain and no libzmq:
# the Swift runtime linked in (--static-swift-stdlib), the shared libraries it needs beyond
# glibc and libstdc++ beside it, and a launcher that points the loader at them.
#
#   bench/bundle.sh DIR        writes DIR/isthmus-linux-x86_64.tar.xz
#
# Unpacked anywhere, `isthmus/bin/isthmus` runs like the built binary (ISTHMUS_BIN for
# bench/run.py). The Python side there needs pyarrow, numpy and pyzmq, and python/src on
# PYTHONPATH (or `pip install ./python`).
set -euo pipefail
out=${1:?usage: bench/bundle.sh DIR}
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --build-path .build-static
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/isthmus/bin" "$stage/isthmus/lib"
strip -o "$stage/isthmus/lib/isthmus" .build-static/release/isthmus
# Every library the loader resolves, except the C and C++ runtimes every Linux has.
ldd .build-static/release/isthmus | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libstdc++.so.*|libgcc_s.so.*) ;;
    *) cp -L "$lib" "$stage/isthmus/lib/" ;;
  esac
done
cat > "$stage/isthmus/bin/isthmus" <<'LAUNCH'
#!/bin/sh
here=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/lib/isthmus" "$@"
LAUNCH
chmod +x "$stage/isthmus/bin/isthmus"
mkdir -p "$out"
tar -C "$stage" -cJf "$out/isthmus-linux-x86_64.tar.xz" isthmus
ls -l "$out/isthmus-linux-x86_64.tar.xz"
