#!/usr/bin/env bash
# fuzz.sh TARGET SECONDS [BUILD_DIR]: builds tests/fuzz/fuzz_TARGET.c with
# clang's libFuzzer + ASan + UBSan and runs it for SECONDS from its corpus.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=$1 secs=$2 out=${3:-$root/build-fuzz}
mkdir -p "$out/corpus-$target"
cp -n "$root"/tests/fuzz/corpus/"$target"/* "$out/corpus-$target/" 2>/dev/null || true
# The Pulsar transport's protocol code is generated from its .proto.
mkdir -p "$out/gen-$target"
protoc-c --c_out="$out/gen-$target" -I"$root/src/bus" "$root/src/bus/pulsar.proto"
# The routes know the files compiled in from web/ (cmake/embed.cmake).
cmake -DWEB_DIR="$root/web" -DOUT="$out/gen-$target/assets_data.c" -P "$root/cmake/embed.cmake"
srcs=("$root"/src/util/*.c "$root"/src/api/render.c "$root"/src/api/request.c
      "$root"/src/api/assets.c "$out/gen-$target/assets_data.c" "$root"/src/engine/outcome.c
      "$root"/src/engine/def*.c "$root"/src/engine/template*.c "$root"/src/bus/*.c
      "$out/gen-$target/pulsar.pb-c.c" "$root"/src/http/*.c)
clang -std=c17 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$root/include" -I"$root/src" -I"$root/src/bus" -I"$root/src/api" -I"$out/gen-$target" \
  "$root/tests/fuzz/fuzz_$target.c" "${srcs[@]}" \
  $(pkg-config --cflags --libs jansson libuv libcurl libnats libprotobuf-c openssl) -lpthread -o "$out/fuzz_$target"
# A target may come with a dictionary of its input's words (tests/fuzz/TARGET.dict).
dict=()
[ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
"$out/fuzz_$target" -max_total_time="$secs" -max_len=65536 -timeout=10 \
  -print_final_stats=1 "${dict[@]}" "$out/corpus-$target"
