#!/usr/bin/env bash
# Builds the libFuzzer target (a second build, -sanitize=fuzzer,address) and runs it for
# FUZZ_SECONDS (default 60) with the Arrow reference files as seeds. New crash inputs land in
# Tests/fuzz/regressions/; copy them into a test once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.build-fuzz
mkdir -p "$out" Tests/fuzz/regressions "$out/corpus"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name IsthmusArrowFuzz \
  $(find Sources/IsthmusArrow -name '*.swift' | sort) Tests/fuzz/FuzzIPC.swift -o "$out/fuzz-ipc"
seeds=../shared/arrow-testing
cp -n "$seeds"/integration/*/*.stream "$seeds"/integration/*/*.arrow_file "$seeds"/fuzz/* "$out/corpus/" 2>/dev/null || true
"$out/fuzz-ipc" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -timeout=10 \
  -artifact_prefix=Tests/fuzz/regressions/ "$out/corpus"
