# Quick start: `make demo` and `make test` on a fresh clone. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Debian packages the project needs (installed only when missing): fonts for typeset copy,
# tesseract for the typography gate, fribidi for Pillow's raqm text layout.
APT_PACKAGES := fonts-dejavu-core tesseract-ocr tesseract-ocr-eng libfribidi0 chromium chromium-driver

.PHONY: demo test lint deps apt-deps clean lock scenes-model

demo: deps
	$(VENV)/bin/rendercluster demo --config configs/local.yaml

test: deps lint
	$(PY) -m pytest -q

# ruff (its checks, and the Python files' formatting; the Markdown examples keep their
# hand-aligned comments), then the import contracts of pyproject.toml ([tool.importlinter]):
# the layers cli > serve > actors > core, no Ray in core, no cycles.
lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check --exclude "*.md" .
	$(VENV)/bin/lint-imports --no-cache --no-logo

deps: apt-deps $(STAMP)

# torch goes first and pinned: it is the CPU wheel on this disk; anything looser pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Pin the installed tree (runtime and dev) for reproducible installs (torch: the CPU build).
lock: deps
	{ echo "# The whole dependency tree of render-cluster (runtime and the dev extra), pinned:"; \
	  echo "# pip install -r requirements.lock && pip install --no-deps ."; \
	  echo "# (Python 3.11, Linux x86_64; torch is the CPU build there). Regenerate: make lock"; \
	  $(PIP) freeze --exclude-editable | sed 's/+cpu$$//' | sort -f; } > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache

# The scenes model (issue 18): trained from seed 0 on the procedural scenes world, about
# 90 minutes on two CPU cores; saved with its MODEL_CARD.md to models/scenes/.
scenes-model: deps
	$(PY) scripts/train_scenes.py --out models/scenes --seed 0 --threads 2
