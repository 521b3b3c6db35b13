// `coppice quantize IN OUT TYPE [--pure] [-t N]`: convert a GGUF's weights to another type or
// a llama.cpp preset mix (engine/quantize.h). Progress on stderr when it is a terminal.

#include <cstdio>

#include "apps/commands.h"
#include "apps/common.h"
#include "engine/quantize.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct QuantizeArgs {
  std::string in, out, type;
  bool pure = false;
  int threads = 0;
};

std::string mib(uint64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f MiB", static_cast<double>(b) / 1048576.0);
  return s;
}

int quantize(const QuantizeArgs& a) {
  const auto target = parse_quant_target(a.type);
  if (!target) fail("quantize", "unknown type '" + a.type + "'; valid types: " + quant_target_list());
  QuantizeOptions o;
  o.target = *target;
  o.pure = a.pure;
  o.n_threads = a.threads;
  ProgressLine bar("quantize");
  o.on_note = [&](const std::string& s) { bar.note(s); };
  if (bar.enabled()) {
    o.on_progress = [&](size_t i, size_t n, const std::string& name, uint64_t bytes, double secs) {
      bar.show("[%4zu/%4zu] %-32s %8.1f MB/s", i, n, name.c_str(),
               secs > 0 ? static_cast<double>(bytes) / 1e6 / secs : 0.0);
    };
  }
  const QuantizeReport r = quantize_file(a.in, a.out, o);
  bar.finish();
  std::printf("quantized %s -> %s as %s%s in %.2f s\n", a.in.c_str(), a.out.c_str(),
              target->name.c_str(), a.pure ? " (pure)" : "", r.seconds);
  std::printf("  input:  %s (tensor data %s)\n", mib(r.in_file_bytes).c_str(), mib(r.in_bytes).c_str());
  std::printf("  output: %s (tensor data %s), general.file_type = %u\n", mib(r.out_file_bytes).c_str(),
              mib(r.out_bytes).c_str(), target->file_type);
  std::printf("  tensors: %zu:", r.n_tensors);
  for (const auto& [type, count] : r.type_counts) std::printf(" %s x%d", type.c_str(), count);
  std::printf("\n");
  return 0;
}

}  // namespace

Action register_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* sub = app.add_subcommand("quantize", "convert a GGUF's weights to another type or preset");
  sub->add_option("IN", a->in, "input GGUF")->required();
  sub->add_option("OUT", a->out, "output GGUF")->required();
  sub->add_option("TYPE", a->type, "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k, "
                                   "or Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K")->required();
  sub->add_flag("--pure", a->pure, "every 2-D tensor in TYPE (no per-tensor mix)");
  sub->add_option("-t,--threads", a->threads, "threads (default: physical cores)")->check(CLI::Range(0, 1024));
  return [a] { return quantize(*a); };
}

}  // namespace coppice::cli
