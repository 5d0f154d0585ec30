# Targets that people and CI share. `make help` lists them.
GO ?= go
PKGS ?= ./...

.PHONY: help demo pipeline test test-race generate check-generated verify lint bench fuzz photos test-photos \
	test-rates

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-16s %s\n", $$1, $$2}'

demo: ## Run the inventory workflow on an embedded SQLite file.
	$(GO) run ./cmd/weft demo

pipeline: ## Run the image pipeline across processes: weft serve, four services, the committed photos.
	$(GO) run ./examples/imagepipeline/cmd/pipeline

test: ## Run the tests.
	$(GO) test $(PKGS)

test-race: ## Run the tests with the race detector, as CI does.
	$(GO) test -race -timeout 20m $(PKGS)

generate: ## Regenerate gen/ and docs/api-reference.md from proto/.
	rm -rf gen
	$(GO) tool buf generate

check-generated: ## Fail when gen/ or docs/api-reference.md differ from what proto/ generates.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) tool buf generate -o "$$tmp" && \
	diff -r gen "$$tmp/gen" && diff docs/api-reference.md "$$tmp/docs/api-reference.md" || \
	{ echo "generated code is stale: run make generate"; exit 1; }

verify: lint ## Everything lint checks.

lint: ## gofmt, go vet, staticcheck and buf lint clean; generated code current.
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool buf lint
	@$(MAKE) --no-print-directory check-generated

bench: ## Run the benchmarks once each.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./store/sqlite/ ./engine/

photos: ## Fetch the image pipeline's run-time photos into the user cache folder.
	$(GO) run ./examples/imagepipeline/cmd/photos

test-photos: ## Run the image pipeline's tests on every photo, without the race detector.
	$(GO) test -count=1 ./examples/imagepipeline/...

test-rates: ## Run the push dispatcher's rate test without the race detector, as CI does.
	$(GO) test -count=1 -run KeepsLimits ./push/

fuzz: ## Fuzz the definition parser for a minute.
	$(GO) test -run '^$$' -fuzz FuzzParseCompile -fuzztime 60s ./definition/
