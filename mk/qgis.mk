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
	metadata.txt LICENSE $(wildcard resources/styles/*.qml resources/icons/*.svg think2seg_qgis/i18n/*)
BACKEND_WHEEL_DIR := build/backend-wheel
PYQT6_VENV := build/pyqt6-venv

## Publishing: the addresses plugins.qgis.org shows and whom users write to. Set them once here (or on the command
## line, `make package PLUGIN_EMAIL=...`); metadata.txt carries @PLUGIN_*@ placeholders that `package` fills in.
PLUGIN_AUTHOR ?= Think2Seg contributors
PLUGIN_EMAIL ?= think2seg@users.noreply.github.com
PLUGIN_REPOSITORY ?= https://github.com/think2seg/think2seg
PLUGIN_HOMEPAGE ?= $(PLUGIN_REPOSITORY)
PLUGIN_TRACKER ?= $(PLUGIN_REPOSITORY)/issues
PLUGIN_META := --meta author="$(PLUGIN_AUTHOR)" --meta email="$(PLUGIN_EMAIL)" --meta repository="$(PLUGIN_REPOSITORY)" \
	--meta homepage="$(PLUGIN_HOMEPAGE)" --meta tracker="$(PLUGIN_TRACKER)"

.PHONY: qgis-system venv-qgis test-plugin test-plugin-3.40 test-plugin-3.44 qgis-chroot qgis-chroot-prefetch screenshot-3.44 package install-plugin run run-tiny screenshot i18n check-qt6

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

## uv's wheel from the registry, once: the set-up's standalone-Python test installs it offline from here (tests reach
## only 127.0.0.1), as the set-up takes it from PyPI.
UV_WHEELHOUSE := .cache/uv-wheel
$(UV_WHEELHOUSE)/.fetched: | $(QVENV)/.installed
	$(QPY) -m pip download -q --no-deps --only-binary=:all: -d $(UV_WHEELHOUSE) uv
	touch $@

## The plugin suite under the real QGIS, offscreen; the e2e tests start the real service on the tiny models.
## QGIS=system (default): the distribution's QGIS (Debian 12: 3.22). QGIS=3.40 or QGIS=3.44: the same suite in a
## Debian chroot (trixie, sid) that scripts/qgis_chroot.sh builds once per machine under $(QGIS_CHROOT_DIR),
## against the backend from this checkout's .venv; `make test` runs system and 3.44.
QGIS ?= system
QGIS_CHROOT_DIR ?= /var/cache/think2seg
ifeq ($(QGIS),system)
test-plugin: qgis-system $(QVENV)/.installed backend tiny-models $(UV_WHEELHOUSE)/.fetched
	QT_QPA_PLATFORM=offscreen THINK2SEG_UV_WHEELHOUSE=$(CURDIR)/$(UV_WHEELHOUSE) $(QPY) -m pytest tests/plugin -q $(PYTEST_ARGS)
else
test-plugin: test-plugin-$(QGIS)
endif

test-plugin-3.40 test-plugin-3.44: test-plugin-%: backend tiny-models
	THINK2SEG_CHROOT_DIR=$(QGIS_CHROOT_DIR) bash scripts/qgis_chroot.sh test $* $(PYTEST_ARGS)

## The chroot alone (built once; `make qgis-chroot QGIS=3.40`), e.g. to run qgis_process or QGIS in it.
qgis-chroot:
	THINK2SEG_CHROOT_DIR=$(QGIS_CHROOT_DIR) bash scripts/qgis_chroot.sh build $(QGIS)

## `make test` starts the 3.44 chroot's build in the background first (mostly downloads: it overlaps the backend
## suite); test-plugin-3.44 waits for it.
qgis-chroot-prefetch:
	THINK2SEG_CHROOT_DIR=$(QGIS_CHROOT_DIR) bash scripts/qgis_chroot.sh prefetch 3.44

## The backend's wheel, carried in the zip: "Set up backend" installs it into a managed venv (deps from PyPI).
$(BACKEND_WHEEL_DIR)/.built: $(shell find backend/think2seg -name '*.py' 2>/dev/null) backend/pyproject.toml | backend
	rm -rf $(BACKEND_WHEEL_DIR) && $(BPY) -m pip wheel -q --no-deps --no-build-isolation -w $(BACKEND_WHEEL_DIR) ./backend
	touch $@

$(PLUGIN_ZIP): $(PLUGIN_SOURCES) scripts/plugin_package.py $(BACKEND_WHEEL_DIR)/.built
	$(QGIS_PY) scripts/plugin_package.py $@ $(PLUGIN_META) --backend-wheel $$(ls $(BACKEND_WHEEL_DIR)/think2seg-*.whl)

## The translation template (think2seg_qgis/i18n/think2seg_qgis.ts) from every tr("...") in the plugin.
i18n:
	$(QGIS_PY) scripts/plugin_i18n.py

## The Qt6 name check with PyQt6 from PyPI in a throw-away venv (QGIS 4 itself does not install here).
check-qt6: $(QVENV)/.installed
	[ -x $(PYQT6_VENV)/bin/python ] || { $(QGIS_PY) -m venv $(PYQT6_VENV) && $(PYQT6_VENV)/bin/pip install -q PyQt6; }
	THINK2SEG_PYQT6_PYTHON=$(CURDIR)/$(PYQT6_VENV)/bin/python QT_QPA_PLATFORM=offscreen \
	  $(QPY) -m pytest tests/plugin/test_qt6_names.py -q

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

## The same screenshots on QGIS 3.44 under Xvfb in its chroot (imagemagick and curl added to it the first time):
## docs/screenshots/qgis-3.44/ (first run, panel, result, Processing dialog and outputs, then the refine tool in use).
screenshot-3.44: backend tiny-models $(PLUGIN_ZIP)
	THINK2SEG_CHROOT_DIR=$(QGIS_CHROOT_DIR) bash scripts/qgis_chroot.sh shell 3.44 sh -c '\
	  { command -v import && command -v curl; } >/dev/null || { apt-get -q -o Acquire::Check-Valid-Until=false update \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends imagemagick curl; }; \
	  QT_QPA_PLATFORM=xcb THINK2SEG_SCREENSHOT_DIR=$$PWD/docs/screenshots/qgis-3.44 bash scripts/qgis_screenshot.sh \
	  && QT_QPA_PLATFORM=xcb THINK2SEG_SCREENSHOT_DIR=$$PWD/build/refine-screenshot \
	    THINK2SEG_SCREENSHOT_STARTUP=$$PWD/scripts/qgis_refine_screenshot_startup.py bash scripts/qgis_screenshot.sh \
	  && cp build/refine-screenshot/refine.png docs/screenshots/qgis-3.44/refine_tool.png'
