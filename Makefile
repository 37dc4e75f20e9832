# `make test` installs missing Debian packages, configures, builds and runs
# every test. (`make run`, which starts the gateway, arrives with gateway/.)
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test lint fmt-check clean

deps:
	@./scripts/install-deps

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS); fi

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

fmt-check: build
	@$(BUILD_DIR)/cli/kt policy fmt --check examples/policies stdlib

lint: build
	@$(BUILD_DIR)/cli/kt policy lint --strict examples/policies stdlib

clean:
	@rm -rf $(BUILD_DIR)
