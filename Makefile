# layerfs — build and test. The tests mount real filesystems: run them as root.
GO ?= go
# Fuzzing runs a fixed number of inputs: a time limit makes "go test -fuzz" fail with
# "context deadline exceeded" when a busy machine slows a worker down.
FUZZTIME ?= 100000x

.PHONY: build setup test check unit integration integration-uring fuzz soak clean

# One static binary (CGO_ENABLED=0: go-fuse imports net and os/user, which otherwise link
# libc), named by the source revision it was built from (-buildvcs=auto overrides a
# GOFLAGS=-buildvcs=false in the environment).
BIN ?= layerfs
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN) ./cmd/layerfs

# What the tests need on a fresh Debian/Ubuntu machine, as root: the packages, the
# unprivileged user the rootless tests run as (with subordinate ids), /dev/fuse open to users.
setup:
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 attr acl make podman buildah runc \
		busybox-static uidmap fuse-overlayfs chromium >/dev/null
	id layerfs-test >/dev/null 2>&1 || useradd --create-home layerfs-test
	grep -q '^layerfs-test:' /etc/subuid 2>/dev/null || usermod --add-subuids 165536-231071 layerfs-test
	grep -q '^layerfs-test:' /etc/subgid 2>/dev/null || usermod --add-subgids 165536-231071 layerfs-test
	chmod 0666 /dev/fuse

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
# Tests that skip say why in SKIPPED, printed at the end: a passing go test prints only "ok".
SKIPPED = $(CURDIR)/.skipped-tests
INTEGRATION = env LAYERFS_SKIPPED=$(SKIPPED) LAYERFS_DIFF_SEEDS=10 LAYERFS_DIFF_PARALLEL=2 $(GO) test -count=1 -race -timeout 15m ./integration/
integration:
	@rm -f $(SKIPPED)
	integration/with-transport.sh devfuse $(INTEGRATION)
	@if [ -s $(SKIPPED) ]; then echo "integration (/dev/fuse): skipped:"; sed 's/^/  /' $(SKIPPED); fi; rm -f $(SKIPPED)

integration-uring:
	@rm -f $(SKIPPED)
	integration/with-transport.sh uring $(INTEGRATION)
	@if [ -s $(SKIPPED) ]; then echo "integration (io_uring): skipped:"; sed 's/^/  /' $(SKIPPED); fi; rm -f $(SKIPPED)

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
