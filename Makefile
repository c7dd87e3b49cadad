# iot-ingest: one plain Makefile.
#   make            build build/iot-ingest
#   make run        install deps, build, create a demo database, serve on 127.0.0.1:8000
#   make test       install deps, build, run unit tests (plain + ASan/UBSan) and integration tests
#   make asan       unit + integration tests under ASan+UBSan only
#   make clean

.SUFFIXES:

ifeq ($(origin CC),default)
CC = cc
endif
PKGS     = libmicrohttpd jansson sqlite3 libcrypto zlib libcurl
VERSION  = 0.1.0
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -g $(OPT) \
              -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Isrc \
              -DIOT_VERSION=\"$(VERSION)\" -pthread -MMD -MP
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS_ALL  = $(PKG_LIBS) -lm -pthread
SAN_FLAGS   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

SRC      := $(shell find src -name '*.c' | sort)
MAIN_SRC := src/cli/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
PYTEST   = /usr/bin/python3 -m pytest

# $(1) = build dir, $(2) = extra flags
define variant
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) $(2) $$(PKG_CFLAGS) -c $$< -o $$@
$(1)/iot-ingest: $$(addprefix $(1)/obj/,$$(SRC:.c=.o))
	$$(CC) $(2) -o $$@ $$^ $$(LDLIBS_ALL)
$(1)/tests/%: $(1)/obj/tests/unit/%.o $$(addprefix $(1)/obj/,$$(LIB_SRC:.c=.o))
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -o $$@ $$^ $$(LDLIBS_ALL) -lcriterion
endef

$(eval $(call variant,build,))
$(eval $(call variant,build-asan,$(SAN_FLAGS)))

UNIT_BIN      = $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
UNIT_BIN_ASAN = $(patsubst tests/unit/%.c,build-asan/tests/%,$(UNIT_SRC))

.PHONY: all deps deps-test run test asan unit unit-asan integration clean format
all: build/iot-ingest

deps:
	@sh scripts/deps.sh build
deps-test:
	@sh scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh build/iot-ingest

unit: $(UNIT_BIN)
	@sh scripts/run-unit.sh $(UNIT_BIN)
unit-asan: $(UNIT_BIN_ASAN)
	@sh scripts/run-unit.sh $(UNIT_BIN_ASAN)

integration: build-asan/iot-ingest
	IOT_INGEST_BIN=$(CURDIR)/build-asan/iot-ingest sh scripts/run-integration.sh

test: deps-test
	@$(MAKE) --no-print-directory all unit unit-asan integration

asan: deps-test
	@$(MAKE) --no-print-directory unit-asan integration

format:
	clang-format -i $(SRC) $(shell find src tests -name '*.h') $(UNIT_SRC)

clean:
	rm -rf build build-asan

-include $(shell find build build-asan -name '*.d' 2>/dev/null)
