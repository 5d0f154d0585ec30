# Targets that people and CI share. `make help` lists them.
GO ?= go
PKGS ?= ./...

.PHONY: help demo test test-race verify lint bench fuzz photos test-photos

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-10s %s\n", $$1, $$2}'

demo: ## Run the inventory workflow on an embedded SQLite file.
	$(GO) run ./cmd/weft demo

test: ## Run the tests.
	$(GO) test $(PKGS)

test-race: ## Run the tests with the race detector, as CI does.
	$(GO) test -race -timeout 15m $(PKGS)

verify: lint ## Check formatting, vet and staticcheck.

lint: ## gofmt, go vet and staticcheck must be clean.
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

bench: ## Run the benchmarks once each.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./store/sqlite/ ./engine/

photos: ## Fetch the image pipeline's run-time photos into the user cache folder.
	$(GO) run ./examples/imagepipeline/cmd/photos

test-photos: ## Run the image pipeline's tests on every photo, without the race detector.
	$(GO) test -count=1 ./examples/imagepipeline/...

fuzz: ## Fuzz the definition parser for a minute.
	$(GO) test -run '^$$' -fuzz FuzzParseCompile -fuzztime 60s ./definition/
