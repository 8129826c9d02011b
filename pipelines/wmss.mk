# wmss.mk: the WMSS method as Make targets (included by the Makefile).
#   make phase1 phase2 phase3   M0, M1 -> scores + selection -> WD-JT, the
#                               equal-budget control, evaluation, verdict
#   make baseline               the equal-budget control alone (sft2)
#   make baselines              the paper's other baseline at the same budget:
#                               NEFTune (noisy-embedding SFT), beside sft2
#   make ablations              WD-DS only, WD-JT only, frozen weak, constant
#                               weak, lambda sweep, weak too close, separate
#                               clipping
#   make curve                  M1's saturation curve (accuracy, p_target per epoch)
#   make experiment SEEDS=".."  all of it per seed, one paired verdict
#                               (ABLATIONS=1, BASELINES=1: those arms too)
#   make report                 tables and plots of every arm that exists
# Variables: RUN (runs/$(RUN)), SEED, TASK, PRESET or MODEL (an HF Qwen3
# directory used as M0), TRAIN/TEST/POOL (your own records), FORMAT,
# SCALE=full|smoke, THREADS, LAMBDA, NEFTUNE_ALPHA, PRECISION=fp32|fp32-openblas|bf16; RANKS and MPIRUN
# (below) spread the heavy steps over MPI ranks.
# Every output is a file written atomically by its program; each recipe
# records command, input hashes and version in runs/$(RUN)/manifest.jsonl.

# phase 2's scoring writes two outputs in one run: a grouped target (&:)
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make 4.3 or later is needed (grouped targets); this is $(MAKE_VERSION))
endif

RUN ?= default
SEED ?= 1
# the default mix: MAWPS-style equations and small programs (the byte-level
# default model learns both to saturation in minutes; multi-step arith does
# not: M1 stays near 0% on it, see README)
TASK ?= equation,prog
SCALE ?= full
THREADS ?= $(shell nproc)
# RANKS=N runs each heavy step as N MPI ranks, started by $(MPIRUN) -np N;
# RANKS=1, the default, needs no MPI at all. Scoring and evaluation give
# the bytes of one process. Training keeps BATCH sequences per step, split
# as BATCH/RANKS per rank (BATCH must divide): the same as one process with
# --batch BATCH/RANKS --accum RANKS, which groups examples into smaller
# micro-batches than RANKS=1 does, so the trained models differ a little. MPIRUN holds the launcher and its flags (a hostfile,
# --oversubscribe for more ranks than cores; root needs --allow-run-as-root,
# added here). RANK_THREADS: threads per rank, THREADS shared out by
# default (ranks on one machine); with a hostfile set it to the cores a
# rank has.
RANKS ?= 1
MPIRUN ?= mpirun$(if $(filter 0,$(shell id -u)), --allow-run-as-root)
RANK_THREADS ?= $(shell n=$$(( $(THREADS) / $(RANKS) )); echo $$(( n > 0 ? n : 1 )))
# the prefix of a step that runs as RANKS ranks (nothing for one rank)
LAUNCH = $(if $(filter-out 1,$(RANKS)),$(MPIRUN) -np $(RANKS) )
RANK_BATCH = $(shell [ $$(( $(BATCH) % $(RANKS) )) = 0 ] && echo $$(( $(BATCH) / $(RANKS) )) || \
  { echo "wmss.mk: BATCH=$(BATCH) is not a multiple of RANKS=$(RANKS)" >&2; echo 0; })
LAMBDA ?= 0.5
# matrix products of every train, score and eval step (see README, Precision)
PRECISION ?= fp32
MODEL ?=
LAMBDAS ?= 0.3 0.42 0.7
SEEDS ?= 1 2 3 4 5
ABLATIONS ?=
BASELINES ?=
# NEFTune's noise scale (the paper's baseline: 5)
NEFTUNE_ALPHA ?= 5
# the test problems are the same for every seed (a crossed paired design)
TEST_SEED ?= 1000
SHARED ?= ../shared

# TASK=mawps: the real MAWPS benchmark (train on its trainset, test on its
# validset); M0 is pretrained on the built-in MAWPS-style equation task.
ifeq ($(TASK),mawps)
TRAIN ?= $(SHARED)/data/benchmarks/mawps/trainset.json
TEST ?= $(SHARED)/data/benchmarks/mawps/validset.json
FORMAT ?= mawps
POOL_TASK ?= equation
endif
POOL_TASK ?= $(TASK)
TRAIN ?=
TEST ?=
POOL ?=
FORMAT ?=

ifeq ($(SCALE),smoke)
PRESET ?= nano
N_TRAIN ?= 96
N_POOL ?= 96
N_TEST ?= 16
BATCH ?= 8
PRE_EPOCHS ?= 1
SFT_EPOCHS ?= 2
LR_PRE ?= 3e-3
LR ?= 2e-3
LR_ARM ?= 2e-4
MAX_NEW ?= 40
else ifeq ($(SCALE),full)
PRESET ?= nano
N_TRAIN ?= 2000
N_POOL ?= 2000
N_TEST ?= 1000
BATCH ?= 16
PRE_EPOCHS ?= 1
SFT_EPOCHS ?= 16
LR_PRE ?= 3e-3
LR ?= 3e-3
LR_ARM ?= 3e-4
MAX_NEW ?= 64
else
$(error SCALE must be full or smoke)
endif
SEQ ?= 384
N_LOGITS ?= 200

# Settings checked before any step runs, when a pipeline target is asked
# for: RUN names the directory under runs/ that pipeline-clean deletes.
PIPELINE_GOALS := phase1 phase2 phase3 baseline baselines ablations curve experiment report pipeline-clean
ifneq ($(filter $(PIPELINE_GOALS) experiment-seed-% runs/%,$(MAKECMDGOALS)),)
RUN_CHARS := a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z \
  0 1 2 3 4 5 6 7 8 9 . _ - /
strip_chars = $(if $(2),$(call strip_chars,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,$(words $(2)),$(2))),$(1))
ifneq ($(words $(RUN)),1)
$(error RUN='$(RUN)': one name is needed (no spaces), e.g. RUN=default)
endif
ifneq ($(call strip_chars,$(RUN),$(RUN_CHARS)),)
$(error RUN=$(RUN): only letters, digits, '.', '_', '-' and '/' (a directory under runs/))
endif
ifneq ($(filter /% . .. ./% ../%,$(RUN))$(filter . ..,$(subst /, ,$(RUN))),)
$(error RUN=$(RUN): must stay under runs/ (no leading '/', no '.' or '..' parts))
endif
SETTINGS := THREADS RANKS N_TRAIN N_POOL N_TEST BATCH PRE_EPOCHS SFT_EPOCHS SEQ MAX_NEW N_LOGITS SEED TEST_SEED \
  SEEDS LR LR_PRE LR_ARM LAMBDA LAMBDAS NEFTUNE_ALPHA PRECISION TASK TRAIN MODEL
ifneq ($(findstring ',$(foreach s,$(SETTINGS),$($(s)))),)
$(error a setting holds a quote (')); those are not names, numbers or paths)
endif
SETTINGS_ERROR := $(shell pipelines/check.sh $(foreach s,$(SETTINGS),'$(s)=$($(s))'))
ifneq ($(SETTINGS_ERROR),)
$(error $(SETTINGS_ERROR))
endif
endif

R := runs/$(RUN)
WB := $(B)/bin
# A run directory holds one configuration: the settings that change its
# results are recorded by its first step in $(R)/settings, and a target of
# it asked for with other values stops here with the difference, before
# any step (pipeline-clean and report still run). THREADS counts only
# where the bytes depend on it: fp32 gives the same at any count.
RESULT_SETTINGS := PRESET MODEL TASK POOL_TASK TRAIN TEST POOL FORMAT N_TRAIN N_POOL N_TEST BATCH PRE_EPOCHS \
  SFT_EPOCHS SEQ MAX_NEW N_LOGITS SEED TEST_SEED LR LR_PRE LR_ARM LAMBDA NEFTUNE_ALPHA PRECISION RANKS \
  $(if $(filter-out fp32,$(PRECISION)),THREADS)
RESULT_VALUES = $(foreach s,$(RESULT_SETTINGS),'$(s)=$($(s))')
ifneq ($(filter phase1 phase2 phase3 baseline baselines ablations curve runs/%,$(MAKECMDGOALS)),)
RUN_DIFF := $(shell pipelines/same_run.sh $(R) $(RESULT_VALUES))
ifneq ($(RUN_DIFF),)
$(error $(RUN_DIFF))
endif
endif
# (a directory whose steps ran before settings were recorded gets a line
# saying so instead: its settings are not known, so nothing is checked)
$(R)/settings:
	@mkdir -p $(@D)
	@if [ -e $(R)/manifest.jsonl ]; then echo '# not recorded: steps ran here before settings were'; \
	 else printf '%s\n' $(RESULT_VALUES); fi > $@.tmp && mv $@.tmp $@
M0 := $(if $(MODEL),$(MODEL),$(R)/m0)
M0_FILE := $(if $(MODEL),$(wildcard $(MODEL)/model.safetensors $(MODEL)/model.safetensors.index.json),$(R)/m0/model.safetensors)
# a recipe's outputs (one manifest line for each), then its command
STEP_TO = WDL_VERSION=$(VERSION) pipelines/step.sh "$(1)" $(R)/manifest.jsonl "$^" --
STEP = $(call STEP_TO,$@)
TRAIN_CMD = $(LAUNCH)$(WB)/wdl-train --threads $(RANK_THREADS) --precision $(PRECISION) --seed $(SEED) \
  --batch $(RANK_BATCH) --seq $(SEQ)
TOOLS = | $(BINS) $(R)/settings
# the checkpoint near the end of M1's own SFT (the paper's weak-too-close case)
LATE := $(R)/m1.epoch$(shell echo $$(( $(SFT_EPOCHS) > 1 ? $(SFT_EPOCHS) - 1 : 1 )))
IMPORT = $(if $(FORMAT),$(WB)/wdl-data import --format $(FORMAT),$(WB)/wdl-data cat)
EPOCHS := $(shell seq 1 $(SFT_EPOCHS))

.PHONY: phase1 phase2 phase3 baseline baselines ablations curve experiment report pipeline-clean shared-check
.DELETE_ON_ERROR:
# Every program writes its output atomically, so a target that exists is
# complete: an interrupt that lands after a program finished (while
# step.sh writes the manifest) must not make make delete it.
.PRECIOUS: $(R)/%

# the file behind a path or ARCHIVE:member (a make prerequisite cannot hold ':')
file_of = $(firstword $(subst :, ,$(1)))
shared-check:
	@for f in $(foreach v,$(TRAIN) $(TEST) $(POOL),$(call file_of,$(v))); do [ -f "$$f" ] || { \
	  echo "make: $$f: not found$(if $(filter mawps,$(TASK)), (TASK=mawps reads the shared benchmarks; SHARED=DIR names their folder))" >&2; exit 1; }; done

# ---- data: D, a disjoint pretraining pool, and the test split; or the user's files
ifeq ($(TRAIN),)
$(R)/data/all.jsonl.zst: $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data gen --task $(TASK) --n $$(( $(N_TRAIN) + $(N_POOL) )) --seed $(SEED) --split train -o $@
$(R)/data/train.jsonl.zst: $(R)/data/all.jsonl.zst
	$(STEP) $(WB)/wdl-data take --to $(N_TRAIN) -o $@ $<
$(R)/data/pool.jsonl.zst: $(R)/data/all.jsonl.zst
	$(STEP) $(WB)/wdl-data take --from $(N_TRAIN) -o $@ $<
else
$(R)/data/train.jsonl.zst: $(call file_of,$(TRAIN)) $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(IMPORT) -o $@ $(TRAIN)
ifeq ($(POOL),)
$(R)/data/pool.jsonl.zst: $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data gen --task $(POOL_TASK) --n $(N_POOL) --seed $(SEED) --split train -o $@
else
$(R)/data/pool.jsonl.zst: $(call file_of,$(POOL)) $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data cat -o $@ $(POOL)
endif
endif
ifeq ($(TEST),)
$(R)/data/test.jsonl.zst: $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(WB)/wdl-data gen --task $(TASK) --n $(N_TEST) --seed $(TEST_SEED) --split test -o $@
else
$(R)/data/test.jsonl.zst: $(call file_of,$(TEST)) $(TOOLS)
	@mkdir -p $(@D)
	$(STEP) $(IMPORT) -o $@ $(TEST)
endif
# the paper's logit table is measured on 200 training examples
$(R)/data/logits.jsonl.zst: $(R)/data/train.jsonl.zst
	$(STEP) $(WB)/wdl-data take --to $(N_LOGITS) -o $@ $<

# ---- phase 1: M0 (a weak base: short full-text pretraining on the pool),
# M1 = SFT(M0, D, SFT_EPOCHS epochs, one schedule), saturated on D; the
# model after each earlier epoch is kept as m1.epochK (curve, late weak)
$(R)/init/model.safetensors: $(TOOLS)
	@mkdir -p $(R)
	$(STEP) $(WB)/wdl-init --preset $(PRESET) --seed $(SEED) -o $(@D)
$(R)/m0/model.safetensors: $(R)/init/model.safetensors $(R)/data/pool.jsonl.zst
	@mkdir -p $(R)/logs
	$(STEP) $(TRAIN_CMD) --lm -m $(R)/init -o $(@D) --epochs $(PRE_EPOCHS) --lr $(LR_PRE) --log $(R)/logs/m0.jsonl $(R)/data/pool.jsonl.zst
$(R)/m1/model.safetensors: $(M0_FILE) $(R)/data/train.jsonl.zst
	@mkdir -p $(R)/logs
	$(STEP) $(TRAIN_CMD) -m $(M0) -o $(@D) --epochs $(SFT_EPOCHS) --save-epochs --lr $(LR) --log $(R)/logs/m1.jsonl $(R)/data/train.jsonl.zst
phase1: deps shared-check $(R)/m1/model.safetensors

# ---- phase 2: entropies under weak (M0) and strong (M1), then WD-DS selection
# (one scorer after the other: two in a pipe would oversubscribe the cores).
# The same pass over D writes the model's saturation summary (phase 3's
# saturation/m0.json and m1.json, the same bytes as a pass of its own): one
# run, two outputs, a grouped target.
SCORE = $(LAUNCH)$(WB)/wdl-score --threads $(RANK_THREADS) --precision $(PRECISION)
$(R)/scored_weak.jsonl.zst $(R)/saturation/m0.json &: $(M0_FILE) $(R)/data/train.jsonl.zst
	@mkdir -p $(R)/saturation
	$(call STEP_TO,$(R)/scored_weak.jsonl.zst $(R)/saturation/m0.json) $(SCORE) -m $(M0) --field h_weak \
	  --summary $(R)/saturation/m0.json -o $(R)/scored_weak.jsonl.zst $(R)/data/train.jsonl.zst
$(R)/scored.jsonl.zst $(R)/saturation/m1.json &: $(R)/m1/model.safetensors $(R)/scored_weak.jsonl.zst
	@mkdir -p $(R)/saturation
	$(call STEP_TO,$(R)/scored.jsonl.zst $(R)/saturation/m1.json) $(SCORE) -m $(R)/m1 --field h_strong \
	  --summary $(R)/saturation/m1.json -o $(R)/scored.jsonl.zst $(R)/scored_weak.jsonl.zst
$(R)/selected.jsonl.zst: $(R)/scored.jsonl.zst
	$(STEP) $(WB)/wdl-select --weak-field h_weak --strong-field h_strong --seed $(SEED) --buckets 3 \
	  --stats $(R)/select.stats.json -o $@ $<
phase2: deps shared-check $(R)/selected.jsonl.zst

# ---- phase 3 and the other arms: one more pass from M1, every arm with the
# same schedule at LR_ARM: by default the lr M1's schedule ended at (LR/10).
# Restarting a saturated M1 at its peak lr undoes its convergence: measured
# sft2 - m1 = -8.0 and -3.7 points on seeds 1-2 (runs kept in the README).
define ARM
$(R)/$(1)/model.safetensors: $(R)/m1/model.safetensors $(M0_FILE) $(3)
	@mkdir -p $(R)/logs
	$$(STEP) $$(TRAIN_CMD) -m $(R)/m1 -o $(R)/$(1) --epochs 1 --lr $$(LR_ARM) $(2) --log $(R)/logs/$(1).jsonl $(3)
endef
$(eval $(call ARM,wmss,--weak $(M0) --lambda $(LAMBDA),$(R)/selected.jsonl.zst))
$(eval $(call ARM,sft2,,$(R)/data/train.jsonl.zst))
$(eval $(call ARM,wdds_only,,$(R)/selected.jsonl.zst))
$(eval $(call ARM,wdjt_only,--weak $(M0) --lambda $(LAMBDA),$(R)/data/train.jsonl.zst))
$(eval $(call ARM,frozen_weak,--weak $(M0) --lambda $(LAMBDA) --freeze-weak,$(R)/selected.jsonl.zst))
$(eval $(call ARM,const_weak,--weak-constant --lambda $(LAMBDA),$(R)/selected.jsonl.zst))
$(eval $(call ARM,clip_separate,--weak $(M0) --lambda $(LAMBDA) --clip-mode separate,$(R)/selected.jsonl.zst))
$(eval $(call ARM,late_weak,--weak $(LATE) --lambda $(LAMBDA),$(R)/selected.jsonl.zst))
$(foreach l,$(LAMBDAS),$(eval $(call ARM,lambda$(l),--weak $(M0) --lambda $(l),$(R)/selected.jsonl.zst)))
ARMS_ABL := wdds_only wdjt_only frozen_weak const_weak clip_separate late_weak $(foreach l,$(LAMBDAS),lambda$(l))
# the paper's baselines beside SFT, at sft2's budget and schedule: NEFTune
# is sft2 with uniform noise on the input embeddings while training
$(eval $(call ARM,neftune,--neftune $(NEFTUNE_ALPHA),$(R)/data/train.jsonl.zst))
ARMS_BASE := neftune

# ---- evaluation (greedy decoding on the test split), saturation on D and
# the logit table; m0 may be the user's MODEL directory
EVAL = $(LAUNCH)$(WB)/wdl-eval --threads $(RANK_THREADS) --precision $(PRECISION) --max-new $(MAX_NEW)
SUMMARY = $(SCORE) --field h
$(R)/eval/%.json: $(R)/%/model.safetensors $(R)/data/test.jsonl.zst
	@mkdir -p $(R)/eval $(R)/preds
	$(STEP) $(EVAL) -m $(R)/$* --preds $(R)/preds/$*.jsonl.zst -o $@ $(R)/data/test.jsonl.zst
$(R)/eval/m0.json: $(M0_FILE) $(R)/data/test.jsonl.zst
	@mkdir -p $(R)/eval $(R)/preds
	$(STEP) $(EVAL) -m $(M0) --preds $(R)/preds/m0.jsonl.zst -o $@ $(R)/data/test.jsonl.zst
$(R)/saturation/%.json: $(R)/%/model.safetensors $(R)/data/train.jsonl.zst
	@mkdir -p $(@D)
	$(STEP) $(SUMMARY) -m $(R)/$* --summary $@ -o /dev/null $(R)/data/train.jsonl.zst
$(R)/logits/%.json: $(R)/%/model.safetensors $(R)/data/logits.jsonl.zst
	@mkdir -p $(@D)
	$(STEP) $(SUMMARY) -m $(R)/$* --summary $@ -o /dev/null $(R)/data/logits.jsonl.zst
$(R)/logits/m0.json: $(M0_FILE) $(R)/data/logits.jsonl.zst
	@mkdir -p $(@D)
	$(STEP) $(SUMMARY) -m $(M0) --summary $@ -o /dev/null $(R)/data/logits.jsonl.zst

# ---- the saturation curve: M1 after each epoch of its SFT run
curve_model = $(if $(filter $(SFT_EPOCHS),$(1)),$(R)/m1,$(R)/m1.epoch$(1))
define CURVE
$(R)/curve/eval/e$(1).json: $(R)/m1/model.safetensors $(R)/data/test.jsonl.zst
	@mkdir -p $(R)/curve/eval $(R)/curve/preds
	$$(STEP) $$(EVAL) -m $(call curve_model,$(1)) --preds $(R)/curve/preds/e$(1).jsonl.zst -o $$@ $(R)/data/test.jsonl.zst
$(R)/curve/saturation/e$(1).json: $(R)/m1/model.safetensors $(R)/data/train.jsonl.zst
	@mkdir -p $$(@D)
	$$(STEP) $$(SUMMARY) -m $(call curve_model,$(1)) --summary $$@ -o /dev/null $(R)/data/train.jsonl.zst
endef
$(foreach e,$(EPOCHS),$(eval $(call CURVE,$(e))))

MAIN_ARMS := m0 m1 sft2 wmss
MAIN_OUT := $(foreach a,$(MAIN_ARMS),$(R)/eval/$(a).json $(R)/saturation/$(a).json $(R)/logits/$(a).json)
phase3: deps shared-check $(MAIN_OUT)
	@echo "== $(R): evaluation (greedy, $$(jq .n $(R)/eval/m1.json) test problems); wmss beside its equal-budget control sft2"
	@for a in m0 m1 sft2 wmss; do printf '%-6s ' $$a; jq -c '{accuracy, n, tasks: (.tasks | map_values(.accuracy))}' $(R)/eval/$$a.json; done
	@$(WB)/wdl-report --out $(R)/report $(R) > /dev/null 2>&1
	@sed -n '/^\*\*Verdict/,/^## /p' $(R)/report/report.md | sed '$$d'
	@echo "report: $(R)/report/report.md"

baseline: deps shared-check $(R)/eval/sft2.json $(R)/eval/m1.json
	@for a in m1 sft2; do printf '%-6s ' $$a; jq -c '{accuracy, n}' $(R)/eval/$$a.json; done

ablations: deps shared-check $(addprefix $(R)/eval/,$(addsuffix .json,$(ARMS_ABL)))

baselines: deps shared-check $(addprefix $(R)/eval/,$(addsuffix .json,m1 sft2 $(ARMS_BASE)))
	@for a in m1 sft2 $(ARMS_BASE); do printf '%-8s ' $$a; jq -c '{accuracy, n}' $(R)/eval/$$a.json; done

curve: deps shared-check $(foreach e,$(EPOCHS),$(R)/curve/eval/e$(e).json $(R)/curve/saturation/e$(e).json)
	@printf 'epoch  accuracy  p_target  token_acc\n'
	@for e in $(EPOCHS); do printf '%5s  %8.4f  %8.4f  %9.4f\n' $$e $$(jq .accuracy $(R)/curve/eval/e$$e.json) \
	  $$(jq .p_target $(R)/curve/saturation/e$$e.json) $$(jq .token_accuracy $(R)/curve/saturation/e$$e.json); done

report:
	$(WB)/wdl-report --out $(R)/report $(R)

# ---- the experiment: every seed's phases (and ablations with ABLATIONS=1,
# the baselines with BASELINES=1)
# under runs/$(RUN)/sK, then one report with the paired verdict. Seeds are
# independent targets: `make -j2 experiment THREADS=1` runs two at a time.
# The programs are built first, here: each seed's make would otherwise
# build them too, two at once into the same files.
SEED_RUNS := $(addprefix experiment-seed-,$(SEEDS))
.PHONY: $(SEED_RUNS)
$(SEED_RUNS): experiment-seed-%: deps shared-check | $(BINS)
	+@$(MAKE) --no-print-directory phase3 $(if $(ABLATIONS),ablations) $(if $(BASELINES),baselines) RUN=$(RUN)/s$* SEED=$*
experiment: $(SEED_RUNS)
	@$(WB)/wdl-report --out $(R)/report $(addprefix $(R)/s,$(SEEDS)) > /dev/null
	@sed -n '1,/^## Accuracy/p' $(R)/report/report.md | sed '$$d'
	@echo "report: $(R)/report/report.md (JSON: $(R)/report/report.json)"

pipeline-clean:
	rm -rf '$(R)'
