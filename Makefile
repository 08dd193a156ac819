# Developer entry points. Everything runs from the project venv (.venv).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv test test-long lint demo

venv: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

# The whole suite, in two workers (a test file stays in one worker, so its servers start
# once). Exit status 5 means pytest collected no test: that is a failure too.
test: venv
	@$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m "not long"; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - failing" >&2; exit 1; fi; \
	exit $$status

# The long forms of the tests whose short forms `make test` runs (demo at every hour, the
# task state machine at length, every real mail of the evaldata archives).
test-long: venv
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m long

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: venv
	$(VENV)/bin/assistant demo --serve
