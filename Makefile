# walsnap — common tasks. `make test ARGS=-run=Foo PKGS=./archive/...`

GO ?= go
ARGS ?=
PKGS ?= ./...

# The binaries: static (no cgo), without build paths or symbol tables, with
# their version and commit (walsnap --version, and recorded in manifests).
# walsnap-pg, the small front end for archive_command and restore_command,
# is built beside walsnap: it hands every call it does not answer to the
# walsnap in its own directory.
BIN ?= bin/walsnap
PGBIN := $(dir $(BIN))walsnap-pg
VERSION ?= $(shell git describe --tags 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/walsnap/walsnap/internal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)

# make install: the binary, its manual page and shell completions.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions

.PHONY: build install setup test demo bench fmt vet

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/walsnap
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(PGBIN) ./cmd/walsnap-pg

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/walsnap
	install -D -m 0755 $(PGBIN) $(DESTDIR)$(BINDIR)/walsnap-pg
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	$(BIN) man >$(DESTDIR)$(MANDIR)/man8/walsnap.8
	$(BIN) completion bash >$(DESTDIR)$(BASHCOMPDIR)/walsnap
	$(BIN) completion zsh >$(DESTDIR)$(ZSHCOMPDIR)/_walsnap

# Installs the test rig (apt packages, MinIO, PostgreSQL majors); run as root.
setup:
	bash scripts/ci/install.sh

# vet, gofmt check and go test against the real rig (MinIO started and stopped here).
test:
	PKGS="$(PKGS)" bash scripts/test.sh $(ARGS)

demo:
	bash scripts/demo.sh

bench:
	bash scripts/bench/run.sh

fmt:
	find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -exec gofmt -w {} +

vet:
	$(GO) vet $(PKGS)
