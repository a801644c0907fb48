# Portreeve. `make help` lists the targets.
SHELL := /usr/bin/env bash -o errexit -o pipefail -o nounset
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit, for `portreeve version` and portreeve_build_info (hack/image builds with -buildvcs=false).
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
BIN := bin/portreeve
IMAGE ?= portreeve/portreeve
ARCH ?= $(shell go env GOARCH)
FUZZTIME ?= 10m
# Packages that need no control plane.
UNIT_PKGS := ./cmd/... ./policies/... ./webhook/... ./certs/... ./report/...

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/portreeve (static)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/portreeve

.PHONY: image
image: ## Build the OCI image without a Docker engine: _output/image/oci (OCI layout) and portreeve.tar
	cd hack/image && go run . --out $(CURDIR)/_output/image --tag $(IMAGE):$(VERSION) --arch $(ARCH) --ldflags '$(LDFLAGS)'

.PHONY: test-image
test-image: ## Build the image and check it: one layer with the static binary, non-root user, the chart's entrypoint
	cd hack/image && go vet ./... && go test -count=1 ./...

.PHONY: tools
tools: ## Build kube-apiserver, etcd, kubectl, kube-controller-manager and helm from Go modules (cached)
	hack/tools.sh

.PHONY: fmt
fmt: ## Format Go and Rego
	gofmt -w cmd webhook policies certs report test hack
	go run ./hack/regofmt -w policies

.PHONY: lint
lint: ## gofmt, go vet, opa fmt and opa check --strict (through the Go SDK)
	@unformatted=$$(gofmt -l cmd webhook policies certs report test hack); \
	  if [[ -n "$$unformatted" ]]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	go test ./policies/ -count=1 -run 'TestRegoFormat|TestRegoStrict'

.PHONY: test-unit
test-unit: ## Unit, Rego and handler tests (the fuzzers' seed corpora run as plain tests)
	go test -race -count=1 $(UNIT_PKGS)
	go run ./cmd/portreeve test policies/testdata/cases examples/lb-internal

# Fuzzing is a habit, not a gate: make test runs the seed corpora only, so that a fuzz cache
# gathered on this machine can never make it flaky (its baseline coverage alone can outlast -fuzztime).
.PHONY: fuzz
fuzz: ## Run every fuzzer for FUZZTIME each (default 10m; outside make test)
	go test -run XXX -fuzz FuzzReview -fuzztime $(FUZZTIME) ./webhook/review/
	go test -run XXX -fuzz FuzzHandler -fuzztime $(FUZZTIME) ./webhook/
	go test -run XXX -fuzz FuzzParseConfig -fuzztime $(FUZZTIME) ./policies/

.PHONY: test-e2e
test-e2e: tools build ## Tests against a real kube-apiserver (and kubectl, helm)
	PORTREEVE_REQUIRE_TOOLS=1 PORTREEVE_BINARY=$(CURDIR)/$(BIN) go test -p 1 -count=1 -timeout 40m -v $$(go list ./test/... | grep -v -e /test/node -e /test/incluster) 2>&1 | \
	  tee /tmp/portreeve-e2e.log | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|PASS|FAIL|ok|panic)' ; \
	  status=$${PIPESTATUS[0]}; \
	  if [[ $$status -ne 0 ]]; then echo "--- failures (full log: /tmp/portreeve-e2e.log) ---"; \
	    grep -v '^\s*{' /tmp/portreeve-e2e.log | grep -B3 -A25 -E -- '--- FAIL|^panic' | head -400; fi; \
	  test $$status -eq 0

PAUSE_IMAGE ?= localhost/portreeve/pause:test

.PHONY: pause-image
pause-image: ## Build the sandbox image of the in-cluster tests (hack/pause, through hack/image): _output/pause
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) go build -trimpath -ldflags '-s -w' -o _output/pause/pause ./hack/pause
	cd hack/image && go run . --binary $(CURDIR)/_output/pause/pause --out $(CURDIR)/_output/pause --tag $(PAUSE_IMAGE) --arch $(ARCH)

.PHONY: tools-node
tools-node: ## Build the tools plus the node binaries: kubelet, kube-scheduler, kube-proxy (cached)
	hack/tools.sh node

.PHONY: test-node
test-node: tools-node image pause-image ## In-cluster tests on a real node (root; changes the host, undoes it, checks it)
	PORTREEVE_REQUIRE_TOOLS=1 go test -p 1 -count=1 -timeout 40m -v ./test/node/... ./test/incluster/ 2>&1 | \
	  tee /tmp/portreeve-node.log | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|PASS|FAIL|ok|panic|node:)|^ +[a-z_]+\.go:[0-9]+: (node|availability|timing):' ; \
	  test $${PIPESTATUS[0]} -eq 0

.PHONY: node-clean
node-clean: ## Tear down a test node left behind by a killed test run, and check the host
	go run ./test/node/cmd/node-clean

.PHONY: test
test: lint test-unit test-image test-e2e test-node ## Everything: lint, unit, Rego, fuzz seed corpora, end-to-end and in-cluster tests

.PHONY: bench
bench: bench-memory ## Benchmarks of the engine and the handler, after bench-memory
	go test -run XXX -bench . -benchmem ./policies/ ./webhook/...

# A benchmark, not a test, so that make test never runs it (it takes minutes).
.PHONY: bench-memory
bench-memory: tools build ## serve's RSS with 10,000 Pods, 5,000 Services, 2,000 Ingresses: audit off, and at the audit's peak (budget 128 MiB)
	PORTREEVE_REQUIRE_TOOLS=1 PORTREEVE_BINARY=$(CURDIR)/$(BIN) go test -count=1 -timeout 30m -run XXX -bench AuditMemory -benchtime 1x -v ./test/e2e/

.PHONY: demo
demo: tools build $(if $(filter 1,$(NODE)),tools-node image pause-image,) ## Run the seed cases through a local control plane (KEEP=1 leaves it running; NODE=1: the chart on a real node, as root)
	go run ./hack/demo $(if $(filter 1,$(KEEP)),--keep,) $(if $(filter 1,$(NODE)),--node,) --portreeve $(CURDIR)/$(BIN) --tools "$$(hack/tools.sh bindir)"

.PHONY: clean
clean: ## Remove build output (not the tools cache)
	rm -rf bin _output
