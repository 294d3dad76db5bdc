# layerfs — build and test. The tests mount real filesystems: run them as root.
GO ?= go
# Fuzzing runs a fixed number of inputs: a time limit makes "go test -fuzz" fail with
# "context deadline exceeded" when a busy machine slows a worker down.
FUZZTIME ?= 100000x

.PHONY: build test check unit integration fuzz clean

build:
	$(GO) build -o layerfs ./cmd/layerfs

# The whole suite, as CI runs it.
test: check unit fuzz integration

check:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -race ./whiteout/ ./copyup/ ./unionfs/ ./cmd/...

# -count=1: the tests build and run the binary themselves, which Go's test cache cannot see.
integration:
	$(GO) test -count=1 -race -timeout 15m ./integration/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseOptions$$' -fuzztime $(FUZZTIME) ./cmd/layerfs
	$(GO) test -run '^$$' -fuzz '^FuzzClassifyName$$' -fuzztime $(FUZZTIME) ./whiteout
	$(GO) test -run '^$$' -fuzz '^FuzzReadDirInfo$$' -fuzztime 5000x ./whiteout

clean:
	rm -f layerfs
