## Lint and format checks in a small venv of their own (no torch needed): what CI runs before the tests.
LINT_VENV := build/lint-venv
RUFF_VERSION := 0.17.6
LINT_PATHS := backend tests think2seg_qgis scripts

.PHONY: lint help

$(LINT_VENV)/.installed: mk/lint.mk
	$(PY) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q ruff==$(RUFF_VERSION)
	touch $@

## ruff's lint rules and its formatter's check over the whole tree (pyproject.toml: [tool.ruff]).
lint: $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/ruff check $(LINT_PATHS)
	$(LINT_VENV)/bin/ruff format --check $(LINT_PATHS)

## Every target README names, with the line above it in its makefile.
help:
	@awk '/^## /{if (doc=="") doc=substr($$0,4); next} /^[a-z][a-z0-9-]*:([^=]|$$)/{split($$0,t,":"); printf "  %-16s %s\n", t[1], doc; doc=""; next} {doc=""}' $(MAKEFILE_LIST)
