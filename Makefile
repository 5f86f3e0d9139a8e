# Two commands set up a fresh machine and do the work:
#   make book   builds the course into _build/html (offline, from committed outputs)
#   make test   runs every test: package, widgets on ipywidgets 7.7.1 and 8, lint,
#               chapters (nbval), exercises, book build
# Both create .venv and install the pinned versions from constraints.txt first.
#   make test-fast   the unit tests alone (no chapters, no grading, no book build)
#   make sync        rewrite every notebook's Colab setup cell and links from _config.yml

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test test-fast sync venv bench clean

# Python writes each module's bytecode when it first imports it (PYTHONDONTWRITEBYTECODE is
# unset for the runs below): of the 16,751 installed modules the tests import 5,950, whose
# compiling costs 15 s of CPU; compiling ahead the 11,255 that might run took 27 s (both
# measured on 2026-12-07). The sandbox's processes cannot write (.venv is read-only there):
# they find the bytecode that their grader's process wrote when it imported the modules first.
RUN := env -u PYTHONDONTWRITEBYTECODE

# pip installs torch, pinned, from where pip's configuration finds the CPU build (a wheel on
# this machine's disk; PyTorch's CPU index in the GitHub workflow): an unpinned torch would pull
# a multi-GB CUDA build. uv installs the rest, the same pins (constraints.txt), in 5 s of CPU
# where pip took 17, and keeps that torch (2.13.0+cpu satisfies torch==2.13.0).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# A pip that resolves for another Python (tests/test_colab_installs.py checks Colab's installs).
	$(PY) -m pip install --quiet --no-compile -c constraints.txt pip uv
	$(PY) -m pip install --quiet --no-compile -c constraints.txt torch
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e ".[book,test,exercises,onnx]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(RUN) $(VENV)/bin/jupyter-book build . -W -n --keep-going

# The tests run on two processes (pytest-xdist), each taking whole files (--dist loadfile:
# a notebook's cells share one kernel, a file's fixtures are made once). Two thirds of the wall
# time of one process, for 3 % more CPU (each process collects every test and starts its own
# grader): the README's "The suite's budget" gives the runs. make test-fast stays on one
# process: on two it took 50 s of wall time instead of 64, for 81 s of CPU instead of 58.
# make test TEST_PROCESSES=0 runs it in one process.
TEST_PROCESSES ?= 2
PARALLEL  := -n $(TEST_PROCESSES) --dist loadfile

# The package's own bytecode is written first: the warm process that the sandboxed notebooks
# are forked from runs with PYTHONDONTWRITEBYTECODE set, and may import a module of it first.
test: $(STAMP)
	$(PY) -m compileall -q tinyllm
	$(RUN) $(PY) -m pytest $(PARALLEL)

# Unit tests only: tests/ without the tests marked slow (grading, torchrun, ONNX exports, Chromium,
# killed-and-resumed runs, processes importing transformers) and the book (build, browser); the
# widget tests still run on ipywidgets 7.7.1 too (tests/test_ipywidgets7.py).
test-fast: $(STAMP)
	$(PY) -m compileall -q tinyllm
	$(RUN) $(PY) -m pytest tests -m "not slow" --ignore=tests/test_book.py --ignore=tests/test_book_in_browser.py

sync: $(STAMP)
	$(PY) scripts/sync_notebooks.py
# --- browser (tests/test_web_page.py): Debian's Chromium, never a downloaded browser build ---
.PHONY: browser
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@/usr/bin/chromium --version 2>/dev/null | head -n 1
# --- end browser ---

# --- sandbox (tinyllm.grade): Debian's bubblewrap, the sandbox graded notebooks run in ---
.PHONY: sandbox
sandbox:
	@command -v bwrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }
	@bwrap --version
# --- end sandbox ---

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf _build $(VENV)
