# Isthmus — developer entry points. `make setup && make run` on a fresh machine; `make test` in CI.
# `make setup` installs what `make run` needs (the runtime packages, no build from source, no tool);
# the targets that need more install it themselves, idempotently (a no-op in a second or so once done):
#   dev-setup   the `dev` dependency group (pytest, ruff, mypy, grpcio-tools, the benchmark harnesses...)
#   test-setup  dev + the `llama` group (llama-cpp-python: tools/llama.sh builds its wheel once per user
#               cache) + the test tiers' tools (tools/install-tools.sh: helm, checkov, kube-apiserver,
#               Kafka jars, Weaviate, Hydra, grpcurl, Debian's chromium); both caches in ~/.cache/isthmus-tools
SHELL := /bin/bash
# uv from PATH, else a project-local copy that `make setup` installs from PyPI
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)
PY := .venv/bin/python
ISTHMUS := .venv/bin/isthmus

.PHONY: setup run test test-fast lint protos protos-check bench bench-agents bench-scale bench-scale-weaviate bench-guardrails bench-chunking bench-defaults bench-judges train-injection eval-cranfield clean kafka-up kafka-down kafka-cluster-up kafka-cluster-down regions-up regions-down weaviate-up weaviate-down hydra-up hydra-down tf-check kube-up kube-down train-grounding image cluster-up cluster-down bench-cluster

# every sync is from uv.lock (--frozen); --inexact: a smaller sync never removes what a larger one
# installed (`make setup` after `make test` keeps the test packages). llama-cpp-python is never synced
# by uv (it would build llama.cpp whenever uv's cache dropped its wheel): tools/llama.sh installs it.
SYNC := $(UV) sync --all-packages --frozen
LLAMA := --group llama --no-install-package llama-cpp-python

.PHONY: uv dev-setup test-setup
setup: uv ## create .venv with the runtime packages from the lock file (what `make run` needs; offline at run time afterwards)
	$(SYNC) --no-dev --inexact
	@echo "setup done: run 'make run' (or .venv/bin/isthmus --help); 'make test' installs the test packages and tools"

uv: ## uv from PATH, else a project-local copy from PyPI (.tools/uv)
	@[ -x "$(UV)" ] || { python3 -m venv .tools/uv && .tools/uv/bin/pip install --quiet "uv==0.13.9"; }

dev-setup: uv ## the runtime and the dev group: tests, linters, stub generator, benchmark harnesses
	$(SYNC) --inexact

test-setup: uv ## everything the tests need: dev + llama groups (exact sync) and the test tiers' tools
	$(SYNC) $(LLAMA)
	UV=$(UV) bash tools/llama.sh
	bash tools/install-tools.sh

run: ## all six services in one process: in-process bus, embedded store, bundled models
	$(ISTHMUS) run --target all

test: test-setup protos-check lint eval-gate ## everything CI runs (installs what the tests need first); the cluster tier runs last, on its own
	$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/cluster
	$(MAKE) --no-print-directory test-cluster

.PHONY: test-cluster
test-cluster: ## the cluster tier alone: the image built from the Dockerfile, the charts installed on a real single-node Kubernetes (started and stopped here unless `make cluster-up` runs one)
	$(PY) -m pytest -q -p no:cacheprovider tests/cluster

test-fast: dev-setup ## unit tests only (no real models, no platform)
	$(PY) -m pytest -q -m "not slow"

# every service package and the CLI (services/<name>/isthmus_<name>), type-checked together
PACKAGES := $(filter-out %.egg-info,$(wildcard services/*/isthmus_*))

lint: dev-setup ## ruff, import contracts, mypy --strict over every service, the CLI and the operator
	.venv/bin/ruff check services benchmarks tests tools conftest.py
	.venv/bin/ruff format --check services benchmarks tests tools conftest.py
	.venv/bin/lint-imports
	.venv/bin/ruff check operators
	.venv/bin/ruff format --check operators
	MYPYPATH=services/core:protos/python .venv/bin/mypy --strict operators/isthmus_operator
	MYPYPATH=protos/python .venv/bin/mypy --strict $(PACKAGES)

protos: dev-setup ## regenerate Python stubs and typings from protos/
	PYTHON=$(PY) bash tools/gen_protos.sh protos/python

.PHONY: asyncapi
asyncapi: ## regenerate docs/asyncapi.yaml (the AsyncAPI 3.0 document of every topic) from the event contracts
	$(PY) -m isthmus_core.contracts.asyncapi --output docs/asyncapi.yaml

protos-check: dev-setup ## fail if the committed stubs drift from protos/
	@tmp=$$(mktemp -d) && PYTHON=$(PY) bash tools/gen_protos.sh $$tmp >/dev/null 2>&1 && \
	  diff -r -q protos/python/isthmus $$tmp/isthmus && echo "protos: stubs match" ; \
	  rc=$$?; rm -rf $$tmp; exit $$rc

bench: dev-setup ## embedding throughput vs raw ONNX Runtime; all-in-one Ask latency unloaded and at 10, 20, 50 req/s offered
	$(PY) -m isthmus_bench.embedding
	$(PY) -m isthmus_bench.capacity --rates 10,20,50 --duration 10

bench-agents: uv ## agent graphs on compound questions: rag vs plan-execute recall@20/nDCG@20 on cranfield, cisi, scifact; cache hits; cost vs llama.cpp's counts (~20 min)
	$(SYNC) --inexact $(LLAMA)
	UV=$(UV) bash tools/llama.sh
	$(PY) -m isthmus_bench.agents

bench-guardrails: dev-setup ## guardrail accuracy, latency and cost on public data: injection detectors side by side (rules, model, rules+model, prompt-guardrail); PII recall/precision per entity on a multi-locale synthetic set (Presidio before vs the default); grounding model vs the lexical check on SciFact claims; ingest scan cost and false positives on documents
	$(PY) -m isthmus_bench.guardrails.injection
	$(PY) -m isthmus_bench.guardrails.ingest
	$(PY) -m isthmus_bench.guardrails.pii
	$(PY) -m isthmus_bench.guardrails.grounding --datasets ../shared/datasets

bench-chunking: dev-setup ## chunking strategies side by side (token baseline, sentence, markdown, semantic, parent-child): nDCG@10 and ingest chunks/s on cranfield, cisi, scifact
	$(PY) -m isthmus_bench.chunking --datasets-dir ../shared/datasets

bench-defaults: dev-setup ## hybrid defaults chosen leave-one-dataset-out: fusions (RRF, relative-score, DBSF, z-score, convex) and PRF / multi-query beside today's default and plain RRF, nDCG@10 per dataset with the spread, on cranfield, cisi, scifact (~30 min first run, lists cached)
	nice -n 19 $(PY) -m isthmus_bench.defaults --datasets-dir ../shared/datasets

bench-judges: uv ## faithfulness judges vs gold labels and each other on 120 SciFact pairs (supported / contradicted / unrelated abstract): our offline grounding model, our LLM judge and RAGAS Faithfulness, both over SmolLM2-135M on llama.cpp; accuracy, AUC, failure rates, Cohen's kappa (slow on 2 cores: SAMPLES=20 for a look)
	$(SYNC) --inexact $(LLAMA) --group ragas
	UV=$(UV) bash tools/llama.sh
	$(PY) -m isthmus_bench.judges --datasets ../shared/datasets --samples $(or $(SAMPLES),120)

train-injection: dev-setup ## refit the learned injection detector (S-Labs train split; operating points on validation) into services/guardrail/isthmus_guardrail/models/injection (~5 min)
	$(PY) -m isthmus_guardrail.training.injection

bench-scale: dev-setup ## embedded store at 1M synthetic chunks: hybrid/dense/bm25 latency, recall@10 vs exact, RSS (~25 min)
	$(PY) -m isthmus_bench.scale --store embedded --chunks 1000000 --queries 1000

bench-scale-weaviate: dev-setup ## the same at 100k chunks on the Weaviate from `make weaviate-up`
	$(PY) -m isthmus_bench.scale --store weaviate --chunks 100000 --queries 1000

train-grounding: dev-setup ## retrain the grounding (NLI) head on synthetic Cranfield + CISI pairs -> services/guardrail/isthmus_guardrail/models/grounding (~3 min)
	$(PY) -m isthmus_guardrail.training.grounding --datasets ../shared/datasets


kafka-up: ## a local single-node Apache Kafka on 127.0.0.1:19092 (Java 17 + Maven)
	bash tests/infra/kafka.sh up

kafka-down:
	bash tests/infra/kafka.sh down

weaviate-up: ## a local Weaviate 1.32.4 on 127.0.0.1:18080 (gRPC 18081), built once with Go
	bash tests/infra/weaviate.sh up

weaviate-down:
	bash tests/infra/weaviate.sh down

hydra-up: ## a local Ory Hydra v2.3.0 OAuth2/OIDC server on 127.0.0.1:24444 (admin :24445), built once with Go; writes .tools/hydra/env
	bash tests/infra/hydra.sh up

hydra-down: ## stop it (its clients and keys live in memory and are gone)
	bash tests/infra/hydra.sh down

.PHONY: console-screenshots
console-screenshots: dev-setup ## docs/console/<page>.png: each console page in Chromium (Playwright) on a platform started for it (tools/console-screenshots.py)
	bash tools/tools.d/chromium.sh
	$(PY) tools/console-screenshots.py

kafka-cluster-up: ## three Kafka nodes on 127.0.0.1:29092,29094,29096 (failover drills)
	bash tests/infra/kafka-cluster.sh up

kafka-cluster-down:
	bash tests/infra/kafka-cluster.sh down

regions-up: ## two local regions a and b (Kafka + MirrorMaker 2 + platform each); writes .tools/regions/regions.toml
	bash tests/infra/regions.sh up

regions-down:
	bash tests/infra/regions.sh down

tf-check: dev-setup ## parse every terraform file (python-hcl2) and run checkov on terraform/
	bash tools/tools.d/checkov.sh
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy/test_terraform_structure.py tests/deploy/test_terraform_checkov.py

kube-up: ## a real kube-apiserver + etcd on loopback (operator tests); writes a kubeconfig
	bash tools/tools.d/kube-apiserver.sh
	bash tests/infra/kube.sh up

kube-down:
	bash tests/infra/kube.sh down

image: ## the service image from the Dockerfile, without a Docker daemon (buildah, debootstrap base); imported into the cluster node when it runs; prints its reference
	bash tools/tools.d/kube-node.sh
	bash tools/image.sh

cluster-up: ## a real single-node Kubernetes v1.34.2 here (kubelet on containerd, CNI bridge, kube-proxy, CoreDNS, local-path volumes); prints the admin kubeconfig
	bash tools/tools.d/kube-apiserver.sh
	bash tools/tools.d/kube-node.sh
	bash tests/infra/cluster.sh up

bench-cluster: dev-setup ## pod faults on the cluster tier's node (run `make cluster-up` first): Ask traffic through the all-in-one Service, a baseline beside a helm upgrade (the Recreate gap), a crash (SIGKILL) and a pod delete: errors, p50/p99, longest gap, recovery (~5 min)
	$(PY) -m isthmus_bench.cluster

cluster-down: ## stop it and remove its pods and state (imported images stay cached)
	bash tests/infra/cluster.sh down

eval-cranfield:
	$(ISTHMUS) eval ../shared/datasets/cranfield --standalone

# The project's own retrieval-quality gate (run by `make test`): a deterministic slice of Cranfield (50
# judged queries, their judged documents and 150 others), cut at run time from ../shared (the collection's
# terms do not clearly allow redistributing it), evaluated on a throwaway platform and compared with the
# committed baseline; the reports land in benchmarks/eval-gate/out/ (git-ignored). Deterministic: the same
# code gives the same scores, so any drop is the change's. Rewrite the baseline for intentional changes
# (eval-gate-baseline; it keeps no text of the collection, only scores, ids and judgments).
EVAL_GATE := benchmarks/eval-gate
EVAL_GATE_DATA := $(EVAL_GATE)/out/cranfield-gate
EVAL_GATE_SLICE := $(PY) -m isthmus_bench.eval_gate slice --source ../shared/datasets/cranfield --out $(EVAL_GATE_DATA) --queries 50 --distractors 150
EVAL_GATE_RUN := $(ISTHMUS) eval $(EVAL_GATE_DATA) --standalone --modes bm25,hybrid --html $(EVAL_GATE)/out/report.html
EVAL_GATE_MAX_DROP := --max-drop ndcg_at_10=0.01 --max-drop recall_at_100=0.01 --max-drop map_at_100=0.01

.PHONY: eval-gate eval-gate-baseline
eval-gate: dev-setup ## retrieval-quality gate: fail if nDCG@10, recall@100 or MAP@100 (bm25, hybrid) drop > 0.01 below benchmarks/eval-gate/baseline.json
	$(EVAL_GATE_SLICE)
	$(EVAL_GATE_RUN) --output $(EVAL_GATE)/out/report.json --baseline $(EVAL_GATE)/baseline.json $(EVAL_GATE_MAX_DROP)

eval-gate-baseline: dev-setup ## rewrite benchmarks/eval-gate/baseline.json from this checkout (after an intentional change; commit it)
	$(EVAL_GATE_SLICE)
	$(EVAL_GATE_RUN) --output $(EVAL_GATE)/baseline.json
	$(PY) -m isthmus_bench.eval_gate strip $(EVAL_GATE)/baseline.json

clean:
	rm -rf .venv .isthmus-data .pytest_cache .mypy_cache .ruff_cache
