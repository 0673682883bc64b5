# Two entry points for a fresh machine: `make run` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTHON3 ?= python3

# Debian packages Qt needs: offscreen platform first, then a real X11 window.
QT_DEBS := libegl1 libgl1 libfontconfig1 libxkbcommon0 libdbus-1-3 libglib2.0-0 fonts-dejavu-core fonts-noto-cjk \
           libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 \
           libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0

.PHONY: run test setup qt-libs bench lint-imports clean

setup: $(STAMP) qt-libs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU wheel (torch==2.13.0); an unpinned torch pulls CUDA.
	# The ray extra (~40 s, ~450 MB) lets CI run the Ray engine tests; `make run` never imports Ray.
	$(PY) -m pip install -q -e '.[test,ray]'
	@touch $(STAMP)

qt-libs:
	@missing=$$(for p in $(QT_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Qt runtime libraries: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Qt needs these Debian packages (run as root or ask an admin): $$missing"; \
	  fi; \
	fi

run: setup
	$(VENV)/bin/merch-app gui --demo

# Two test processes (pytest-xdist), each test file in one of them: its module fixtures (a Ray
# cluster, a trained shop) start once; the subprocess and kill tests wait in one while the other runs.
test: setup
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n 2 --dist loadfile

# make bench: every benchmark (30-40 min on 2 cores); make bench BENCH_ARGS=--quick: a few minutes.
bench: setup
	QT_QPA_PLATFORM=offscreen $(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
