# layerfs — build and test. The tests mount real filesystems: run them as root.
GO ?= go
# Fuzzing runs a fixed number of inputs: a time limit makes "go test -fuzz" fail with
# "context deadline exceeded" when a busy machine slows a worker down.
FUZZTIME ?= 100000x

.PHONY: build test check unit integration integration-uring fuzz soak clean

build:
	$(GO) build -o layerfs ./cmd/layerfs

# The whole suite, as CI runs it: the integration tests once over /dev/fuse and once over
# io_uring (the kernel's switch flipped for the run and put back).
test: check unit fuzz integration integration-uring

check:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -race ./whiteout/ ./copyup/ ./unionfs/... ./cmd/...

# -count=1: the tests build and run the binary themselves, which Go's test cache cannot see.
# The differential harness runs 10 seeds, two at a time.
INTEGRATION = env LAYERFS_DIFF_SEEDS=10 LAYERFS_DIFF_PARALLEL=2 $(GO) test -count=1 -race -timeout 15m ./integration/
integration:
	integration/with-transport.sh devfuse $(INTEGRATION)

integration-uring:
	integration/with-transport.sh uring $(INTEGRATION)

# A soak: the differential harness on new seeds, PARALLEL at a time, for DURATION; then a
# long data-integrity run.
DURATION ?= 30m
PARALLEL ?= 4
soak:
	LAYERFS_DIFF_DURATION=$(DURATION) LAYERFS_DIFF_PARALLEL=$(PARALLEL) LAYERFS_DIFF_OPS=1000 \
		$(GO) test -count=1 -race -timeout 0 -run 'TestDifferential' ./integration/
	LAYERFS_FSX_OPS=200000 $(GO) test -count=1 -timeout 0 -run TestDataIntegrity ./integration/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseOptions$$' -fuzztime $(FUZZTIME) ./cmd/layerfs
	$(GO) test -run '^$$' -fuzz '^FuzzClassifyName$$' -fuzztime $(FUZZTIME) ./whiteout
	$(GO) test -run '^$$' -fuzz '^FuzzReadDirInfo$$' -fuzztime 5000x ./whiteout

clean:
	rm -f layerfs
