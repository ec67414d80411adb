## QGIS plugin: system QGIS, a test venv on QGIS's Python, the plugin zip, install, run, tests, screenshots.
## Included by the root Makefile (-include mk/*.mk).
QGIS_PY := /usr/bin/python3
QVENV := .venv-qgis
QPY := $(QVENV)/bin/python
PLUGIN_ZIP := dist/think2seg_qgis.zip
QGIS_PROFILE_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
QGIS_APT := python3-qgis qgis-providers qgis xvfb xauth imagemagick xdotool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PLUGIN_SOURCES := $(shell find think2seg_qgis -name '*.py' -not -path '*/__pycache__/*' 2>/dev/null) \
	metadata.txt $(wildcard resources/styles/*.qml resources/icons/*.svg)

.PHONY: qgis-system venv-qgis test-plugin package install-plugin run run-tiny screenshot

## QGIS 3.22+ from the distribution (Debian 12: 3.22), bound to /usr/bin/python3; skipped when present.
qgis-system:
	@if [ -x /usr/bin/qgis ] && dpkg -s python3-qgis >/dev/null 2>&1 \
	    && command -v xvfb-run >/dev/null && command -v import >/dev/null && command -v xdotool >/dev/null; then \
	  echo "QGIS $$(dpkg-query -W -f='$${Version}' python3-qgis) is installed."; \
	else \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(QGIS_APT); \
	fi

## The test venv sees QGIS's own Python packages (qgis, PyQt5, osgeo); pytest only on top.
$(QVENV)/.installed: | qgis-system
	$(QGIS_PY) -m venv --system-site-packages $(QVENV)
	$(QPY) -m pip install -q 'pytest>=7'
	touch $@

venv-qgis: $(QVENV)/.installed

## The plugin suite under the real QGIS, offscreen; the e2e tests start the real service on the tiny models.
test-plugin: qgis-system $(QVENV)/.installed backend tiny-models
	QT_QPA_PLATFORM=offscreen $(QPY) -m pytest tests/plugin -q

$(PLUGIN_ZIP): $(PLUGIN_SOURCES) scripts/plugin_package.py
	$(QGIS_PY) scripts/plugin_package.py $@

## The zip QGIS's "Install from ZIP" accepts.
package: $(PLUGIN_ZIP)

## Into a QGIS profile (QGIS_PROFILE_DIR=...), enabled in its QGIS3.ini.
install-plugin: $(PLUGIN_ZIP)
	$(QGIS_PY) scripts/plugin_install.py $(PLUGIN_ZIP) "$(QGIS_PROFILE_DIR)"

## Everything for a user: QGIS, the backend, the plugin; starts the backend and opens QGIS with the sample.
## Models: THINK2SEG_MODEL / THINK2SEG_SAM / THINK2SEG_DEVICE (default: the published weights).
run: qgis-system backend install-plugin
	scripts/qgis_run.sh

## The same with the tiny test models (no network needed; the answers are not meaningful).
run-tiny: qgis-system backend tiny-models install-plugin
	THINK2SEG_MODEL=$(CURDIR)/$(TINY)/reasoner THINK2SEG_SAM=$(CURDIR)/$(TINY)/sam2.1_hiera_t.pt \
	  THINK2SEG_PORT=$${THINK2SEG_PORT:-8766} THINK2SEG_TOKEN_FILE=$(CURDIR)/.cache/tiny-token scripts/qgis_run.sh

## The real QGIS under Xvfb, a query through the panel: docs/screenshots/panel.png and result.png.
screenshot: qgis-system backend tiny-models $(PLUGIN_ZIP)
	scripts/qgis_screenshot.sh
