# sluice: see README.md. Everything here runs on a fresh machine with Go installed.
GO       ?= go
BIN      := bin/sluice
FUZZTIME ?= 8s
# package:FuzzTarget pairs run briefly by `make test` (corpus under testdata/fuzz).
FUZZ     := codec:FuzzParseRequest codec:FuzzValidatePacket codec:FuzzParseResponse sched:FuzzCredit

.PHONY: all build test unit fuzz lint run bench bench-peers profile clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) .

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test ./$$pkg -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME); done

test: lint unit fuzz

run: build
	./$(BIN) demo

clean:
	rm -rf bin
