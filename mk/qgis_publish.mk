## Publishing check: what plugins.qgis.org's upload scan runs, on the zip `make package` builds (README, Publishing).
## The scanners live in their own small venv (build/publish-venv, from PyPI, pinned), never in the backend's.
PUBLISH_VENV := build/publish-venv
PUBLISH_TOOLS := bandit==1.9.4 detect-secrets==1.5.0 flake8==7.5.0

.PHONY: check-publish

$(PUBLISH_VENV)/.installed: mk/qgis_publish.mk
	rm -rf $(PUBLISH_VENV) && $(QGIS_PY) -m venv $(PUBLISH_VENV)
	$(PUBLISH_VENV)/bin/pip install -q $(PUBLISH_TOOLS)
	touch $@

## Bandit (no medium/high), detect-secrets (none), flake8's error classes, no exec/eval, no executable .py, no hidden
## files or scripts, no .pyc, <= 25 MB, the metadata the site needs (qgisMaximumVersion=4.99). CI runs it.
check-publish: $(PLUGIN_ZIP) $(PUBLISH_VENV)/.installed
	$(QGIS_PY) scripts/check_publish.py $(PLUGIN_ZIP) --tools $(PUBLISH_VENV)/bin
