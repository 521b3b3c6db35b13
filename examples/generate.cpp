// The smallest complete use of the library: load a GGUF model, tokenize a prompt, generate
// greedily with the sampling pipeline, and stream text without splitting UTF-8 characters.
//   build/release/examples/example_generate MODEL.gguf "Once upon a time" 32
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/generate.h"
#include "util/error.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_TOKENS]\n", argv[0]);
    return 2;
  }
  try {
    using namespace coppice;
    // 1. Load: the GGUF is mapped and validated; weights stay in the mapping.
    auto model = Model::load(argv[1]);
    auto tok = Tokenizer::from_gguf(model->file());
    // 2. A paged KV cache with room for 512 cells and one sequence in it.
    KvCache cache = model->make_cache(512);
    cache.add_sequence(0);
    // 3. Greedy sampling (temperature 0); any SamplingParams field can be set here.
    SamplingParams sp;
    sp.temperature = 0;
    Sampler sampler(sp);
    // 4. Prompt -> tokens (BOS per the model's rules), then generate and stream the text.
    const std::string prompt = argv[2];
    const std::vector<int32_t> ids = tok->encode(prompt, true, true);
    StreamDecoder dec(*tok);
    for (int32_t id : ids) dec.push(id);  // the prompt is printed as given
    std::fputs(prompt.c_str(), stdout);
    GenerateOptions go;
    go.n_predict = argc > 3 ? std::atoi(argv[3]) : 32;
    generate(*model, cache, 0, *tok, sampler, ids, go, [&](int32_t id) {
      std::fputs(dec.push(id).c_str(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::puts(dec.flush().c_str());
  } catch (const coppice::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
