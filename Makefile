# reluflow: the two commands a newcomer needs.
#   make reproduce   regenerate every figure, result file and executed notebook
#   make test        lint, unit/property/oracle tests (the site's browser test among them), notebook validation (nbval)
#   make site        the browsable site of the executed notebooks, in build/site (never executes them)
# Both create .venv with python3 if it is missing and install the package with its extras.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reluflow-installed
EXTRAS := notebooks,test,docs

.PHONY: install reproduce test lint unit nbval lab clean site

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

# JOBS notebooks run at once (each its own kernel with one BLAS thread); the outputs do not depend on it.
JOBS ?= 2
reproduce: $(STAMP)
	$(VENV)/bin/reluflow reproduce --jobs $(JOBS)

lint: $(STAMP)
	$(VENV)/bin/ruff check reluflow tests $(wildcard benchmarks)

# pytest exits 5 when it collects no tests: treat that as a failure, not a pass. -rs lists each skip with its
# reason (the site's browser test says so when there is no /usr/bin/chromium).
unit: $(STAMP)
	@$(PY) -m pytest -rs tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests in tests/ (exit 5): failing"; exit 1; fi; exit $$rc

# nbval re-executes the committed notebooks in a scratch copy (so the repository's data/ and
# figures/ are never written by tests) and compares the outputs of the check cells. Kernels get one BLAS
# thread unless the caller set one, as in `reluflow reproduce` (KERNEL_THREADS in reluflow/pipeline/runner.py).
# Each notebook is validated by its own pytest process, NBVAL_JOBS at a time, the highest numbers (the longest
# notebooks) first (each writes only its own files in the scratch copy); the logs are printed afterwards in
# notebook order. A kernel start that collides with another's fails that notebook, which is then retried once,
# alone (nbval itself does not retry).
NBVAL_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=2; echo $$n)
NBVAL = OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} $(CURDIR)/$(PY) -m pytest --rootdir . -p no:cacheprovider --nbval-lax \
	--nbval-current-env --nbval-sanitize-with $(CURDIR)/tests/nbval_sanitize.cfg
export NBVAL
nbval: $(STAMP)
	@tmp=$$(mktemp -d); cp -r notebooks "$$tmp/"; mkdir -p "$$tmp/data" "$$tmp/figures"; cd "$$tmp"; \
	if ! ls notebooks/*.ipynb >/dev/null 2>&1; then echo "make: no notebooks to validate: failing"; rm -rf "$$tmp"; exit 1; fi; \
	ls notebooks/*.ipynb | sort -r | xargs -P $(NBVAL_JOBS) -I {} sh -c 'eval "$$NBVAL {}" > {}.log 2>&1; echo $$? > {}.rc'; \
	rc=0; passed=0; for nb in $$(ls notebooks/*.ipynb); do \
	  r=$$(cat $$nb.rc); \
	  if [ $$r -ne 0 ] && grep -q "Kernel died\|kernel_info" $$nb.log; then \
	    echo "== $$nb: its kernel did not start; retried alone"; eval "$$NBVAL $$nb" > $$nb.log 2>&1; r=$$?; fi; \
	  if [ $$r -eq 5 ]; then echo "make: nbval collected no cells of $$nb (exit 5): failing"; r=1; fi; \
	  sed -n '/^notebooks\//p;/FAILED\|Error\|error/p' $$nb.log | head -40; \
	  if [ $$r -ne 0 ]; then rc=$$r; cat $$nb.log; else passed=$$((passed + 1)); fi; \
	done; echo "== nbval: $$passed of $$(ls notebooks/*.ipynb | wc -l) notebooks passed"; cd /; rm -rf "$$tmp"; exit $$rc

test: lint unit nbval

# The site (docs/, reluflow/pipeline/site.py): built from the committed notebooks, offline. `make test` builds it
# too, in the session fixture of tests/site/test_site.py, which then opens every page in Chromium (skipped, saying
# why, when /usr/bin/chromium or playwright is missing). `.venv/bin/reluflow site --serve` serves it on 127.0.0.1.
site: $(STAMP)
	$(VENV)/bin/reluflow site

# (JupyterLab refuses to run as root unless told; containers often run as root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf build dist *.egg-info .staging-* .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 rm -rf
