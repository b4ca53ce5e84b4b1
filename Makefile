# make run: the tray app (or the headless agent when there is no display).
# make test: format, lints, layering, then every test under a virtual display and session bus.

SHELL := bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# GUI tests run under a virtual display and session bus; each also starts its own X server and
# bus, so tests side by side never share a window, the keyboard focus or a tray menu.
HEADLESS_GUI := xvfb-run -a dbus-run-session --

.PHONY: run test build fmt lint deps screenshots package policy

deps:
	scripts/install-deps

run: deps
	$(CARGO) run --release --bin lockstep

test: deps lint
	$(HEADLESS_GUI) $(CARGO) nextest run --workspace
	scripts/test-msi
	$(MAKE) --no-print-directory package
	@if [ "$$(id -u)" -eq 0 ]; then scripts/test-package; \
	else echo "make test: not root, so the package was built and linted but not installed (scripts/test-package)"; fi

# The Debian package (release builds), checked by lintian: target/package/lockstep_<version>_<arch>.deb
package: deps
	scripts/package-deb

# The files generated from the policy schema (crates/agent/src/policy/schema.toml): the settings
# reference in docs/site-it.md, the ADMX/ADML pair and the Linux machine files. `make test` fails
# while any of them is out of date.
policy:
	LOCKSTEP_WRITE_GENERATED=1 $(CARGO) test -p lockstep-agent --lib policy::drift::the_generated_files_match_the_schema

# The windows as the README shows them, taken by the end-to-end tests.
screenshots: deps
	LOCKSTEP_SCREENSHOTS=$(CURDIR)/docs/screenshots $(HEADLESS_GUI) $(CARGO) nextest run -p lockstep --test e2e

build: deps
	$(CARGO) build --workspace --all-targets

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	scripts/check-layering
