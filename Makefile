# iot-ingest: one plain Makefile.
#   make            build build/iot-ingest
#   make run        install deps, build, create a demo database, serve on 127.0.0.1:8000
#   make test       install deps, check the formatting (format-check), build, run unit tests
#                   (plain + ASan/UBSan) and integration tests, compile src/ at every -O level
#                   (opt-levels), SQLite integration under TSan
#   make opt-levels compile src/ at -O0 -O1 -O2 -O3 -Os (-Werror), nothing runs
#   make format-check  clang-format --dry-run -Werror over src/, tests/unit, tests/fuzz (part of test)
#   make format     rewrite those files in the committed .clang-format style
#   make asan       unit + integration tests under ASan+UBSan only
#   make tsan       integration tests (SQLite, then PostgreSQL) under ThreadSanitizer
#   make scan-build clang static analyzer over src/ (part of check-all)
#   make fuzz       libFuzzer harnesses (tests/fuzz), FUZZ_SECONDS each (default 60)
#   make check-all  make test, long fuzzing, 10 crash rounds, valgrind memcheck of part of the suite,
#                   TSan on PostgreSQL, scan-build
#   make bench      benchmarks (bench/run.sh) into docs/BENCHMARKS.md
#   make install    PREFIX=/usr/local [DESTDIR=] [SYSCONFDIR=/etc]: binary, man page, systemd units
#   make clean

.SUFFIXES:

ifeq ($(origin CC),default)
CC = cc
endif
PKGS     = libmicrohttpd gnutls nettle jansson yajl sqlite3 zlib libcurl libpq libnats libuv
VERSION  = 0.1.0
# The date of this source, which dates the man page (.TH): SOURCE_DATE_EPOCH
# when set (reproducible-builds.org), else the commit date of HEAD, else (a
# tarball) CHANGELOG.md's mtime. The same source always gives the same page.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date -r CHANGELOG.md +%s)
VERSION_DATE := $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%d 2>/dev/null)
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -g $(OPT) \
              -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Isrc \
              -DIOT_VERSION=\"$(VERSION)\" -pthread -MMD -MP
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS_ALL  = $(PKG_LIBS) -lm -pthread
# Quiet build lines ("CC file"); make V=1 shows the full commands.
ifeq ($(V),1)
Q_CC =
Q_LD =
else
Q_CC = @echo "  CC      $@";
Q_LD = @echo "  LD      $@";
endif
SAN_FLAGS   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
TSAN_FLAGS  = -fsanitize=thread -fno-omit-frame-pointer

SRC      := $(shell find src -name '*.c' | sort)
MAIN_SRC := src/cli/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
# The test-support library (tests/support/: the fault-injecting store, the HTTP
# harness): built per variant, linked only into the unit tests and the fuzzers,
# never into iot-ingest (no-test-code checks). Test sources include it as
# "support/NAME.h" (-Itests on objects under tests/).
SUPPORT_SRC := $(sort $(wildcard tests/support/*.c))
PYTEST   = /usr/bin/python3 -m pytest

# $(1) = build dir, $(2) = extra flags
define variant
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(Q_CC)$$(CC) $$(CFLAGS_BASE) $(2) $$(PKG_CFLAGS) -c $$< -o $$@
$(1)/obj/tests/%.o: CFLAGS_BASE += -Itests
.SECONDARY: $$(addprefix $(1)/obj/,$$(SUPPORT_SRC:.c=.o))
$(1)/iot-ingest: $$(addprefix $(1)/obj/,$$(SRC:.c=.o))
	$$(Q_LD)$$(CC) $(2) -o $$@ $$^ $$(LDLIBS_ALL)
$(1)/tests/%: $(1)/obj/tests/unit/%.o $$(addprefix $(1)/obj/,$$(LIB_SRC:.c=.o) $$(SUPPORT_SRC:.c=.o))
	@mkdir -p $$(dir $$@)
	$$(Q_LD)$$(CC) $(2) -o $$@ $$^ $$(LDLIBS_ALL) -lcriterion
endef

$(eval $(call variant,build,))
$(eval $(call variant,build-asan,$(SAN_FLAGS)))
$(eval $(call variant,build-tsan,$(TSAN_FLAGS)))
# -Werror must hold at every optimization level: gcc's flow-sensitive warnings
# (-Wmaybe-uninitialized, -Wformat-truncation) change with inlining. The later
# -O flag wins over the $(OPT) in CFLAGS_BASE; $(OPT) (-O2 by default) is build/.
# -g0: these objects are never linked or debugged, so skip the debug info.
OPT_LEVELS = O0 O1 O3 Os
$(foreach o,$(OPT_LEVELS),$(eval $(call variant,build-opt/$(o),-$(o) -g0)))
$(eval $(call variant,build-scan,))

# Only cmd_man.c reads the date: it is rebuilt when build/.version-date changes
# (rewritten only when the date differs, as git does with GIT-VERSION-FILE).
MAN_OBJ = $(addsuffix /obj/src/cli/cmd_man.o,build build-asan build-tsan build-scan build-fuzz \
            $(addprefix build-opt/,$(OPT_LEVELS)))
$(MAN_OBJ): CFLAGS_BASE += -DIOT_VERSION_DATE=\"$(VERSION_DATE)\"
$(MAN_OBJ): build/.version-date
build/.version-date: FORCE
	@mkdir -p build && echo '$(VERSION_DATE)' | cmp -s - $@ || echo '$(VERSION_DATE)' >$@
.PHONY: FORCE
FORCE:

UNIT_BIN      = $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
UNIT_BIN_ASAN = $(patsubst tests/unit/%.c,build-asan/tests/%,$(UNIT_SRC))

.PHONY: all deps deps-test run test asan unit unit-asan integration clean format format-check \
        opt-levels scan-build tsan tsan-sqlite no-test-code
all: build/iot-ingest

deps:
	@sh scripts/deps.sh build
deps-test:
	@sh scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh build/iot-ingest

unit: $(UNIT_BIN) no-test-code
	@sh scripts/run-unit.sh $(UNIT_BIN)
unit-asan: $(UNIT_BIN_ASAN)
	@sh scripts/run-unit.sh $(UNIT_BIN_ASAN)

# The product binary holds no test code: no symbol of the test-support library.
no-test-code: build/iot-ingest $(addprefix build/obj/,$(SUPPORT_SRC:.c=.o))
	@sh scripts/no-test-code.sh $^

integration: build-asan/iot-ingest
	IOT_INGEST_BIN=$(CURDIR)/build-asan/iot-ingest sh scripts/run-integration.sh

test: deps-test
	@$(MAKE) --no-print-directory format-check all opt-levels unit unit-asan integration fuzz-smoke \
	    tsan-sqlite

asan: deps-test
	@$(MAKE) --no-print-directory unit-asan integration

# ThreadSanitizer: the integration suite against build-tsan/iot-ingest, on
# TSAN_BACKENDS. Every process writes its reports to build-tsan/reports/tsan.PID
# (and exits 66), and the target fails if any report exists, also from a process
# whose exit code no test checks. IOT_TEST_TIME_SCALE stretches the latency
# bound of test_connections.py (TSan makes everything several times slower). No
# suppressions: none has been needed (libmicrohttpd, libpq and libnats are not
# instrumented; TSan sees their locks and thread starts, not their memory).
# The unit tests cannot run under TSan: Criterion 2.4 maps its inheritable arena
# with MAP_FIXED at a random address in 0x2000..0x6000 0000 0000, memory TSan
# reserves, so every test binary aborts before its first test with "Could not
# initialize inheritable arena" (Snaipe/Criterion#274, gcc and clang alike).
TSAN_DIR      = $(CURDIR)/build-tsan/reports
TSAN_BACKENDS ?= sqlite postgresql
tsan: deps-test
	@$(MAKE) --no-print-directory build-tsan/iot-ingest
	@rm -rf $(TSAN_DIR) && mkdir -p $(TSAN_DIR)
	@rc=0; \
	TSAN_OPTIONS="log_path=$(TSAN_DIR)/tsan second_deadlock_stack=1" IOT_TEST_TIME_SCALE=5 \
	    IOT_TEST_BACKENDS="$(TSAN_BACKENDS)" IOT_INGEST_BIN=$(CURDIR)/build-tsan/iot-ingest \
	    sh scripts/run-integration.sh || rc=1; \
	n=$$(ls $(TSAN_DIR) | wc -l); \
	if [ "$$n" -gt 0 ]; then \
	    echo "tsan: $$n process(es) reported races, see $(TSAN_DIR)/:" >&2; \
	    grep -h '^SUMMARY' $(TSAN_DIR)/* | sort | uniq -c >&2; rc=1; \
	fi; \
	[ $$rc = 0 ] && echo "tsan: no race reported ($(TSAN_BACKENDS))"; exit $$rc
# The part of make test: the SQLite pass only (the PostgreSQL pass is in check-all).
tsan-sqlite:
	@$(MAKE) --no-print-directory tsan TSAN_BACKENDS=sqlite

# Compiles src/ and the test-support library once per optimization level (objects
# only, nothing runs).
OPT_SRC = $(SRC) $(SUPPORT_SRC)
opt-levels: $(addprefix build/obj/,$(OPT_SRC:.c=.o)) \
            $(foreach o,$(OPT_LEVELS),$(addprefix build-opt/$(o)/obj/,$(OPT_SRC:.c=.o)))
	@echo "opt-levels: src/ and tests/support/ compile warning-free at $(OPT) (build/) and $(addprefix -,$(OPT_LEVELS))"

# clang's static analyzer over src/ (scan-build-14 from clang-tools-14): every
# object is rebuilt through it into build-scan/, an HTML report per finding goes
# to build-scan/report/, and any finding fails the target. A false positive is
# explained in a comment at its line.
SCAN_BUILD ?= scan-build-14
scan-build:
	@rm -rf build-scan
	$(SCAN_BUILD) --status-bugs -o build-scan/report --use-cc=clang-14 \
	    $(MAKE) --no-print-directory CC=clang-14 $(addprefix build-scan/obj/,$(SRC:.c=.o))

# Every C file of src/, tests/unit and tests/fuzz, in the committed .clang-format
# style (clang-format 14, Debian 12's). format rewrites them; format-check only
# reports (-Werror: any difference fails, so make test and CI catch it).
FORMAT_SRC = $(sort $(shell find src tests/unit tests/fuzz tests/support -name '*.[ch]'))
CLANG_FORMAT ?= clang-format
format:
	$(CLANG_FORMAT) -i $(FORMAT_SRC)
format-check:
	@$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_SRC) && \
	    echo "format-check: $(words $(FORMAT_SRC)) files match .clang-format"

# Binary, iot-ingest(1), systemd units, env example, nginx TLS sample (packaging/install.sh;
# DESTDIR honoured).
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
.PHONY: install openapi-deps
install: build/iot-ingest
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" \
	    sh packaging/install.sh build/iot-ingest

# The pinned OpenAPI tools (tests/openapi/package-lock.json: @redocly/cli, the linter,
# and @stoplight/prism-cli, the validating proxy of test_prism.py) into build/openapi.
openapi-deps:
	@sh tests/openapi/install.sh

# Fuzzing (tests/fuzz/README.md): clang's libFuzzer with ASan+UBSan. Every object of
# src/ except main.c and of tests/support/ is rebuilt with clang into build-fuzz/, one
# binary per tests/fuzz/fuzz_NAME.c. `fuzz` grows build-fuzz/corpus/NAME from the committed
# seeds; `fuzz-smoke` (part of `test`) replays tests/fuzz/regressions/ and fuzzes
# each harness briefly with a fixed seed.
FUZZ_CC            ?= clang-14
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SAN   = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_NAMES = $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BIN   = $(addprefix build-fuzz/fuzz_,$(FUZZ_NAMES))

build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_BASE) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c $< -o $@
build-fuzz/obj/tests/%.o: CFLAGS_BASE += -Itests
build-fuzz/fuzz_%: build-fuzz/obj/tests/fuzz/fuzz_%.o \
                   $(addprefix build-fuzz/obj/,$(LIB_SRC:.c=.o) $(SUPPORT_SRC:.c=.o))
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)

.PRECIOUS: build-fuzz/obj/%.o
.PHONY: fuzz fuzz-build fuzz-smoke check-all valgrind-integration
fuzz-build: $(FUZZ_BIN)
fuzz: deps-test
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)
fuzz-smoke: fuzz-build
	@sh tests/fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

# sslscan against the gateway's HTTPS and MQTT-over-TLS listeners: fails on any weak
# protocol or cipher, renegotiation or compression (scripts/tls-scan.sh, docs/tls.md).
.PHONY: tls-scan
tls-scan: build/iot-ingest
	@sh scripts/tls-scan.sh build/iot-ingest

# Everything, slowly (see docs/SECURITY.md, "Testing"): the test suite, 5 minutes
# of fuzzing per harness, 10 kill -9 rounds of the crash test, part of the
# integration suite against the plain build under valgrind memcheck, the
# PostgreSQL pass under TSan (make test ran the SQLite one), scan-build and tls-scan.
VALGRIND_TESTS ?= tests/integration/test_packets.py tests/integration/test_auth_limits.py
check-all: deps-test
	@rc=0; failed=""; \
	$(MAKE) --no-print-directory test || { rc=1; failed="$$failed test"; }; \
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=300 || { rc=1; failed="$$failed fuzz"; }; \
	$(MAKE) --no-print-directory build-asan/iot-ingest && \
	CRASH_ROUNDS=10 IOT_INGEST_BIN=$(CURDIR)/build-asan/iot-ingest \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(PYTEST) -q -p no:cacheprovider tests/integration/test_crash.py \
	    || { rc=1; failed="$$failed crash"; }; \
	$(MAKE) --no-print-directory valgrind-integration || { rc=1; failed="$$failed valgrind"; }; \
	$(MAKE) --no-print-directory tsan TSAN_BACKENDS=postgresql || { rc=1; failed="$$failed tsan"; }; \
	$(MAKE) --no-print-directory scan-build || { rc=1; failed="$$failed scan-build"; }; \
	$(MAKE) --no-print-directory tls-scan || { rc=1; failed="$$failed tls-scan"; }; \
	if [ $$rc = 0 ]; then echo "check-all: everything passed"; \
	else echo "check-all: FAILED:$$failed" >&2; fi; exit $$rc

# Every iot-ingest process the tests start (serve and the CLI) runs under
# memcheck through a generated wrapper around a private copy of the plain build
# (a rebuild meanwhile cannot pull it away), one log per process in
# build/valgrind/; the run fails if any log reports an error or a definite leak.
# About 15 minutes: valgrind makes every process ~10x slower.
VG_DIR = $(CURDIR)/build/valgrind
valgrind-integration: build/iot-ingest
	@rm -rf $(VG_DIR) && mkdir -p $(VG_DIR) && cp build/iot-ingest $(VG_DIR)/iot-ingest.bin
	@printf '#!/bin/sh\nexec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --log-file=%s/vg.%%p.log %s "$$@"\n' \
	    '$(VG_DIR)' '$(VG_DIR)/iot-ingest.bin' >$(VG_DIR)/iot-ingest && chmod +x $(VG_DIR)/iot-ingest
	IOT_INGEST_BIN=$(VG_DIR)/iot-ingest IOT_TEST_START_TIMEOUT_S=120 \
	    $(PYTEST) -q -p no:cacheprovider $(VALGRIND_TESTS)
	@bad=$$(grep -L 'ERROR SUMMARY: 0 errors' $(VG_DIR)/vg.*.log | while read f; do \
	    grep -q 'ERROR SUMMARY' "$$f" && echo "$$f"; done); \
	n=$$(ls $(VG_DIR)/vg.*.log | wc -l); \
	if [ -n "$$bad" ]; then echo "valgrind: errors in:" $$bad >&2; exit 1; fi; \
	echo "valgrind: $$n processes checked, no memcheck error"

# Throughput benchmark vs nginx and the peers (InfluxDB, VictoriaMetrics, the seed's
# design), issue 13's targets, what-if variants, CPU profile and the jobs benchmark
# (bench/README.md); writes docs/BENCHMARKS.md (BENCH_QUICK=1: a short run into
# build/). Installs wrk, nginx-light, hyperfine and the peers' Debian packages.
.PHONY: bench
bench: build/iot-ingest build/bench/mhd204 build/bench/mqtt_load
	@BENCH_NO_BUILD=1 bash bench/run.sh

# libmicrohttpd alone answering 204 with the gateway's daemon flags (bench/peers/mhd204.c).
build/bench/mhd204: bench/peers/mhd204.c
	@mkdir -p $(dir $@)
	$(Q_LD)$(CC) $(CFLAGS_BASE) $(shell pkg-config --cflags libmicrohttpd) -o $@ $< \
	    $(shell pkg-config --libs libmicrohttpd) -pthread

# The MQTT load of make bench (bench/peers/mqtt_load.c): QoS 1 publishers, one thread, epoll.
build/bench/mqtt_load: bench/peers/mqtt_load.c
	@mkdir -p $(dir $@)
	$(Q_LD)$(CC) $(CFLAGS_BASE) -o $@ $<

# packet_decode alone (bench/decode_bench.c): ns per packet, then instructions per
# packet under callgrind (steadier on a shared machine).
.PHONY: bench-decode
build/bench/decode_bench: build/obj/bench/decode_bench.o $(addprefix build/obj/,$(LIB_SRC:.c=.o))
	@mkdir -p $(dir $@)
	$(Q_LD)$(CC) -o $@ $^ $(LDLIBS_ALL)
bench-decode: build/bench/decode_bench
	build/bench/decode_bench
	@valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=packet_decode \
	    build/bench/decode_bench 1000 2>&1 | awk '/Collected/ { printf "packet_decode: %.0f instructions/packet\n", $$4 / 5000 }'

clean:
	rm -rf build build-asan build-tsan build-opt build-scan build-fuzz

-include $(shell find build build-asan build-tsan build-opt build-fuzz -name '*.d' 2>/dev/null)
