# sluice: see README.md. Everything here runs on a fresh machine with Go installed.
GO       ?= go
BIN      := bin/sluice
FUZZTIME ?= 8s
# package:FuzzTarget pairs run briefly by `make test` (corpus under testdata/fuzz).
FUZZ     := codec:FuzzParseRequest codec:FuzzValidatePacket codec:FuzzValidatePacketStrict codec:FuzzValidatePacketLevels codec:FuzzValidatePacketLevelsStrings codec:FuzzParseResponse sched:FuzzCredit sched:FuzzAffinity analyzer:FuzzBatchScanner spool:FuzzDecodeRecord

.PHONY: all build deps test unit unit-race unit-bench unit-deploy unit-norace fuzz lint run bench bench-peers soak scale scale-measure profile chaos clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X github.com/sluicelog/sluice/buildinfo.version=$$(git describe --tags --always --dirty 2>/dev/null) -X github.com/sluicelog/sluice/buildinfo.commit=$$(git rev-parse --short HEAD 2>/dev/null)" -o $(BIN) .

# staticcheck is pinned in tools/go.mod, a module of its own, so that neither the
# product's go.mod nor bench's lists what it is built from.
STATICCHECK = $(GO) tool -modfile=$(CURDIR)/tools/go.mod staticcheck

# The three modules: the product (root), bench/ (the harness and vegeta) and
# deploy/kubernetes/ (the manifests' test and k8s.io/api). go.mod must be tidy, so
# it lists exactly what the product uses.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) -C bench mod tidy -diff
	$(GO) -C deploy/kubernetes mod tidy -diff
	$(GO) vet ./...
	$(GO) -C bench vet ./...
	$(GO) -C deploy/kubernetes vet ./...
	$(STATICCHECK) ./...
	cd bench && $(STATICCHECK) ./...
	cd deploy/kubernetes && $(STATICCHECK) ./...

# Packages whose tests scale themselves down under the race detector or skip what
# it distorts (they have a race_off_test.go defining raceEnabled).
NORACE := $(patsubst %/,./%,$(sort $(dir $(wildcard */race_off_test.go */*/race_off_test.go))))

# Unit, integration and system tests of both modules under the race detector, and,
# without it and only in the packages above, the end-to-end tests at full size and
# the allocation counts. The three runs go side by side (output kept whole per
# run): most of these tests wait on the network and on timers, and one run alone
# left the two cores idle two thirds of the time. For the same reason the product's
# packages run four at a time (-p 4), so proxy's (the longest) starts at once.
unit:
	@$(MAKE) --no-print-directory -j3 --output-sync=target unit-race unit-bench unit-deploy unit-norace

unit-race:
	$(GO) test -race -count=1 -p 4 ./...

unit-bench:
	$(GO) -C bench test -race -count=1 ./...

# The Kubernetes manifests, decoded strictly into k8s.io/api's types and checked
# against each other, the Dockerfile and the settings (a module of its own).
unit-deploy:
	$(GO) -C deploy/kubernetes test -count=1 ./...

unit-norace:
	$(if $(NORACE),$(GO) test -count=1 -run 'EndToEnd|Allocs' $(NORACE),@echo "no package has a race_off_test.go")

# Each package's instrumented test binary is built once (go test -c -fuzz), not once
# per target, and the targets run in two lanes at once with one fuzzing worker each,
# so the two cores fuzz the whole time instead of waiting on builds and on
# go test's single-threaded start of every target. A target runs from its
# package's directory, so a failing input is saved under testdata/fuzz as go test
# saves it, and shares go test's fuzz cache. Minimizing a new interesting input may
# take up to a minute by default, during which a worker fuzzes nothing: a short run
# spent whole seconds of its 8 there, so it is capped. Longer: make fuzz FUZZTIME=5m.
# Go before 1.27 can end a target at its -fuzztime with a bare "context deadline
# exceeded" and no failing input (go.dev/issue/75804, a race in the coordinator's
# shutdown, seen here under load): that one ending counts as a pass; any failing
# input, panic or other error still fails.
FUZZBIN      := $(CURDIR)/bin/fuzz
FUZZMINIMIZE ?= 1s

fuzz:
	@set -e; mkdir -p $(FUZZBIN); \
	for pkg in $(sort $(foreach t,$(FUZZ),$(firstword $(subst :, ,$(t))))); do \
	  echo "build fuzz binary ./$$pkg"; $(GO) test -c -fuzz=. -o $(FUZZBIN)/$$pkg.test ./$$pkg; done; \
	cache=$$($(GO) env GOCACHE)/fuzz; \
	lane() { for t in "$$@"; do pkg=$${t%%:*}; fn=$${t##*:}; log=$(FUZZBIN)/$$fn.log; imp=$$($(GO) list ./$$pkg); \
	    if (cd $$pkg && $(FUZZBIN)/$$pkg.test -test.run='^$$' -test.fuzz="^$$fn$$" -test.fuzztime=$(FUZZTIME) \
	        -test.fuzzminimizetime=$(FUZZMINIMIZE) -test.parallel=1 -test.fuzzcachedir=$$cache/$$imp) >$$log 2>&1 \
	      && grep -q '^fuzz: elapsed' $$log; then \
	      echo "ok   fuzz $$pkg $$fn: $$(grep '^fuzz: elapsed' $$log | tail -n 1)"; \
	    elif grep -q '^fuzz: elapsed' $$log && grep -q 'context deadline exceeded' $$log \
	        && ! grep -q -i 'failing input\|panic:' $$log; then \
	      echo "ok   fuzz $$pkg $$fn: $$(grep '^fuzz: elapsed' $$log | tail -n 1) (ended by the fuzz coordinator's -fuzztime deadline race, go.dev/issue/75804, fixed in Go 1.27; no failing input)"; \
	    else echo "FAIL fuzz $$pkg $$fn"; cat $$log; return 1; fi; done; }; \
	i=0; l0=; l1=; for t in $(FUZZ); do if [ $$((i % 2)) = 0 ]; then l0="$$l0 $$t"; else l1="$$l1 $$t"; fi; i=$$((i + 1)); done; \
	lane $$l0 & p0=$$!; lane $$l1 & p1=$$!; r0=0; r1=0; wait $$p0 || r0=$$?; wait $$p1 || r1=$$?; \
	[ $$r0 = 0 ] && [ $$r1 = 0 ] && echo "fuzz: $(words $(FUZZ)) targets passed, $(FUZZTIME) each"

# What the tests run besides Go, as command:Debian-package pairs: gcc (and
# libc6-dev, checked by its stdio.h) for -race, git for the build's VCS stamp, real
# HTTP clients, a real Prometheus, ip for network namespaces, and a headless
# Chromium for the console's browser test. Only what is missing is installed, with
# apt-get (through sudo when not root).
DEPS := gcc:gcc git:git curl:curl python3:python3 wrk:wrk ab:apache2-utils \
        prometheus:prometheus promtool:prometheus ip:iproute2 chromium:chromium

deps:
	@need=; for pair in $(DEPS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $${pair%%:*} >/dev/null 2>&1 || need="$$need $${pair##*:}"; done; \
	[ -e /usr/include/stdio.h ] || need="$$need libc6-dev"; \
	need=$$(printf '%s\n' $$need | sort -u | tr '\n' ' '); \
	if [ -n "$${need% }" ]; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "make deps: installing $$need"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need; \
	fi

test: deps lint unit fuzz

# Side-by-side benchmark (see docs/benchmarks.md): distributor, bare gnet ceiling,
# nginx and the distributor over plain analyzers, driven by vegeta and wrk in
# alternating rounds. BENCH_DURATION, BENCH_ROUNDS, BENCH_CONNS, ... tune it. Results
# go to bench/out/; BENCH_RECORD=1 appends them to docs/benchmarks.md instead.
bench: build
	$(GO) -C bench build -trimpath -o $(CURDIR)/bin/sluice-bench ./cmd/sluice-bench
	./bin/sluice-bench -sluice $(BIN)

# Faults mid-load, each analyzer in its own network namespace (docs/chaos.md): runs
# as root, prints the table and writes docs/chaos.md. One scenario alone:
# go run ./chaos -run freeze. The short version (partition, freeze, memory) is
# TestChaosEndToEnd in make test.
chaos: deps
	$(GO) run ./chaos -out docs/chaos.md

# Overload at twice the measured capacity for SOAK_DURATION (default 60s): peak RSS
# against the configured bound, and 503 latency (docs/benchmarks.md, "Soak").
soak: build
	$(GO) -C bench build -trimpath -o $(CURDIR)/bin/sluice-soak ./cmd/sluice-soak
	./bin/sluice-soak -sluice $(BIN) -duration $${SOAK_DURATION:-60s}

# The peers make bench compares against when they are installed (Debian packages),
# and HAProxy for make scale.
bench-peers:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx wrk haproxy

# Two distributors behind HAProxy (deploy/haproxy/haproxy.cfg) sharing three
# analyzers (0.5/0.3/0.2), all bin/sluice on loopback ports from $SCALE_PORT
# (default 38080) up, and an emitter through HAProxy for SCALE_DURATION (20s): how
# the load divided between the replicas and how close the analyzers' global share
# of messages came to the weights; it fails when that distance passes the sum of
# the replicas' scheduler bounds or a replica did not account for every packet it
# accepted (docs/scaling.md). Then bench/cmd/sluice-scale -mode leave: two
# replicas under a flat-out emitter, one sent SIGTERM; it fails unless every packet
# answered 202 reached an analyzer (by packet_id) and the other replica took the
# traffic. Then -mode die: two replicas with a spool each, one killed with SIGKILL
# under load and restarted on its spool; it fails unless every packet answered 202
# reached an analyzer, the killed replica's backlog included. Logs go to bench/out/.
scale: build
	$(GO) -C bench build -trimpath -o $(CURDIR)/bin/sluice-scale ./cmd/sluice-scale
	@set -e; out=bench/out; mkdir -p $$out; PATH="$$PATH:/usr/sbin"; \
	command -v haproxy >/dev/null || { echo "make scale needs haproxy (make bench-peers installs it)"; exit 1; }; \
	base=$${SCALE_PORT:-38080}; pids=; trap 'rc=$$?; kill $$pids 2>/dev/null || true; wait 2>/dev/null || true; exit $$rc' EXIT; trap 'exit 130' INT TERM; \
	analyzers=; for aw in 1:0.5 2:0.3 3:0.2; do i=$${aw%%:*}; \
	  ./$(BIN) analyzer -port 127.0.0.1:$$((base+i)) >$$out/scale-analyzer-$$i.log 2>&1 & pids="$$pids $$!"; \
	  analyzers="$$analyzers$${analyzers:+,}http://127.0.0.1:$$((base+i))=$${aw#*:}"; done; \
	for i in 1 2 3; do for n in $$(seq 50); do curl -fs -o /dev/null http://127.0.0.1:$$((base+i))/health && break; sleep 0.1; done; done; \
	for d in 1 2; do \
	  LISTEN_ADDR=127.0.0.1:$$((base+10+d)) METRICS_ADDR=127.0.0.1:$$((base+20+d)) ANALYZERS=$$analyzers LOOPS=1 SHUTDOWN_TIMEOUT_SEC=5 \
	    ./$(BIN) distributor >$$out/scale-distributor-$$d.log 2>&1 & pids="$$pids $$!"; done; \
	SCALE_FRONT=127.0.0.1:$$base SCALE_D1=127.0.0.1:$$((base+11)) SCALE_D2=127.0.0.1:$$((base+12)) \
	  haproxy -f deploy/haproxy/haproxy.cfg -db >$$out/scale-haproxy.log 2>&1 & pids="$$pids $$!"; \
	for i in $$(seq 100); do up=0; for d in 1 2; do curl -fs -o /dev/null http://127.0.0.1:$$((base+10+d))/readyz && up=$$((up+1)); done; \
	  [ $$up = 2 ] && curl -fs -o /dev/null http://127.0.0.1:$$base/readyz && break; sleep 0.1; done; \
	curl -fs -o /dev/null http://127.0.0.1:$$base/readyz || { echo "not ready: see $$out/scale-*.log"; exit 1; }; \
	sleep 2; echo "emitter through HAProxy for $${SCALE_DURATION:-20s} ..."; \
	./$(BIN) emitter -target http://127.0.0.1:$$base -rate 0 -concurrency 32 -duration $${SCALE_DURATION:-20s} >$$out/scale-emitter.txt 2>&1 || true; \
	sleep 2; cat $$out/scale-emitter.txt; \
	for d in 1 2; do curl -fsS http://127.0.0.1:$$((base+20+d))/metrics | sed "s/^/distributor-$$d /"; done >$$out/scale-metrics.txt; \
	awk -v weights="0.5 0.3 0.2" 'BEGIN { split(weights, w, " ") } \
	  $$2 == "distributor_total_packets_total" { acc[$$1] = $$3 } \
	  $$2 == "distributor_delivered_total" { del[$$1] = $$3 } \
	  $$2 ~ /^distributor_dropped_total/ { drop[$$1] = $$3 } \
	  $$2 ~ /^distributor_delivered_messages_total\{analyzer="analyzer-[0-9]+"\}$$/ { a = $$2; sub(/.*analyzer-/, "", a); sub(/".*/, "", a); \
	    m[$$1, a] = $$3; tot[$$1] += $$3; g[a] += $$3; all += $$3 } \
	  END { for (d = 1; d <= 2; d++) { r = "distributor-" d; \
	      printf "%s: accepted %d packets, delivered %d, dropped %d; message shares", r, acc[r], del[r], drop[r]; \
	      for (a = 1; a <= 3; a++) printf " %.4f", (tot[r] ? m[r, a] / tot[r] : 0); printf "\n" } \
	    printf "both: %d messages; shares (weights 0.5 0.3 0.2)", all; worst = 0; \
	    for (a = 1; a <= 3; a++) { s = (all ? g[a] / all : 0); e = (s - w[a]) * all; if (e < 0) e = -e; if (e > worst) worst = e; printf " %.6f", s } \
	    bound = 2 * 1 * (1 + 1/2 + 1/3 - 1/3) * 5; \
	    printf "\nlargest distance from an exact split: %.1f messages; bound 2 replicas x 1 loop x (H_3 - 1/3) x 5 messages = %.1f (docs/scheduler.md)\n", worst, bound; \
	    bad = (worst > bound); for (d = 1; d <= 2; d++) { r = "distributor-" d; if (acc[r] == 0 || acc[r] != del[r] + drop[r]) { printf "%s: accepted %d != delivered %d + dropped %d\n", r, acc[r], del[r], drop[r]; bad = 1 } } \
	    exit bad }' $$out/scale-metrics.txt
	@echo "one replica leaves under load ..."; PATH="$$PATH:/usr/sbin" ./bin/sluice-scale -sluice $(BIN) -mode leave -duration $${SCALE_LEAVE_DURATION:-6s}
	@echo "one replica with a spool is killed under load and restarted ..."; PATH="$$PATH:/usr/sbin" ./bin/sluice-scale -sluice $(BIN) -mode die -duration $${SCALE_LEAVE_DURATION:-6s}

# Throughput with 1, 2 and 3 replicas behind HAProxy (3 alternating rounds,
# medians), the analyzer connections each holds, and the health-check load on the
# analyzers (docs/scaling.md, "Measured").
scale-measure: build
	$(GO) -C bench build -trimpath -o $(CURDIR)/bin/sluice-scale ./cmd/sluice-scale
	PATH="$$PATH:/usr/sbin" ./bin/sluice-scale -sluice $(BIN) -mode throughput -duration $${SCALE_DURATION:-8s}
	PATH="$$PATH:/usr/sbin" ./bin/sluice-scale -sluice $(BIN) -mode probes -duration $${SCALE_WINDOW:-10s}

run: build
	./$(BIN) demo $(ARGS)

# CPU (15 s) and heap profiles of the distributor under load: three analyzers, a
# distributor and a flat-out emitter, all bin/sluice on loopback ports from
# $PROFILE_PORT (default 37080) up. Profiles and logs go to bench/out/.
profile: build
	@set -e; out=bench/out; mkdir -p $$out; \
	base=$${PROFILE_PORT:-37080}; ingest=127.0.0.1:$$base; admin=127.0.0.1:$$((base+10)); \
	pids=; trap 'rc=$$?; kill $$pids 2>/dev/null || true; wait 2>/dev/null || true; exit $$rc' EXIT; trap 'exit 130' INT TERM; \
	analyzers=; for aw in 1:0.5 2:0.3 3:0.2; do i=$${aw%%:*}; \
	  ./$(BIN) analyzer -port 127.0.0.1:$$((base+i)) >$$out/profile-analyzer-$$i.log 2>&1 & pids="$$pids $$!"; \
	  analyzers="$$analyzers$${analyzers:+,}http://127.0.0.1:$$((base+i))=$${aw#*:}"; done; \
	PORT=$$base METRICS_ADDR=$$admin ANALYZERS=$$analyzers SHUTDOWN_TIMEOUT_SEC=1 ./$(BIN) distributor >$$out/profile-distributor.log 2>&1 & pids="$$pids $$!"; \
	for i in $$(seq 50); do curl -s -o /dev/null http://$$admin/health && break; sleep 0.1; done; \
	curl -s -o /dev/null http://$$admin/health || { echo "distributor did not start: see $$out/profile-distributor.log"; exit 1; }; \
	./$(BIN) emitter -target http://$$ingest -rate 0 -concurrency 32 -duration 30s >$$out/profile-emitter.txt 2>&1 & emitter=$$!; pids="$$pids $$emitter"; \
	sleep 3; echo "profiling the distributor for 15 s under load ..."; \
	curl -fsS -o $$out/cpu.pprof "http://$$admin/debug/pprof/profile?seconds=15"; \
	curl -fsS -o $$out/heap.pprof "http://$$admin/debug/pprof/heap"; \
	kill -INT $$emitter; wait $$emitter || true; \
	echo "== emitter"; cat $$out/profile-emitter.txt; \
	echo "== CPU"; $(GO) tool pprof -top -nodecount=30 $(BIN) $$out/cpu.pprof; \
	echo "== heap, allocated since start"; $(GO) tool pprof -top -sample_index=alloc_space -nodecount=15 $(BIN) $$out/heap.pprof; \
	echo "== heap, in use"; $(GO) tool pprof -top -sample_index=inuse_space -nodecount=15 $(BIN) $$out/heap.pprof; \
	echo "profiles: $$out/cpu.pprof $$out/heap.pprof (go tool pprof -http=: $(BIN) $$out/cpu.pprof)"

clean:
	rm -rf bin
