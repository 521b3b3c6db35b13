#!/usr/bin/env bash
# Builds the GGUF parser fuzz target with clang's libFuzzer (+ASan/UBSan) and runs it for a
# bounded time, seeded with the shared model headers. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out" "$out/corpus"
CXX=${FUZZ_CXX:-clang++-14}
flags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc)
# The kernels, each ISA file of the host architecture with the same flags CMake gives it
# (runtime dispatch picks one; the other architecture's units are not compiled, as in CMake).
objs=()
arch=$(uname -m)
for src in src/kernels/*.cpp; do
  isa=()
  case "$arch:$src" in
    x86_64:*_neon.cpp | aarch64:*_avx2.cpp | aarch64:*_avx512.cpp) continue ;;
  esac
  case "$src" in
    *_avx2.cpp) isa=(-mavx2 -mfma -mf16c -mbmi2) ;;
    *_avx512.cpp) isa=(-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
                       -mavx2 -mfma -mf16c -mbmi2) ;;
  esac
  obj="$out/$(basename "$src" .cpp).o"
  "$CXX" "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" "${isa[@]}" -c "$src" -o "$obj"
  objs+=("$obj")
done
"$CXX" "${flags[@]}" fuzz/fuzz_gguf.cpp src/formats/gguf_reader.cpp src/formats/gguf_value.cpp \
  src/util/mmap.cpp src/util/cpu.cpp "${objs[@]}" -o "$out/fuzz_gguf"
# Seeds: the first 64 KiB of each shared GGUF (the whole header of the small ones).
for f in ../shared/models/*.gguf ../shared/models/fixtures/*.gguf ../shared/conformance/tokenizer/*.gguf; do
  [ -f "$f" ] && head -c 65536 "$f" > "$out/corpus/$(basename "$f").seed"
done
"$out/fuzz_gguf" "$out/corpus" -max_total_time="$secs" -max_len=131072 -rss_limit_mb=2048 \
  -print_final_stats=1 2>&1 | tail -n 25
echo "fuzz: no crash in ${secs}s"

# The HTTP request parser (+ the stop-string matcher), at most 30 s, seeded with typical bodies.
rsecs=$(( secs < 30 ? secs : 30 ))
mkdir -p "$out/corpus_request"
"$CXX" "${flags[@]}" fuzz/fuzz_request.cpp src/server/request.cpp src/server/search_request.cpp src/server/stop.cpp src/engine/sampling.cpp \
  src/engine/spec_config.cpp src/engine/search_config.cpp \
  src/engine/grammar_sampling.cpp src/grammar/*.cpp src/tokenizer/*.cpp src/formats/gguf_reader.cpp \
  src/formats/gguf_value.cpp src/util/mmap.cpp src/util/cpu.cpp "${objs[@]}" -lpcre2-8 \
  -o "$out/fuzz_request"
printf '%s' '{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi there"}]}],"max_tokens":16,"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":3,"stop":["\n\n","there"],"n":2,"logprobs":true,"top_logprobs":3,"presence_penalty":0.5,"frequency_penalty":0.1,"repetition_penalty":1.1,"logit_bias":{"42":-100},"stream":true,"stream_options":{"include_usage":true},"user":"u"}' \
  > "$out/corpus_request/chat.json"
printf '%s' '{"model":"m","prompt":"Once upon a time, a little girl","max_tokens":8,"logprobs":2,"stop":"girl","seed":-1}' \
  > "$out/corpus_request/completion.json"
printf '%s' '{"prompt":[1,403,407,261],"max_completion_tokens":4,"stop":null,"echo":true}' > "$out/corpus_request/ids.json"
printf '%s' '{"prompt":"Q","best_of":3,"n":2,"search":{"strategy":"beam","budget":64,"n":4,"unit":"delim:.","scorer":{"type":"rules","keywords":["dog"],"rules":[{"pattern":"\\.$","weight":1}]}}}' \
  > "$out/corpus_request/search.json"
"$out/fuzz_request" "$out/corpus_request" -max_total_time="$rsecs" -max_len=16384 -rss_limit_mb=2048 \
  -print_final_stats=1 2>&1 | tail -n 12
echo "fuzz: request parser, no crash in ${rsecs}s"
