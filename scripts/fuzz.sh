#!/usr/bin/env bash
# fuzz.sh TARGET SECONDS [BUILD_DIR]: builds tests/fuzz/fuzz_TARGET.c with
# clang's libFuzzer + ASan + UBSan and runs it for SECONDS from its corpus.
# Exit status: 0 when the time ran out with no finding; libFuzzer's
# non-zero status (crash, leak, timeout, sanitizer report) otherwise, with
# the reproducer saved as BUILD_DIR/crash-* (or leak-*, timeout-*).
#
# The sources every target draws on are compiled once per BUILD_DIR into
# libsg_fuzz.a (again only when a source or header is newer): several
# targets may build at once (ctest -j), so that step holds a lock.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=$1 secs=$2 out=${3:-$root/build-fuzz}
mkdir -p "$out/corpus-$target" "$out/gen" "$out/obj"
cp -n "$root"/tests/fuzz/corpus/"$target"/* "$out/corpus-$target/" 2>/dev/null || true

pkgs="jansson libuv libcurl libnats libprotobuf-c openssl libmicrohttpd"
cflags=(-std=c17 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer-no-link,address,undefined
        -fno-sanitize-recover=undefined -I"$root/include" -I"$root/src" -I"$root/src/bus"
        -I"$root/src/api" -I"$out/gen" $(pkg-config --cflags $pkgs))

build_lib() {
  # The Pulsar transport's protocol code is generated from its .proto; the
  # files under web/ become the API's table of assets.
  protoc-c --c_out="$out/gen" -I"$root/src/bus" "$root/src/bus/pulsar.proto"
  cmake -DWEB_DIR="$root/web" -DOUT="$out/gen/assets_data.c" -P "$root/cmake/embed.cmake"
  local srcs=("$root"/src/util/*.c "$root"/src/http/*.c "$root"/src/bus/*.c
              "$root"/src/engine/def*.c "$root"/src/engine/template*.c "$root"/src/engine/outcome.c
              "$root"/src/api/render.c "$root"/src/api/request.c "$root"/src/api/auth.c
              "$root"/src/api/assets.c "$root"/src/store/backend_util.c "$root"/src/cli/config.c
              "$root"/src/stubs/inject.c "$root"/src/stubs/names.c "$root"/src/stubs/routes.c
              "$root"/src/stubs/record.c "$root"/src/stubs/timer.c "$root"/src/stubs/server.c
              "$out/gen/pulsar.pb-c.c" "$out/gen/assets_data.c")
  rm -f "$out"/obj/*.o
  printf '%s\n' "${srcs[@]}" | xargs -P 2 -I{} sh -c \
    'f={}; n=$(echo "$f" | tr / _); exec clang "$@" -c "$f" -o "'"$out"'/obj/$n.o"' sh "${cflags[@]}"
  rm -f "$out/libsg_fuzz.a"
  ar rcs "$out/libsg_fuzz.a" "$out"/obj/*.o
}

(
  flock 9
  lib="$out/libsg_fuzz.a"
  if [ ! -f "$lib" ] || [ -n "$(find "$root/src" "$root/include" "$root/web" "$root/cmake/embed.cmake" \
                                  -newer "$lib" -type f -print -quit)" ]; then
    build_lib
  fi
) 9>"$out/.build.lock"

clang "${cflags[@]/fuzzer-no-link/fuzzer}" "$root/tests/fuzz/fuzz_$target.c" "$out/libsg_fuzz.a" \
  $(pkg-config --libs $pkgs) -lpthread -lm -o "$out/fuzz_$target"

# A target may come with a dictionary of its input's words (tests/fuzz/TARGET.dict).
dict=()
[ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
cd "$out"
"$out/fuzz_$target" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "${dict[@]}" "$out/corpus-$target"
