# walsnap — common tasks. `make test ARGS=-run=Foo PKGS=./archive/...`

GO ?= go
ARGS ?=
PKGS ?= ./...

.PHONY: build install setup test demo bench fmt vet

build:
	$(GO) build -o bin/walsnap ./cmd/walsnap

install:
	$(GO) install ./cmd/walsnap

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
