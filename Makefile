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

.PHONY: deps configure build run test lint fmt-check clean

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

fmt-check: build
	@$(BUILD_DIR)/cli/kt policy fmt --check examples/policies stdlib

lint: build
	@$(BUILD_DIR)/cli/kt policy lint --strict examples/policies stdlib

clean:
	@rm -rf $(BUILD_DIR)
