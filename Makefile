# `make run` and `make test` install missing Debian packages, configure and
# build; then `run` starts the gateway on :41002 with examples/policies/ (the
# quickstart's built-in mock provider serves every model), and `test` runs
# every test.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

LISTEN ?= 0.0.0.0:41002
# The quickstart first (its rules run first, and its mock provider serves
# every model), then the rest of the examples.
POLICIES ?= examples/policies/quickstart.ktp examples/policies
AUDIT_LOG ?= kt-audit.jsonl

# The sanitizer build (ASan + UBSan, the whole suite) and the fuzzing build
# (clang, libFuzzer) live beside the normal one.
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: deps configure build run test test-asan fuzz lint fmt-check clean deb

deps:
	@./scripts/install-deps

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS); fi

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@exec $(BUILD_DIR)/cli/kt gateway run --listen $(LISTEN) $(addprefix --policy ,$(POLICIES)) \
	  --audit-log $(AUDIT_LOG)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The Debian package: build, then cpack in the build dir, which writes
# $(BUILD_DIR)/kt_<version>_amd64.deb (scripts/package/, docs/operations.md).
deb: build
	@cd $(BUILD_DIR) && cpack --config CPackConfig.cmake

# Every test again, built with -fsanitize=address,undefined: a memory error
# or undefined behaviour anywhere fails the test that reached it.
test-asan: deps
	@if [ ! -f $(ASAN_DIR)/build.ninja ]; then \
	  cmake -S . -B $(ASAN_DIR) -G Ninja -DKT_SANITIZE=ON -DKT_BUILD_BENCH=OFF $(CMAKE_FLAGS); fi
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@cd $(ASAN_DIR) && KT_SANITIZED=1 ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	  UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1} ctest --output-on-failure -j $(JOBS)

# libFuzzer on every target for FUZZ_SECONDS each (scripts/fuzz).
fuzz:
	@KT_WITH_FUZZ=1 ./scripts/install-deps
	@if [ ! -f $(FUZZ_DIR)/build.ninja ]; then \
	  cmake -S . -B $(FUZZ_DIR) -G Ninja -DKT_FUZZ=ON -DKT_BUILD_BENCH=OFF \
	    -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 $(CMAKE_FLAGS); fi
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target \
	  $$(cut -d' ' -f1 $(FUZZ_DIR)/fuzz-targets.txt | sed 's/.*/kt_&_fuzzer/')
	@FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz $(FUZZ_DIR)

fmt-check: build
	@$(BUILD_DIR)/cli/kt policy fmt --check examples/policies stdlib

lint: build
	@$(BUILD_DIR)/cli/kt policy lint --strict examples/policies stdlib

clean:
	@rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
