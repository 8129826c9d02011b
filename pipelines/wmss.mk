# wmss.mk: the WMSS method as Make targets (included by the Makefile).
#   make phase1 phase2 phase3   M0, M1 -> scores + selection -> WD-JT + eval
#   make baseline               equal-budget control: a 2nd SFT epoch from M1
#   make ablations              WD-DS only, WD-JT only, frozen weak, constant
#                               weak, lambda sweep
#   make report                 tables and plots of every arm that exists
# Variables: RUN (runs/$(RUN)), SEED, TASK, PRESET or MODEL (an HF Qwen3
# directory used as M0), SCALE=full|smoke, THREADS, LAMBDA.
# Every output is a file written atomically by its program; each recipe
# records command, input hashes and version in runs/$(RUN)/manifest.jsonl.

RUN ?= default
SEED ?= 1
TASK ?= mix
SCALE ?= full
THREADS ?= $(shell nproc)
LAMBDA ?= 0.5
MODEL ?=
LAMBDAS ?= 0.3 0.42 0.7

ifeq ($(SCALE),smoke)
PRESET ?= nano
N_TRAIN ?= 96
N_POOL ?= 96
N_TEST ?= 16
BATCH ?= 8
PRE_EPOCHS ?= 1
LR_PRE ?= 3e-3
LR ?= 2e-3
MAX_NEW ?= 40
else ifeq ($(SCALE),full)
PRESET ?= tiny
N_TRAIN ?= 4000
N_POOL ?= 4000
N_TEST ?= 300
BATCH ?= 16
PRE_EPOCHS ?= 1
LR_PRE ?= 2e-3
LR ?= 1e-3
MAX_NEW ?= 96
else
$(error SCALE must be full or smoke)
endif
SEQ ?= 384

R := runs/$(RUN)
WB := $(B)/bin
M0 := $(if $(MODEL),$(MODEL),$(R)/m0)
M0_FILE := $(if $(MODEL),$(wildcard $(MODEL)/model.safetensors $(MODEL)/model.safetensors.index.json),$(R)/m0/model.safetensors)
STEP = WDL_VERSION=$(VERSION) pipelines/step.sh $@ $(R)/manifest.jsonl "$^" --
TRAIN = $(WB)/wdl-train --threads $(THREADS) --seed $(SEED) --batch $(BATCH) --seq $(SEQ) -q
TOOLS = | $(BINS)

.PHONY: phase1 phase2 phase3 baseline ablations report pipeline-clean
.DELETE_ON_ERROR:

# ---- data: D and a disjoint pretraining pool from one generation, a test split
$(R)/data/all.jsonl.zst: $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data gen --task $(TASK) --n $$(( $(N_TRAIN) + $(N_POOL) )) --seed $(SEED) --split train -o $@
$(R)/data/train.jsonl.zst: $(R)/data/all.jsonl.zst
	$(STEP) sh -c 'zstd -dcq $< | awk "NR <= $(N_TRAIN)" | zstd -q -o $@.tmp && mv $@.tmp $@'
$(R)/data/pool.jsonl.zst: $(R)/data/all.jsonl.zst
	$(STEP) sh -c 'zstd -dcq $< | awk "NR > $(N_TRAIN)" | zstd -q -o $@.tmp && mv $@.tmp $@'
$(R)/data/test.jsonl.zst: $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data gen --task $(TASK) --n $(N_TEST) --seed $(SEED) --split test -o $@

# ---- phase 1: M0 (a weak base: short full-text pretraining on the pool), M1 = SFT(M0, D, 1 epoch)
$(R)/init/model.safetensors: $(TOOLS)
	@mkdir -p $(R)
	$(STEP) $(WB)/wdl-init --preset $(PRESET) --seed $(SEED) -o $(@D)
$(R)/m0/model.safetensors: $(R)/init/model.safetensors $(R)/data/pool.jsonl.zst
	@mkdir -p $(R)/logs
	$(STEP) $(TRAIN) --lm -m $(R)/init -o $(@D) --epochs $(PRE_EPOCHS) --lr $(LR_PRE) --log $(R)/logs/m0.jsonl $(R)/data/pool.jsonl.zst
$(R)/m1/model.safetensors: $(M0_FILE) $(R)/data/train.jsonl.zst
	@mkdir -p $(R)/logs
	$(STEP) $(TRAIN) -m $(M0) -o $(@D) --epochs 1 --lr $(LR) --log $(R)/logs/m1.jsonl $(R)/data/train.jsonl.zst
phase1: deps $(R)/m1/model.safetensors

# ---- phase 2: entropies under weak (M0) and strong (M1), then WD-DS selection
# (one scorer after the other: two in a pipe would oversubscribe the cores)
$(R)/scored.jsonl.zst: $(M0_FILE) $(R)/m1/model.safetensors $(R)/data/train.jsonl.zst
	$(STEP) sh -c '$(WB)/wdl-score -m $(M0) --field h_weak --threads $(THREADS) -o $(R)/scored_weak.jsonl.zst $(R)/data/train.jsonl.zst && \
	  $(WB)/wdl-score -m $(R)/m1 --field h_strong --threads $(THREADS) -o $@ $(R)/scored_weak.jsonl.zst && rm $(R)/scored_weak.jsonl.zst'
$(R)/selected.jsonl.zst: $(R)/scored.jsonl.zst
	$(STEP) $(WB)/wdl-select --weak-field h_weak --strong-field h_strong --seed $(SEED) --buckets 3 \
	  --stats $(R)/select.stats.json -o $@ $<
phase2: deps $(R)/selected.jsonl.zst

# ---- phase 3 and the other arms: one more pass from M1, same lr schedule
define ARM
$(R)/$(1)/model.safetensors: $(R)/m1/model.safetensors $(M0_FILE) $(3)
	@mkdir -p $(R)/logs
	$$(STEP) $$(TRAIN) -m $(R)/m1 -o $(R)/$(1) --epochs 1 --lr $$(LR) $(2) --log $(R)/logs/$(1).jsonl $(3)
endef
$(eval $(call ARM,wmss,--weak $(M0) --lambda $(LAMBDA),$(R)/selected.jsonl.zst))
$(eval $(call ARM,sft2,,$(R)/data/train.jsonl.zst))
$(eval $(call ARM,wdds_only,,$(R)/selected.jsonl.zst))
$(eval $(call ARM,wdjt_only,--weak $(M0) --lambda $(LAMBDA),$(R)/data/train.jsonl.zst))
$(eval $(call ARM,frozen_weak,--weak $(M0) --lambda $(LAMBDA) --freeze-weak,$(R)/selected.jsonl.zst))
$(eval $(call ARM,const_weak,--weak-constant --lambda $(LAMBDA),$(R)/selected.jsonl.zst))
$(foreach l,$(LAMBDAS),$(eval $(call ARM,lambda$(l),--weak $(M0) --lambda $(l),$(R)/selected.jsonl.zst)))

# ---- evaluation: greedy decoding on the test split
$(R)/eval/%.json: $(R)/%/model.safetensors $(R)/data/test.jsonl.zst
	@mkdir -p $(R)/eval $(R)/preds
	$(STEP) sh -c '$(WB)/wdl-eval -m $(R)/$* --threads $(THREADS) --max-new $(MAX_NEW) \
	  --preds $(R)/preds/$*.jsonl.zst $(R)/data/test.jsonl.zst > $@.tmp && mv $@.tmp $@'
$(R)/eval/m0.json: $(M0_FILE) $(R)/data/test.jsonl.zst
	@mkdir -p $(R)/eval $(R)/preds
	$(STEP) sh -c '$(WB)/wdl-eval -m $(M0) --threads $(THREADS) --max-new $(MAX_NEW) \
	  --preds $(R)/preds/m0.jsonl.zst $(R)/data/test.jsonl.zst > $@.tmp && mv $@.tmp $@'

phase3: deps $(R)/eval/wmss.json $(R)/eval/m1.json $(R)/eval/m0.json
	@echo "== $(R): evaluation (greedy, $(N_TEST) test problems)"
	@for a in m0 m1 wmss; do printf '%-6s ' $$a; jq -c '{accuracy, n, tasks: (.tasks | map_values(.accuracy))}' $(R)/eval/$$a.json; done
	@$(WB)/wdl-report --out $(R)/report $(R) > /dev/null && echo "report: $(R)/report/report.md"

baseline: deps $(R)/eval/sft2.json $(R)/eval/m1.json
	@for a in m1 sft2; do printf '%-6s ' $$a; jq -c '{accuracy, n}' $(R)/eval/$$a.json; done

ablations: deps $(addprefix $(R)/eval/,wdds_only.json wdjt_only.json frozen_weak.json const_weak.json $(foreach l,$(LAMBDAS),lambda$(l).json))

report:
	$(WB)/wdl-report --out $(R)/report $(R)

pipeline-clean:
	rm -rf $(R)
