# Switchboard's developer commands. The README's two are `make run` and
# `make test`; CI runs `make test` through .ci/run.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# Where `go install` puts tools: GOBIN, or GOPATH/bin when GOBIN is unset.
GOBIN := $(shell $(GO) env GOBIN)
ifeq ($(GOBIN),)
GOBIN := $(shell $(GO) env GOPATH)/bin
endif

# staticcheck is pinned: each release knows only the Go versions up to its
# own, and an unpinned one would change the lint verdict under our feet.
# 0.8.2 (2026.2.2) is tested with Go 1.26.
STATICCHECK_VERSION := 0.8.2
STATICCHECK         := $(GOBIN)/staticcheck

FUZZTIME ?= 1m
BENCH    ?= .

.PHONY: run build webclient test lint fuzz bench staticcheck clean

run: webclient
	$(GO) run ./cmd/switchboard

build: webclient
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/switchboard ./cmd/switchboard

# The softphone page, embedded in the binary from webclient/dist: npm ci
# when node_modules is missing or older than the lock file, then the
# bundle. Without npm the gateway still builds, and its page says how to
# add the softphone.
webclient:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "webclient: npm not found, building without the softphone page (install Node.js and npm, then make webclient)"; \
	else \
		cd webclient && \
		if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
			npm ci --no-audit --no-fund; \
		fi && \
		npm run --silent build; \
	fi

test:
	bash scripts/test.sh

lint: staticcheck
	@bash scripts/large-files.sh
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go') </dev/null); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Installs the pinned staticcheck when it is missing or another version.
staticcheck:
	@if ! "$(STATICCHECK)" -version 2>/dev/null | grep -qE '\(v?$(STATICCHECK_VERSION)\)'; then \
		echo "installing staticcheck $(STATICCHECK_VERSION) into $(GOBIN)"; \
		GOBIN="$(GOBIN)" $(GO) install honnef.co/go/tools/cmd/staticcheck@v$(STATICCHECK_VERSION); \
	fi

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./...

clean:
	rm -rf bin
