# beam-edge: the two commands a fresh machine needs are `make serve` and
# `make test`; both install what is missing first (Debian: cmake for
# Pingora's zlib-ng), then call cargo.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test deps test-deps build release bench fmt clippy fuzz

APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends

# Build dependencies that a Debian machine with only Rust lacks.
deps:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake (needed by Pingora's libz-ng-sys)"; $(APT_INSTALL) cmake >/dev/null; }
	@command -v cc >/dev/null 2>&1 || { $(APT_INSTALL) build-essential >/dev/null; }

# What the browser test needs: ffmpeg (makes the test video), Debian's
# Chromium, Node.js and playwright-core (from the committed lockfile); the
# TLS tests: openssl (test CA and certificates) and curl (HTTP/2 client);
# tests/prometheus.rs: Debian's prometheus (with promtool).
# cluster test's DNS SRV server: dnsmasq (started by the test, no service);
# tests/tls_upgrade.rs: systemd-analyze (package systemd) checks the shipped unit.
test-deps: deps
	@missing=""; \
	  command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	  command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	  command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	  command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	  [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	  [ -x /usr/sbin/dnsmasq ] || missing="$$missing dnsmasq-base"; \
	  command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	  if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@[ -d tests/player/node_modules/playwright-core ] || npm ci --prefix tests/player --no-audit --no-fund

# Run the proxy on the embedded default config (add flags with ARGS="--payer 0x...").
serve: deps
	$(CARGO) run --release --locked -- serve $(ARGS)

# Every test: unit, integration (real binary on loopback against mock upstreams).
test: test-deps
	$(CARGO) test --locked --no-fail-fast

# The hostile-input harness (tests/fuzz.rs) for longer: FUZZ_CASES cases per
# parser (the disk tier gets a twentieth), a fresh seed each run, and a
# watchdog that aborts on a case running over BEAM_EDGE_FUZZ_CASE_SECS (10).
FUZZ_CASES ?= 200000
fuzz: deps
	BEAM_EDGE_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --locked --test fuzz -- --nocapture

build: deps
	$(CARGO) build --locked

release: deps
	$(CARGO) build --release --locked

bench: deps
	$(CARGO) bench --locked

fmt:
	$(CARGO) fmt --all

clippy: deps
	$(CARGO) clippy --locked --all-targets -- -D warnings
