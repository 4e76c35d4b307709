# ngx_http_voice_module: build, run and test.
#
#   make run     nginx with the module on 127.0.0.1:8080 (foreground)
#   make test    every test suite
#   make bench   the standard load scenarios (not part of make test)

SHELL       := /bin/bash
NGX_SRC     ?= /usr/share/nginx/src
NGINX       ?= /usr/sbin/nginx
BUILD       := $(CURDIR)/build
NGX_BUILD   := $(BUILD)/nginx-src
MODULE      := $(BUILD)/ngx_http_voice_module.so
PY          := /usr/bin/python3
CC          ?= cc
CFLAGS_TOOL := -O2 -g -Wall -Wextra -Werror

# Every Debian package the project needs, in one place.
DEBIAN_PACKAGES := nginx nginx-dev build-essential pkg-config \
    libssl-dev libpcre2-dev zlib1g-dev libjansson-dev \
    libopus-dev libsamplerate0-dev espeak-ng sox \
    libcmocka-dev libtest-base-perl libtext-diff-perl libtest-longstring-perl \
    liblist-moreutils-perl libipc-run-perl libwww-perl libjson-perl \
    python3-websockets nodejs procps clang libclang-rt-14-dev \
    libcurl4-openssl-dev libpocketsphinx-dev libsphinxbase-dev \
    pocketsphinx-en-us libespeak-ng-dev chromium libsndfile1-dev

MODULE_SRCS := $(wildcard ngx_http_voice_module/*.[ch] adapters/*.[ch] \
                           state/*.[ch]) config

# Pure units and the sources each unit test links.
UNIT_TESTS  := ws ring state audio vad playout transcript phrase sse \
               llm_wire
UNIT_ws     := ngx_http_voice_module/ngx_http_voice_ws.c
UNIT_ring   := ngx_http_voice_module/ngx_http_voice_ring.c
UNIT_state  := state/ngx_http_voice_state.c
UNIT_audio_SRC := ngx_http_voice_module/ngx_http_voice_audio.c
UNIT_audio  := $(UNIT_audio_SRC) -lopus -lsamplerate -lm
UNIT_vad_SRC := ngx_http_voice_module/ngx_http_voice_vad.c
UNIT_vad    := $(UNIT_vad_SRC) -lm
UNIT_playout := ngx_http_voice_module/ngx_http_voice_playout.c
UNIT_transcript := ngx_http_voice_module/ngx_http_voice_transcript.c
UNIT_phrase := ngx_http_voice_module/ngx_http_voice_phrase.c
UNIT_sse    := -Iadapters adapters/ngx_http_voice_sse.c
UNIT_llm_wire := -Iadapters -I$(NGX_BUILD)/src/http \
                 -I$(NGX_BUILD)/src/http/modules -I$(NGX_BUILD)/src/http/v2 \
                 adapters/ngx_http_voice_llm_wire.c -ljansson
UNIT_INCS    = -I$(NGX_BUILD)/objs -I$(NGX_BUILD)/src/core \
               -I$(NGX_BUILD)/src/event -I$(NGX_BUILD)/src/os/unix \
               -Ingx_http_voice_module -Istate

TOOLS       := $(BUILD)/voice-bench $(BUILD)/audio-bench $(BUILD)/vad-bench \
               $(BUILD)/voice-client

.PHONY: all deps module tools unit run test test-unit test-nginx \
        test-integration test-mock test-stt test-llm test-tts test-e2e test-curl \
        curl-test-module espeak-probe test-cli demo \
        bench fuzz sphinx-probe clean

all: module tools

deps: $(BUILD)/.deps

$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

# nginx's own build system compiles the module against Debian's nginx
# sources with the flags Debian used (--with-compat among them), so the
# result loads into the stock /usr/sbin/nginx.
$(NGX_BUILD)/.configured: config | $(BUILD)/.deps
	rm -rf $(NGX_BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && source ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="-g -O2 -Wall -Werror" \
	        --add-dynamic-module=$(CURDIR) > $(BUILD)/configure.log
	@touch $@

module: $(MODULE)

$(MODULE): $(NGX_BUILD)/.configured $(MODULE_SRCS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_voice_module.so $@.tmp
	mv -f $@.tmp $@

# A test-only module drives ngx_http_voice_curl.c from a location.  It
# holds the same symbols as the real module, so it gets its own nginx
# tree and is always loaded alone.
CURL_TEST_BUILD  := $(BUILD)/nginx-curl-test
CURL_TEST_MODULE := $(BUILD)/ngx_http_voice_curl_test_module.so
CURL_TEST_SRCS   := t/curl/config t/curl/ngx_http_voice_curl_test_module.c \
                    ngx_http_voice_module/ngx_http_voice_curl.c \
                    ngx_http_voice_module/ngx_http_voice_curl.h

$(CURL_TEST_BUILD)/.configured: t/curl/config | $(BUILD)/.deps
	rm -rf $(CURL_TEST_BUILD)
	cp -r $(NGX_SRC) $(CURL_TEST_BUILD)
	cd $(CURL_TEST_BUILD) && source ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="-g -O2 -Wall -Werror" \
	        --add-dynamic-module=$(CURDIR)/t/curl \
	        > $(BUILD)/configure-curl-test.log
	@touch $@

curl-test-module: $(CURL_TEST_MODULE)

$(CURL_TEST_MODULE): $(CURL_TEST_BUILD)/.configured $(CURL_TEST_SRCS)
	$(MAKE) -s -C $(CURL_TEST_BUILD) -f objs/Makefile modules
	cp $(CURL_TEST_BUILD)/objs/ngx_http_voice_curl_test_module.so $@.tmp
	mv -f $@.tmp $@

tools: $(TOOLS)

$(BUILD)/voice-bench: tools/voice-bench.c | $(BUILD)/.deps
	$(CC) $(CFLAGS_TOOL) -o $@ $< -lm

$(BUILD)/voice-client: tools/voice-client.c | $(BUILD)/.deps
	$(CC) $(CFLAGS_TOOL) -o $@ $< -lsndfile -lsamplerate -ljansson -lm

$(BUILD)/audio-bench: tools/audio-bench.c $(UNIT_audio_SRC) | $(NGX_BUILD)/.configured
	$(CC) $(CFLAGS_TOOL) $(UNIT_INCS) -o $@ $< $(UNIT_audio)

$(BUILD)/vad-bench: tools/vad-bench.c $(UNIT_vad_SRC) | $(NGX_BUILD)/.configured
	$(CC) $(CFLAGS_TOOL) $(UNIT_INCS) -o $@ $< $(UNIT_vad)

# C unit tests (cmocka) of the pure parts: no nginx runtime involved.
unit: $(addprefix $(BUILD)/unit/test_,$(UNIT_TESTS))

$(BUILD)/unit/test_%: t/unit/test_%.c $(MODULE_SRCS) | $(NGX_BUILD)/.configured
	@mkdir -p $(BUILD)/unit
	$(CC) -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
	    $(UNIT_INCS) -o $@ $< $(UNIT_$*) -lcmocka

# ---- running ---------------------------------------------------------------

RUN_PREFIX := $(BUILD)/run

run: all
	@mkdir -p $(RUN_PREFIX)/logs $(RUN_PREFIX)/tmp
	@sed -e 's|@MODULE@|$(MODULE)|g' -e 's|@ROOT@|$(CURDIR)|g' \
	    conf/nginx.conf > $(RUN_PREFIX)/nginx.conf
	$(NGINX) -t -q -p $(RUN_PREFIX)/ -c $(RUN_PREFIX)/nginx.conf
	@echo "open http://127.0.0.1:8080/ and speak (the voice agent is"
	@echo "  ws://127.0.0.1:8080/voice; /echo, /twilio, /vonage echo audio)"
	@echo "stop with Ctrl-C"
	exec $(NGINX) -p $(RUN_PREFIX)/ -c $(RUN_PREFIX)/nginx.conf \
	    -g 'daemon off; master_process on;'

# ---- tests -----------------------------------------------------------------

test: all unit
	@$(MAKE) -s test-unit test-nginx test-mock test-curl test-integration \
	    test-stt test-llm test-tts test-e2e test-cli

# the labelled set the VAD is tuned and tested on: generated, not kept
VAD_SET     := $(BUILD)/vad

$(VAD_SET)/index.txt: t/vad/gen.py | $(BUILD)/.deps
	$(PY) t/vad/gen.py $(VAD_SET)

test-unit: unit $(VAD_SET)/index.txt
	@set -e; for t in $(UNIT_TESTS); do \
	    NGX_HTTP_VOICE_VAD_SET=$(VAD_SET) $(BUILD)/unit/test_$$t; done

# The t/*.t files are Test::Nginx::Socket suites.  When the real
# Test::Nginx (CPAN) is not installed, the compatible runner in t/lib
# takes its place.
test-nginx: all
	@export TEST_NGINX_BINARY=$(NGINX) \
	    TEST_NGINX_LOAD_MODULES=$(MODULE) \
	    TEST_NGINX_SERVROOT=$(BUILD)/servroot; \
	if perl -MTest::Nginx::Socket -e 1 2>/dev/null; then \
	    prove t/*.t; \
	else \
	    prove -It/lib t/*.t; \
	fi

test-integration: all
	@cd t/integration && $(PY) run.py

# libcurl on the event loop, through the test-only module (VALGRIND=1
# runs nginx under valgrind, one process)
test-curl: $(CURL_TEST_MODULE)
	@VOICE_CURL_NGINX=$(NGINX) VOICE_CURL_TEST_MODULE=$(CURL_TEST_MODULE) \
	    VOICE_CURL_VALGRIND=$(VALGRIND) $(PY) t/curl/test_curl.py

# speech to text against the provider mocks, over ws:// and wss://, and
# the embedded engine
test-stt: all
	@$(PY) t/stt/run.py

# the language model stage against the LLM mock
test-llm: all
	@$(PY) t/llm/run.py

# speech synthesis and barge-in against the TTS and LLM mocks
test-tts: all
	@$(PY) t/tts/run.py

# the web client in headless Chromium, driven by Playwright
test-e2e: all
	@cd t/e2e && npm ci --no-audit --no-fund --silent && node run.mjs

# the command line client against the agent, end to end
test-cli: all
	@$(PY) t/cli/run.py

# a short spoken conversation with barge-in, printed with its latencies
demo: all
	@tools/demo.sh

# the provider mocks check themselves before anything relies on them
test-mock: $(BUILD)/.deps
	@$(PY) t/mock/test_deepgram_mock.py
	@$(PY) t/mock/test_llm_mock.py
	@$(PY) t/mock/test_tts_mock.py

# Coverage-guided fuzzing of the frame parser (clang's libFuzzer); not
# part of make test.  FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 120

fuzz: $(NGX_BUILD)/.configured
	@mkdir -p $(BUILD)/fuzz/corpus_ws
	clang -g -O1 -fsanitize=fuzzer,address,undefined $(UNIT_INCS) \
	    -o $(BUILD)/fuzz/fuzz_ws t/fuzz/fuzz_ws.c \
	    ngx_http_voice_module/ngx_http_voice_ws.c
	$(BUILD)/fuzz/fuzz_ws -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	    $(BUILD)/fuzz/corpus_ws

bench: all
	@$(PY) tools/bench.py $(BENCH_ARGS)

# Measures pocketsphinx (memory per decoder, speed, accuracy) for the
# embedded offline STT; not part of make all.
SPHINX_PACKAGES := libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us

sphinx-probe: $(BUILD)/sphinx-probe

$(BUILD)/sphinx-probe: tools/sphinx-probe.c | $(BUILD)/.deps
	@dpkg-query -W $(SPHINX_PACKAGES) >/dev/null 2>&1 \
	    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	           --no-install-recommends $(SPHINX_PACKAGES)
	$(CC) $(CFLAGS_TOOL) -pthread -I/usr/include/pocketsphinx -o $@ $< \
	    -lpocketsphinx -lsphinxbase

# Measures espeak-ng (speed, streaming, stopping, threads) for the
# embedded offline TTS; not part of make all.
espeak-probe: $(BUILD)/espeak-probe

$(BUILD)/espeak-probe: tools/espeak-probe.c | $(BUILD)/.deps
	$(CC) $(CFLAGS_TOOL) -pthread -o $@ $< -lespeak-ng -lsamplerate -lm

clean:
	rm -rf $(BUILD) t/servroot
