# vlmad_ros: `make test` (set-up + the whole suite), `make demo` (the main job), `make bench`.
SHELL := /bin/bash
ENV := . ./env.sh &&
PYTEST_ARGS ?=

.PHONY: setup build test demo bench lint lock clean

setup:
	@tools/setup.sh

# Rebuild after editing sources (incremental, seconds).
build: setup

test: setup
	@$(ENV) tools/run_tests.sh $(PYTEST_ARGS)

demo: setup
	@$(ENV) vlmad demo

bench: setup
	@$(ENV) vlmad bench all

lint: setup
	@$(ENV) tools/run_tests.sh -q test/test_flake8.py test/test_pep257.py test/test_package.py -k "flake8 or pep257 or xmllint"

# Regenerate requirements/lock.txt from requirements/base.in in a scratch venv.
lock:
	@rm -rf build/lockvenv && python3.11 -m venv build/lockvenv && \
	  build/lockvenv/bin/pip install -q -r requirements/base.in \
	    $$(grep -oE '^ros-kilted-(ament-cmake|rosidl)[a-z0-9-]*' requirements/lock.txt | sort -u) && \
	  build/lockvenv/bin/python tools/freeze.py > requirements/lock.txt && rm -rf build/lockvenv

clean:
	rm -rf build install log demo_out bench_out
