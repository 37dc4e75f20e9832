# The two commands a newcomer needs: `make run` and `make test`. Each one
# installs missing Debian packages, configures, and builds.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test run lint fmt-check clean

deps:
	@./scripts/install-deps

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS); fi

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

run: build
	@$(BUILD_DIR)/cli/kt policy lint examples/policies
	@echo "kt: the gateway layer is not built yet; see docs/architecture.md"

lint: build
	@$(BUILD_DIR)/cli/kt policy lint --strict examples/policies stdlib

clean:
	@rm -rf $(BUILD_DIR)
