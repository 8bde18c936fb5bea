# walsnap — common tasks. `make test ARGS=-run=Foo PKGS=./archive/...`

GO ?= go
ARGS ?=
PKGS ?= ./...

# The binary: static (no cgo), without build paths or symbol tables, with its
# version and commit (walsnap --version, and recorded in manifests).
BIN ?= bin/walsnap
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

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/walsnap
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
