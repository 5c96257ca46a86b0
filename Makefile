# Lab Orchestrator: `make run` to try it, `make test` to run the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The local image store the demo images are built into (shared with make run and the qemu tests).
IMAGES_DIR ?= $(or $(LOCALCLUSTER_IMAGES),var/localcluster/images)

.PHONY: run test lint format venv assets system-deps bench clean kubevirt-schemas lock demo-images

# Python environment, from the hashed lock file (every package, direct and transitive, pinned with
# its hashes): rebuilt when the lock changes. The project itself is not installed: everything runs
# from this checkout.
$(VENV)/.installed: requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps --only-binary=:all: -r requirements-dev.lock
	touch $@

venv: $(VENV)/.installed

# Browser libraries from npm (pinned in package-lock.json), copied where Django serves static files.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

static/novnc/.installed: node_modules/.package-lock.json
	rm -rf static/novnc static/xterm
	mkdir -p static/novnc static/xterm
	cp -r node_modules/@novnc/novnc/core node_modules/@novnc/novnc/vendor node_modules/@novnc/novnc/LICENSE.txt static/novnc/
	cp node_modules/@xterm/xterm/lib/xterm.mjs node_modules/@xterm/xterm/css/xterm.css node_modules/@xterm/xterm/LICENSE static/xterm/
	cp node_modules/@xterm/addon-fit/lib/addon-fit.mjs static/xterm/
	touch $@

assets: static/novnc/.installed

# The app, the embedded local cluster (real QEMU VMs when available) and the demo lab.
run: venv assets
	$(BIN)/python -m laborchestrator.devserver --host $(HOST) --port $(PORT)

# The demo images as containerDisks in your registry, for a real cluster: builds them (cached), pushes
# REGISTRY/laborchestrator/{demo,desktop}:1 with skopeo (credentials: REGISTRY_AUTH_FILE or
# `skopeo login`), then `manage.py load_demo --registry REGISTRY` references them.
demo-images: venv
	@test -n "$(REGISTRY)" || { echo "usage: make demo-images REGISTRY=registry.example.org[:port]"; exit 2; }
	$(BIN)/python -m localcluster build-image --output $(IMAGES_DIR)
	$(BIN)/python -m localcluster build-desktop-image --output $(IMAGES_DIR)
	$(BIN)/python -m localcluster demo-images --registry $(REGISTRY) --images $(IMAGES_DIR) \
		$(if $(REGISTRY_AUTH_FILE),--authfile $(REGISTRY_AUTH_FILE))

test: venv assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	FAST_PASSWORD_HASHING=1 $(BIN)/pytest $(PYTEST_ARGS)

# Re-resolve the lock files after editing pyproject.toml's dependencies (needs PyPI). requirements.lock
# is what production installs (the Dockerfile); requirements-dev.lock adds the test tools, at the same
# versions, and is what make run / make test / CI install. Pins already in the files are kept unless
# `make lock UPGRADE=1`.
LOCK = $(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --quiet \
	$(if $(UPGRADE),--upgrade)
lock: venv
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev --constraint requirements.lock -o requirements-dev.lock

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# System packages the full test suite needs (Debian). CI runs this; on a laptop the tests that
# need a missing package skip and name it.
system-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "system-deps: run as root (apt-get)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium qemu-system-x86 qemu-utils busybox-static cpio vde2 genisoimage dropbear-bin \
		dnsmasq-base iproute2 debootstrap fdisk skopeo docker-registry apache2-utils runc umoci >/dev/null

bench: venv
	@ls bench/*.py

clean:
	rm -rf $(VENV) node_modules static/novnc static/xterm var/staticfiles

# Refresh the vendored KubeVirt schema and examples (localcluster/schemas/README.md).
KUBEVIRT_RAW = https://raw.githubusercontent.com/kubevirt/kubevirt/$(KUBEVIRT_REF)
kubevirt-schemas:
	@test -n "$(KUBEVIRT_REF)" || { echo "usage: make kubevirt-schemas KUBEVIRT_REF=<tag or commit>"; exit 2; }
	curl -fsSL -o localcluster/schemas/kubevirt-v1-swagger.json $(KUBEVIRT_RAW)/api/openapi-spec/swagger.json
	curl -fsSL -o localcluster/schemas/KUBEVIRT-LICENSE $(KUBEVIRT_RAW)/LICENSE
	for f in vmi-ephemeral vmi-fedora vmi-fedora-isolated vmi-masquerade vmi-nocloud; do \
		curl -fsSL -o localcluster/schemas/kubevirt-examples/$$f.yaml $(KUBEVIRT_RAW)/examples/$$f.yaml || exit 1; \
	done
	@echo "Now update the commit in localcluster/schemas/README.md and run make test."
