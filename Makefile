# Front door: `make run`, `make test`, `make bench`, `make fuzz`. Each installs what is missing first.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 60
JOBS ?= $(shell nproc)
# ccache hits across clones in other directories (CI builds a fresh clone).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
DATA ?= .cogs

.PHONY: deps build build-asan build-fuzz run test test-unit test-asan bench fuzz clean

deps:
	@bash scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOGS_SANITIZE=ON -DCOGS_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The libFuzzer targets (test/fuzz/README.md): clang, every library they link under ASan+UBSan.
build-fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DCOGS_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz

# The one-command local cloud: cogsd, the network and volume services and three compute hosts on
# 127.0.0.1, data in $(DATA). Ctrl-C stops it; run again to come back with everything.
# The instances are real (containers under runc: `cogs dev --driver container`) when the machine
# allows it (root, runc, /bin/busybox and ip), else simulated (--driver sim); DRIVER=sim|container
# chooses. It says which it took and why.
DRIVER ?=
run: build
	@driver="$(DRIVER)"; why="DRIVER=$(DRIVER)"; \
	if [ -z "$$driver" ]; then \
		missing=""; \
		[ "$$(id -u)" = 0 ] || missing="$$missing root"; \
		command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing="$$missing runc"; \
		[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
		command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing iproute2"; \
		if [ -z "$$missing" ]; then driver=container; why="root, runc, busybox and ip are here: real instances"; \
		else driver=sim; why="no$$missing: simulated instances (nothing runs)"; fi; \
	fi; \
	echo "make run: driver $$driver ($$why)"; \
	exec $(BUILD)/bin/cogs dev --data-dir $(DATA) --driver $$driver

test: build build-asan build-fuzz
	@bash scripts/run-tests $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

bench: build
	@$(BUILD)/bin/cogs-bench workflow
	@$(BUILD)/bin/cogs-bench create-storm
	@$(BUILD)/bin/cloud_benchmark
	@node bench/console_scale.mjs $(BUILD)/bin

# Every fuzz target for FUZZ_TIME seconds, one after the other; what each found stays in
# $(FUZZ_BUILD)/corpus for the next run, a crashing input in $(FUZZ_BUILD)/fuzz-artifacts.
fuzz: build-fuzz
	@FUZZ_CORPUS=$(CURDIR)/$(FUZZ_BUILD)/corpus FUZZ_ARTIFACTS=$(CURDIR)/$(FUZZ_BUILD)/fuzz-artifacts \
		bash test/fuzz/run.sh --all $(FUZZ_BUILD) -max_total_time=$(FUZZ_TIME)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
