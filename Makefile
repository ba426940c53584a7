# Front door: `make run`, `make test`, `make bench`. Each installs what is missing first.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
# ccache hits across clones in other directories (CI builds a fresh clone).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
DATA ?= .cogs

.PHONY: deps build build-asan run test test-unit test-asan bench clean

deps:
	@bash scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOGS_SANITIZE=ON -DCOGS_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The one-command local cloud: cogsd, the network and volume services and three compute hosts on
# 127.0.0.1, data in $(DATA). Ctrl-C stops it; run again to come back with everything.
run: build
	@$(BUILD)/bin/cogs dev --data-dir $(DATA)

test: build build-asan
	@bash scripts/run-tests $(BUILD) $(ASAN_BUILD)

bench: build
	@$(BUILD)/bin/cogs-bench workflow
	@$(BUILD)/bin/cogs-bench create-storm
	@$(BUILD)/bin/cloud_benchmark

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
