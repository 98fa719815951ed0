# The two commands of the README:
#   make run   install what is missing, build, start sta-stubs + sagad on :5000
#   make test  install, build (normal and ASan+UBSan), run every test
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
# -Werror is for developers and CI: on for the test targets and the builds
# they depend on, off for `make run` and `make build` (as for a packager).
SG_WERROR  ?= OFF
test test-fast: SG_WERROR = ON
# Crash points (include/sg/crash.h) are for the test builds only: `make
# run` and `make bench` reconfigure the same build directory without them.
SG_CRASH_POINTS ?= OFF
test test-fast: SG_CRASH_POINTS = ON

.PHONY: all deps build build-asan run test test-fast bench install format format-check clean

all: build

deps:
	./scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSG_WERROR=$(SG_WERROR) \
	  -DSG_CRASH_POINTS=$(SG_CRASH_POINTS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSG_SANITIZE=ON \
	  -DSG_WERROR=$(SG_WERROR) -DSG_CRASH_POINTS=$(SG_CRASH_POINTS) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	BUILD=$(BUILD) ./scripts/run-demo.sh

test: format-check build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The benchmark (bench/run.sh, docs/benchmark.md): never part of test or CI.
bench: build
	BUILD=$(BUILD) ./bench/run.sh

# make install [PREFIX=/usr/local] [DESTDIR=staging]: sagad, sta-stubs,
# sagad(8) and lib/systemd/system/sagad.service under PREFIX.
PREFIX ?= /usr/local
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
