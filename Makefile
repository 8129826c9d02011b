# wdl: build, test, bench and the WMSS pipeline.
# B= names the build directory (default build/).
# Sources are found by pattern, so adding lib/x.c, bin/wdl-y.c or
# tests/test_z.c needs no edit here.
SHELL := /bin/bash
B ?= build
VERSION := 0.1.0
CC ?= cc
OPT ?= -O3 -march=native
CFLAGS ?= $(OPT) -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
CFLAGS += -fopenmp -fno-math-errno -Ilib -I$(B)/gen -DWDL_VERSION='"$(VERSION)"' -MMD -MP
# OpenBLAS's OpenMP build: BLAS and our OpenMP loops share one thread pool,
# so the two never oversubscribe the cores. oneDNN (bf16 GEMMs, lib/gemm.c)
# is Debian's OpenMP build and joins the same pool.
BLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
# Open MPI (lib/dist.c): linked into every program, initialised only when
# mpirun starts one.
MPI_DIR ?= /usr/lib/x86_64-linux-gnu/openmpi
CFLAGS += -I$(MPI_DIR)/include
LDLIBS := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -ldnnl -lzstd -ljansson -lpcre2-8 -lutf8proc -larchive -L$(MPI_DIR)/lib -lmpi -lmvec -lm -fopenmp

# Debian packages the build, the tests and the pipeline need.
DEB_PKGS := build-essential pkg-config libopenblas-openmp-dev libzstd-dev libjansson-dev \
  libcmocka-dev libdnnl-dev libpcre2-dev libutf8proc-dev libarchive-dev bats jq zstd \
  gnuplot-nox clang libclang-rt-14-dev libopenmpi-dev openmpi-bin

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(patsubst lib/%.c,$(B)/obj/%.o,$(LIB_SRC)) $(B)/obj/presets.o
BINS := $(patsubst bin/%.c,$(B)/bin/%,$(wildcard bin/*.c))
TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
BENCHES := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/*.c))
FUZZERS := $(patsubst fuzz/%.c,$(B)/fuzz/%,$(wildcard fuzz/fuzz_*.c))
PRESETS := $(sort $(wildcard data/presets/*.json))

.PHONY: all deps test test-san bench bench-deps fuzz clean
all: $(BINS)

# Install missing Debian packages (root or sudo). Quiet when all are present.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Presets are compiled into the library so programs need no data path.
$(B)/gen/presets.c: $(PRESETS) Makefile
	@mkdir -p $(@D)
	@{ echo '/* generated from data/presets by the Makefile */'; \
	   echo '#include <stddef.h>'; \
	   echo 'const char *const wdl_preset_names[] = {'; \
	   for f in $(PRESETS); do echo "  \"$$(basename $$f .json)\","; done; echo '  NULL };'; \
	   echo 'const char *const wdl_preset_texts[] = {'; \
	   for f in $(PRESETS); do printf '  "'; sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' $$f | tr '\n' ' '; echo '",'; done; echo '  NULL };'; \
	 } > $@.tmp && mv $@.tmp $@

$(B)/obj/presets.o: $(B)/gen/presets.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<
$(B)/obj/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<
$(B)/libwdl.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(B)/bin/%: bin/%.c $(B)/libwdl.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libwdl.a $(LDLIBS)
$(B)/tests/%: tests/%.c $(B)/libwdl.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(B)/libwdl.a $(LDLIBS) -lcmocka
$(B)/bench/%: bench/%.c $(B)/libwdl.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libwdl.a $(LDLIBS)

# libFuzzer targets: clang; the library is compiled once with the sanitizers
# (and fuzzer coverage) into its own archive.
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -fopenmp -I$(MPI_DIR)/include -Ilib -I$(B)/gen -fsanitize=address,undefined
FUZZ_OBJ := $(patsubst lib/%.c,$(B)/fuzzobj/%.o,$(LIB_SRC)) $(B)/fuzzobj/presets.o
$(B)/fuzzobj/%.o: lib/%.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
$(B)/fuzzobj/presets.o: $(B)/gen/presets.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -c -o $@ $<
$(B)/libwdl-fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(B)/fuzz/%: fuzz/%.c $(B)/libwdl-fuzz.a
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libwdl-fuzz.a $(LDLIBS)

# Each target runs FUZZ_SECONDS from its seeds and the corpus kept in $(B);
# a crash stops with the fuzzer's report (crash input under $(B)/fuzz/).
FUZZ_SECONDS ?= 20
fuzz: deps $(FUZZERS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) B=$(B) bash fuzz/run.sh

# The tests, then every fuzz target briefly (TEST_FUZZ_SECONDS each, 0 = skip).
TEST_FUZZ_SECONDS ?= 5
test: deps all $(TESTS) $(BENCHES) $(if $(filter-out 0,$(TEST_FUZZ_SECONDS)),$(FUZZERS))
	@B=$(B) FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) bash tests/run.sh

# The same tests with everything (library, programs, test and bench
# binaries) built by gcc at -O1 under AddressSanitizer and
# UndefinedBehaviorSanitizer, in $(B)-san: a memory error or undefined
# behaviour stops the program, and so fails its test. Leak checking is off
# (ASAN_OPTIONS to change it): a program that dies leaves its memory to the
# exit, and the tests expect die()'s one stderr line. Slow (23 min on 2
# cores), so not part of make test.
SAN_OPT := -O1 -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test-san: deps
	@ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1} \
	  $(MAKE) --no-print-directory B=$(B)-san OPT="$(SAN_OPT)" TEST_FUZZ_SECONDS=0 test

# PyTorch 2.x + transformers for the side-by-side comparison (dev-side only,
# as tests/gen_fixtures.py: never needed by the programs or by make test):
# a virtualenv from PyPI in $(B)/bench-venv, or BENCH_PY=/path/to/python to
# use an existing interpreter that has both (e.g. /opt/fixenv/bin/python).
# BENCH_PIP_ARGS is passed to pip (e.g. --index-url
# https://download.pytorch.org/whl/cpu for the CPU-only torch wheel).
BENCH_VENV := $(B)/bench-venv
BENCH_PY ?= $(BENCH_VENV)/bin/python
BENCH_PIP_ARGS ?=
bench-deps:
	@if "$(BENCH_PY)" -c 'import torch, transformers, safetensors' 2>/dev/null; then \
	  echo "bench-deps: $(BENCH_PY) has torch $$("$(BENCH_PY)" -c 'import torch; print(torch.__version__)')"; \
	elif [ "$(BENCH_PY)" != "$(BENCH_VENV)/bin/python" ]; then \
	  echo "bench-deps: $(BENCH_PY) lacks torch, transformers or safetensors" >&2; exit 1; \
	else \
	  python3 -m venv "$(BENCH_VENV)" && "$(BENCH_VENV)/bin/pip" install -q --upgrade pip && \
	  "$(BENCH_VENV)/bin/pip" install -q $(BENCH_PIP_ARGS) 'torch>=2.1' 'transformers>=4.51' safetensors; \
	fi

# The torch peers run only when $(BENCH_PY) exists (make bench-deps);
# BENCH_06B=1 adds the Qwen3-0.6B-shaped scoring and decoding (slow).
bench: deps all $(BENCHES)
	@B=$(B) BENCH_PY=$(BENCH_PY) bash bench/run.sh

clean:
	rm -rf $(B)

-include $(wildcard $(B)/obj/*.d $(B)/bin/*.d $(B)/tests/*.d $(B)/bench/*.d)
-include pipelines/*.mk
