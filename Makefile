# hypeman build. Two variants of everything:
#   build/rel  -O2, hardened: what `make run` starts
#   build/san  ASan+UBSan: what the unit and integration tests run
# `make` builds the release binaries; `make run` and `make test` are the
# two entry points the README documents. Non-recursive; each module's
# sources are picked up by wildcard, so a new .c file needs no edit here.

CC       ?= gcc
BUILD    := build
DATA_DIR ?= $(CURDIR)/.data
PORT     ?= 8080

WARN := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wold-style-definition -Wundef -Wwrite-strings -Wimplicit-fallthrough \
        -Werror=implicit-function-declaration -Wno-missing-field-initializers -Wno-format-zero-length \
        -Wjump-misses-init
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) -Isrc -I. -I$(BUILD)/gen -fno-common -MMD -MP
REL_CFLAGS  := $(BASE_CFLAGS) -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
SAN_CFLAGS  := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
REL_LDFLAGS := -pie -Wl,-z,relro,-z,now
SAN_LDFLAGS := -fsanitize=address,undefined
# The guest init (guest/): PID 1 of every VM, static, never sanitized, the
# same in both variants.
GUEST_CFLAGS  := -std=gnu11 -D_GNU_SOURCE $(WARN) -Isrc -Os -fno-common -MMD -MP
GUEST_LDFLAGS := -static -s

LIBS       := -lmicrohttpd -ljansson -lsqlite3 -lssl -lcrypto -lcurl -larchive -lpthread
CLI_LIBS   := -ljansson -lcurl -lcrypto -lpthread
TEST_LIBS  := $(LIBS) -lcmocka

# Library code shared by the binaries: every module under src/ except the
# program entry points, plus what the guest shares with the host: the config
# disk format, and the agent channel's framing, JSON, base64 and request decoder (unit-tested and fuzzed here).
LIB_SRC    := $(filter-out %/main.c %_main.c,$(wildcard src/*/*.c)) guest/config.c guest/json.c \
              guest/b64.c guest/lines.c guest/request.c
LIB_ASM    := $(wildcard src/*/*.S)
DAEMON_SRC := src/daemon/main.c
TOKEN_SRC  := src/auth/token_main.c
UNPACK_SRC := src/image/unpack_main.c
GUEST_SRC  := $(wildcard guest/*.c)
CLI_SRC    := $(wildcard cli/*.c)
CLI_LIB    := $(wildcard src/core/*.c) src/auth/jwt.c src/auth/secret.c
TEST_SRC   := $(wildcard tests/unit/test_*.c)
# Fakes for unit tests only (named fake_*: never linked into a program).
FAKE_SRC   := $(wildcard tests/unit/fake_*.c)

objs = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(filter %.c,$(2))) \
       $(patsubst %.S,$(BUILD)/$(1)/%.o,$(filter %.S,$(2)))

SPEC_JSON := $(BUILD)/gen/openapi.json
YAML2JSON := $(BUILD)/tools/yaml2json

.SECONDARY:
.PHONY: all bins san fuzz-bins fuzz setup run test bench format format-check clean
all: bins

PROGS := hypeman-api hypeman hypeman-token hypeman-unpack hypeman-init
bins: $(addprefix $(BUILD)/rel/bin/,$(PROGS))
san:  $(addprefix $(BUILD)/san/bin/,$(PROGS)) \
      $(patsubst tests/unit/%.c,$(BUILD)/san/tests/%,$(TEST_SRC))

define variant
$(BUILD)/$(1)/%.o: %.c
	@mkdir -p $$(@D)
	@echo "  CC      $$@"
	@$$(CC) $$($(2)_CFLAGS) -c $$< -o $$@

$(BUILD)/$(1)/%.o: %.S $(SPEC_JSON)
	@mkdir -p $$(@D)
	@echo "  AS      $$@"
	@$$(CC) -Wa,-I.,-I$(BUILD)/gen -c $$< -o $$@

$(BUILD)/$(1)/bin/hypeman-api: $(call objs,$(1),$(DAEMON_SRC) $(LIB_SRC) $(LIB_ASM))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$($(2)_LDFLAGS) $$^ -o $$@ $$(LIBS)

$(BUILD)/$(1)/bin/hypeman-unpack: $(call objs,$(1),$(UNPACK_SRC) $(LIB_SRC) $(LIB_ASM))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$($(2)_LDFLAGS) $$^ -o $$@ $$(LIBS)

$(BUILD)/$(1)/bin/hypeman-token: $(call objs,$(1),$(TOKEN_SRC) $(CLI_LIB))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$($(2)_LDFLAGS) $$^ -o $$@ $$(CLI_LIBS)

$(BUILD)/$(1)/bin/hypeman: $(call objs,$(1),$(CLI_SRC) $(CLI_LIB))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$($(2)_LDFLAGS) $$^ -o $$@ $$(CLI_LIBS)

$(BUILD)/$(1)/guest-static/%.o: guest/%.c
	@mkdir -p $$(@D)
	@echo "  CC      $$@"
	@$$(CC) $$(GUEST_CFLAGS) -c $$< -o $$@

$(BUILD)/$(1)/bin/hypeman-init: $(patsubst guest/%.c,$(BUILD)/$(1)/guest-static/%.o,$(GUEST_SRC))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$(GUEST_LDFLAGS) $$^ -o $$@

$(BUILD)/$(1)/tests/%: $(BUILD)/$(1)/tests/unit/%.o $(call objs,$(1),$(LIB_SRC) $(LIB_ASM) $(FAKE_SRC))
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$$(CC) $$($(2)_LDFLAGS) $$^ -o $$@ $$(TEST_LIBS)
endef
$(eval $(call variant,rel,REL))
$(eval $(call variant,san,SAN))

# Fuzz targets (tests/fuzz/fuzz_*.c, libFuzzer): clang, ASan+UBSan, the
# library built once more with the fuzzer's coverage. `make test` replays
# each target's corpus and fuzzes it for a few seconds (tests/fuzz/run.sh);
# `make fuzz` runs them long (FUZZ_SECONDS each, default 300).
FUZZ_CC     ?= clang
FUZZ_CFLAGS := $(filter-out -Wjump-misses-init,$(BASE_CFLAGS)) -O1 -g -fno-omit-frame-pointer \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/bin/%,$(FUZZ_SRC))

$(BUILD)/fuzz/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(BUILD)/fuzz/%.o: %.S $(SPEC_JSON)
	@mkdir -p $(@D)
	@echo "  AS      $@"
	@$(FUZZ_CC) -Wa,-I.,-I$(BUILD)/gen -c $< -o $@

$(BUILD)/fuzz/bin/%: $(BUILD)/fuzz/tests/fuzz/%.o $(call objs,fuzz,$(LIB_SRC) $(LIB_ASM))
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $^ -o $@ $(LIBS)

fuzz-bins: $(FUZZ_BINS)

fuzz: setup fuzz-bins
	@tests/fuzz/run.sh long

# Build tool: YAML -> JSON, so the API spec is written once (api/openapi.yaml)
# and served in both forms.
$(YAML2JSON): tools/yaml2json.c
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $< -o $@ -lyaml -ljansson

$(SPEC_JSON): api/openapi.yaml $(YAML2JSON)
	@mkdir -p $(@D)
	$(YAML2JSON) $< $@.tmp && mv $@.tmp $@

# Packages, then the guest kernel (Debian's cloud kernel, unpacked, never
# installed) into the data dir's system folder; both are no-ops when done.
setup:
	@scripts/setup.sh
	@scripts/kernel.sh "$(DATA_DIR)/system/kernel"

run: setup bins
	@scripts/run.sh "$(BUILD)/rel/bin" "$(DATA_DIR)" "$(PORT)"

test: setup
	@$(MAKE) --no-print-directory bins san fuzz-bins
	@tests/run.sh

# Benchmarks (not part of `make test`): ratios against the existing tools.
bench: setup bins
	node bench/pull.mjs 5
	node bench/boot.mjs 7
	node bench/standby.mjs 5
	node bench/wake.mjs 20
	node bench/egress.mjs 50

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
