# mesh build. `make test` is the command CI runs (see README.md).
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
GREMLINS_VERSION           := v0.6.0
GOBIN                      := $(shell go env GOPATH)/bin
# FUZZTIME is an execution count, not a duration: with a duration, Go 1.26's
# fuzz coordinator can fail a clean run with "context deadline exceeded" as
# the time runs out (golang/go#75804, fixed in Go 1.27).
FUZZTIME                   ?= 100000x
SOAKTIME                   ?= 10m

.PHONY: help all generate check-generated lint test static deploy-check faults soak fuzz bench bench-crdt mutate tools

all: test ## the same as make test

# help lists the targets, from the ## notes on their lines.
help: ## this list
	@awk -F':.*## ' '/^[a-z-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

tools: ## install the pinned protobuf and gRPC code generators
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# generate rewrites meshpb/*.pb.go with the pinned generators.
generate: tools ## regenerate meshpb/*.pb.go (needs protoc)
	PATH="$(GOBIN):$$PATH" protoc --proto_path=meshpb \
		--go_out=meshpb --go_opt=paths=source_relative \
		--go-grpc_out=meshpb --go-grpc_opt=paths=source_relative \
		meshpb/*.proto

# check-generated fails when the committed generated code is stale.
check-generated: generate ## fail if the committed generated code is stale
	@git diff --exit-code -- meshpb || { echo "meshpb: generated code is stale; run 'make generate' and commit"; exit 1; }

lint: ## go vet and staticcheck
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Packages run one at a time (-p 1): the property tests would otherwise
# compete for the 2 cores with the timing-sensitive peer tests. Building
# first keeps compilation parallel.
test: lint ## lint, then every test with -race (what CI runs, before faults)
	go test -race -count=1 -run '^$$' ./... >/dev/null
	go test -race -count=1 -p 1 ./...

# static builds the agent with no cgo, so with no libc and no dynamic
# loader: bin/mesh runs in a scratch or distroless image.
static: ## build bin/mesh with no cgo, for scratch images
	CGO_ENABLED=0 go build -trimpath -o bin/mesh ./cmd/mesh

# deploy-check tests deploy/, a module of its own so that the Kubernetes
# types stay out of mesh's go.mod: the manifests decode strictly and agree,
# the systemd unit verifies (where systemd-analyze exists), and the
# commands both run work against a static build (about 30 s, mostly the
# build).
deploy-check: ## test the systemd unit and Kubernetes manifests in deploy/
	cd deploy && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./... && go test -count=1 ./...

# faults runs the fault suite (test/faults, about 5 minutes): 7 agents,
# as root each in its own network namespace, through a partition, loss
# with jitter, a crash, a SIGSTOP, an agent that cannot be reached (for
# good, then on and off) and a 1-minute soak. Without namespaces
# it says so and falls back to loopback, where the partition fails.
faults: ## the fault suite: 7 agents in network namespaces (as root)
	MESH_FAULTS=1 go test -count=1 -v -timeout 15m -run 'TestFaults' ./test/faults

# soak runs only the soak scenario, for SOAKTIME.
soak: ## only the fault suite's soak, for SOAKTIME (default 10m)
	MESH_FAULTS=1 MESH_FAULTS_SOAK=$(SOAKTIME) go test -count=1 -v -timeout 40m -run 'TestFaults/soak' ./test/faults

fuzz: ## fuzz decode-then-merge and the exchange, FUZZTIME executions each
	go test ./property_test -run '^$$' -fuzz FuzzDecodeMerge -fuzztime $(FUZZTIME)
	go test ./property_test -run '^$$' -fuzz FuzzExchange -fuzztime $(FUZZTIME)

# bench runs the side-by-side benchmark against hashicorp/memberlist
# (bench/, its own module) in two runs, printing progress as it goes:
# - N = 16, 64 and 128 at P = 100 ms, 5 repetitions each, rewriting
#   bench/RESULTS.md, results.svg and results.json. The 2-minute loss
#   phases run after the repetitions, both systems in one window per size,
#   and N = 16 shares N = 64's window (each cluster in its own process):
#   under 10 minutes on 2 cores. BENCHFLAGS adds meshbench flags to this
#   run, e.g. BENCHFLAGS='-loss-together=' for a window per size.
# - N = 256 at P = 1 s, 5 repetitions, a 30 s steady-state window and no
#   loss phase, rewriting bench/p1s/: about 25 minutes, most of it
#   memberlist's joins.
bench: ## mesh beside hashicorp/memberlist; rewrites bench/RESULTS.md and bench/p1s/ (about 35 min)
	cd bench && go run ./cmd/meshbench -n 16,64,128 -reps 5 -loss-together 16+64 $(BENCHFLAGS)
	mkdir -p bench/p1s
	cd bench && go run ./cmd/meshbench -n 256 -period 1s -reps 5 -steady 30s -loss-duration 0 -closing closing-1s.md -out p1s

# bench-crdt runs the crdt package's benchmarks.
bench-crdt: ## the crdt package's benchmarks
	go test ./crdt -run '^$$' -bench . -benchmem

# mutate runs mutation testing over crdt/ (about 10 minutes on 2 cores) and
# fails below 85% efficacy. The generous timeout coefficient keeps slow,
# still-shrinking property runs from counting as timeouts.
mutate: ## mutation testing of crdt/ (about 10 min)
	GOFLAGS=-count=1 go run github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION) unleash --timeout-coefficient 30 --threshold-efficacy 85 ./crdt
