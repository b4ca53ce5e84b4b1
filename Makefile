# make run: the tray app (or the headless agent when there is no display).
# make test: format, lints, layering, then every test under a virtual display and session bus.

SHELL := bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# GUI tests need an X display and a D-Bus session bus (the tray menu is read over it).
HEADLESS_GUI := xvfb-run -a dbus-run-session --

.PHONY: run test build fmt lint deps

deps:
	scripts/install-deps

run: deps
	$(CARGO) run --release --bin lockstep

test: deps lint
	$(HEADLESS_GUI) $(CARGO) nextest run --workspace

build: deps
	$(CARGO) build --workspace --all-targets

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	scripts/check-layering
