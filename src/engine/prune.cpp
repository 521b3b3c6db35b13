#include "engine/prune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/generate.h"
#include "engine/prune_mask.h"
#include "formats/gguf_stream.h"
#include "util/error.h"
#include "util/threadpool.h"

namespace coppice {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void set_kv(std::vector<gguf::KV>& kvs, const std::string& key, gguf::Value v) {
  for (gguf::KV& kv : kvs)
    if (kv.key == key) { kv.value = std::move(v); return; }
  kvs.push_back({key, std::move(v)});
}

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail("prune", path + ": cannot open calibration text");
  std::string s;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  std::fclose(f);
  return s;
}

const char* method_name(PruneMethod m) {
  switch (m) {
    case PruneMethod::Magnitude: return "magnitude";
    case PruneMethod::Wanda: return "wanda";
    case PruneMethod::Structured: return "structured";
    case PruneMethod::Experts: return "experts";
    default: return "nm";
  }
}

// Zeros stay exact when the rows go back to these types (q8_0: symmetric codes, 0 -> 0).
bool maskable_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0;
}

// Runs the calibration text (or tokens the model samples itself) with `obs` attached.
void run_calibration_source(Model& model, const PruneOptions& opts, ActivationObserver& obs,
               const std::function<void(const std::string&)>& note) {
  const int ctx = std::max(8, opts.calib_ctx);
  const std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(model.file());
  if (!opts.calib_file.empty()) {
    std::vector<int32_t> tokens = tok->encode(read_file(opts.calib_file), true, false);
    if (static_cast<int>(tokens.size()) > opts.calib_tokens) tokens.resize(static_cast<size_t>(opts.calib_tokens));
    if (tokens.empty()) fail("prune", opts.calib_file + ": no calibration tokens");
    note("calibrating on " + std::to_string(tokens.size()) + " tokens of " + opts.calib_file);
    run_calibration(model, tokens, ctx, obs);
  } else {
    note("calibrating on " + std::to_string(opts.calib_tokens) + " tokens sampled from the model");
    model.set_observer(&obs);
    try {
      self_generated_tokens(model, *tok, opts.calib_tokens, ctx, opts.seed);
    } catch (...) {
      model.set_observer(nullptr);
      throw;
    }
    model.set_observer(nullptr);
  }
}

}  // namespace

bool prunable_tensor(const std::string& name, int* layer, MatInput* site) {
  if (name.rfind("blk.", 0) != 0) return false;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4) return false;
  int il = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    il = il * 10 + (name[i] - '0');
  }
  static const std::pair<const char*, MatInput> kNames[] = {
      {"attn_q.weight", MatInput::AttnIn},   {"attn_k.weight", MatInput::AttnIn},
      {"attn_v.weight", MatInput::AttnIn},   {"attn_qkv.weight", MatInput::AttnIn},
      {"attn_output.weight", MatInput::AttnOut}, {"ffn_gate.weight", MatInput::FfnIn},
      {"ffn_up.weight", MatInput::FfnIn},    {"ffn_down.weight", MatInput::FfnDown}};
  const std::string rest = name.substr(dot + 1);
  for (const auto& [n, s] : kNames) {
    if (rest == n) {
      if (layer) *layer = il;
      if (site) *site = s;
      return true;
    }
  }
  return false;
}

void ActivationNorms::observe(int il, MatInput site, const float* x, int n_tok, int64_t dim) {
  if (il < 0 || static_cast<size_t>(il) >= sumsq_.size()) return;
  const auto l = static_cast<size_t>(il), k = static_cast<size_t>(site);
  std::vector<double>& acc = sumsq_[l][k];
  std::vector<double>& sum = sum_[l][k];
  if (acc.empty()) {
    acc.assign(static_cast<size_t>(dim), 0.0);
    sum.assign(static_cast<size_t>(dim), 0.0);
    count_[l][k] = 0;
  }
  CP_ASSERT(static_cast<int64_t>(acc.size()) == dim);
  for (int t = 0; t < n_tok; ++t) {
    const float* row = x + t * dim;
    for (int64_t j = 0; j < dim; ++j) {
      acc[j] += static_cast<double>(row[j]) * row[j];
      sum[j] += row[j];
    }
  }
  count_[l][k] += n_tok;
  if (il == 0 && site == MatInput::AttnIn) tokens_ += n_tok;
}

std::vector<float> ActivationNorms::norms(int il, MatInput site) const {
  if (il < 0 || static_cast<size_t>(il) >= sumsq_.size()) return {};
  const std::vector<double>& acc = sumsq_[static_cast<size_t>(il)][static_cast<size_t>(site)];
  std::vector<float> out(acc.size());
  for (size_t j = 0; j < acc.size(); ++j) out[j] = static_cast<float>(std::sqrt(acc[j]));
  return out;
}

std::vector<double> ActivationNorms::means(int il, MatInput site) const {
  if (il < 0 || static_cast<size_t>(il) >= sum_.size()) return {};
  const auto l = static_cast<size_t>(il), k = static_cast<size_t>(site);
  std::vector<double> m(sum_[l][k].size());
  const double n = static_cast<double>(std::max<int64_t>(1, count_[l][k]));
  for (size_t j = 0; j < m.size(); ++j) m[j] = sum_[l][k][j] / n;
  return m;
}

std::vector<double> ActivationNorms::variances(int il, MatInput site) const {
  if (il < 0 || static_cast<size_t>(il) >= sumsq_.size()) return {};
  const auto l = static_cast<size_t>(il), k = static_cast<size_t>(site);
  std::vector<double> v(sumsq_[l][k].size());
  const double n = static_cast<double>(std::max<int64_t>(1, count_[l][k]));
  for (size_t j = 0; j < v.size(); ++j) {
    const double mean = sum_[l][k][j] / n;
    v[j] = std::max(0.0, sumsq_[l][k][j] / n - mean * mean);
  }
  return v;
}

void run_calibration(Model& model, const std::vector<int32_t>& tokens, int n_ctx, ActivationObserver& norms) {
  KvCache cache = model.make_cache(n_ctx);
  std::vector<float> logits;
  model.set_observer(&norms);
  try {
    for (size_t b = 0; b < tokens.size(); b += static_cast<size_t>(n_ctx)) {
      const size_t e = std::min(tokens.size(), b + static_cast<size_t>(n_ctx));
      const std::vector<int32_t> seq(tokens.begin() + static_cast<std::ptrdiff_t>(b),
                                     tokens.begin() + static_cast<std::ptrdiff_t>(e));
      cache.add_sequence(0);
      prefill(model, cache, 0, seq, 512, false, logits);
      cache.remove_sequence(0);
    }
  } catch (...) {
    model.set_observer(nullptr);
    throw;
  }
  model.set_observer(nullptr);
}

std::vector<std::vector<int32_t>> self_generated_tokens(Model& model, const Tokenizer& tok, int n_tokens,
                                                        int seq_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  int total = 0;
  KvCache cache = model.make_cache(seq_len);
  std::vector<float> logits;
  const int64_t V = model.n_vocab();
  std::vector<double> p(static_cast<size_t>(V));
  while (total < n_tokens) {
    cache.add_sequence(0);
    std::vector<int32_t>& out = seqs.emplace_back();
    int32_t t = tok.bos() >= 0 ? tok.bos() : 0;
    for (int pos = 0; pos < seq_len && total < n_tokens; ++pos, ++total) {
      out.push_back(t);
      const BatchToken bt{t, pos, 0, true};
      model.step(std::span<const BatchToken>(&bt, 1), cache, logits);
      const float mx = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += p[j] = std::exp(static_cast<double>(logits[j]) - mx);
      double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
      int64_t j = 0;
      while (j < V - 1 && u >= p[j]) u -= p[j++];
      t = static_cast<int32_t>(j);
      if (tok.is_eog(t)) break;  // a new sequence from BOS
    }
    cache.remove_sequence(0);
  }
  return seqs;
}

PruneReport prune_file(const std::string& in, const std::string& out, const PruneOptions& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (in == out || (fs::exists(out, ec) && fs::equivalent(in, out, ec)))
    fail("prune", "input and output are the same file (" + out + "); write to a new path");
  if (opts.sparsity < 0 || opts.sparsity > 1)
    fail("prune", "sparsity must be in [0, 1], got " + std::to_string(opts.sparsity));
  if (opts.method == PruneMethod::NM && (opts.nm_m < 1 || opts.nm_n < 0 || opts.nm_n > opts.nm_m))
    fail("prune", "N:M needs 0 <= N <= M, M >= 1 (got " + std::to_string(opts.nm_n) + ":" +
                      std::to_string(opts.nm_m) + ")");
  const double t0 = now_s();
  auto note = [&](const std::string& s) { if (opts.on_note) opts.on_note(s); };
  const gguf::File f = gguf::File::open(in);
  PruneReport rep;

  if (opts.method == PruneMethod::Experts) {
    ModelOptions mo;
    mo.n_threads = opts.n_threads;
    std::unique_ptr<Model> model = Model::load(in, mo);
    const ModelConfig c = model->config();  // a copy: the model is released before writing
    if (c.n_expert == 0) fail("prune", "experts: " + in + " is not a mixture-of-experts model (no expert_count)");
    if (opts.experts_keep < 0 || opts.experts_keep > c.n_expert)
      fail("prune", "experts: --experts-keep " + std::to_string(opts.experts_keep) + " is outside 1.." +
                        std::to_string(c.n_expert) + " (the model's expert_count)");
    if (opts.experts_keep == 0 && c.n_expert - std::llround(opts.sparsity * static_cast<double>(c.n_expert)) < 1)
      fail("prune", "experts: --sparsity " + std::to_string(opts.sparsity) + " would remove all " +
                        std::to_string(c.n_expert) + " experts of a layer; at least one must stay");
    ExpertStats stats(static_cast<int>(c.n_layer), static_cast<int>(c.n_expert));
    run_calibration_source(*model, opts, stats, note);
    model.reset();
    PruneReport r = prune_experts(f, out, opts, stats);
    for (int il = 0; il < static_cast<int>(c.n_layer); ++il) r.calib_tokens = std::max(r.calib_tokens, stats.tokens(il));
    r.seconds = now_s() - t0;
    return r;
  }

  // Check every matrix first: the output is written only when all can be pruned.
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (!prunable_tensor(t.name, nullptr, nullptr) || opts.method == PruneMethod::Structured) continue;
    if (!maskable_type(t.type))
      fail("prune", t.name + ": type " + std::string(dtype_name(t.type)) +
                        " cannot hold exact zeros; prune an F32/F16/BF16/Q8_0 model, then quantize");
    if (opts.method == PruneMethod::NM && t.dims[0] % opts.nm_m != 0)
      fail("prune", t.name + ": rows of " + std::to_string(t.dims[0]) + " are not a multiple of M = " +
                        std::to_string(opts.nm_m));
  }

  const bool calibrate = opts.method == PruneMethod::Wanda || opts.method == PruneMethod::Structured ||
                         (opts.method == PruneMethod::NM && !opts.nm_magnitude);
  std::unique_ptr<ActivationNorms> norms;
  if (calibrate) {
    ModelOptions mo;
    mo.n_threads = opts.n_threads;
    std::unique_ptr<Model> model = Model::load(in, mo);
    norms = std::make_unique<ActivationNorms>(static_cast<int>(model->config().n_layer));
    run_calibration_source(*model, opts, *norms, note);
    rep.calib_tokens = norms->tokens();
  }

  if (opts.method == PruneMethod::Structured) {
    PruneReport r = prune_structured(f, out, opts, *norms);
    r.calib_tokens = rep.calib_tokens;
    r.seconds = now_s() - t0;
    return r;
  }

  std::vector<gguf::KV> kvs = f.kvs();
  set_kv(kvs, "coppice.prune.method", gguf::Value::make_string(method_name(opts.method)));
  if (opts.method == PruneMethod::NM) {
    set_kv(kvs, "coppice.prune.n", gguf::Value::make_u32(static_cast<uint32_t>(opts.nm_n)));
    set_kv(kvs, "coppice.prune.m", gguf::Value::make_u32(static_cast<uint32_t>(opts.nm_m)));
  } else {
    set_kv(kvs, "coppice.prune.sparsity", gguf::Value::make_f32(static_cast<float>(opts.sparsity)));
  }
  std::vector<gguf::StreamTensor> plan;
  for (const gguf::TensorInfo& t : f.tensors()) plan.push_back({t.name, t.dims, t.type, t.size});

  ThreadPool pool(opts.n_threads > 0 ? opts.n_threads : ThreadPool::default_threads());
  gguf::StreamWriter w(out, kvs, plan);
  std::vector<float> mat;
  std::vector<uint8_t> buf;
  std::vector<int64_t> zeros(static_cast<size_t>(pool.size()));
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const gguf::TensorInfo& t = f.tensors()[i];
    int il = 0;
    MatInput site = MatInput::AttnIn;
    if (!prunable_tensor(t.name, &il, &site)) {
      w.write_tensor(t.data, t.size);
    } else {
      const int64_t n = t.dims[0], rows = t.n_elements() / n;
      const TypeTraits& tt = *type_traits(t.type);
      const size_t row_b = row_size(tt, n);
      std::vector<float> nrm;
      if (norms) {
        nrm = norms->norms(il, site);
        if (static_cast<int64_t>(nrm.size()) != n) {
          note("note: " + t.name + ": no activation statistics, scored by magnitude");
          nrm.clear();
        }
      }
      mat.resize(static_cast<size_t>(n * rows));
      buf.resize(t.size);
      std::fill(zeros.begin(), zeros.end(), 0);
      pool.run([&](int ith, int nth) {
        const int64_t r0 = rows * ith / nth, r1 = rows * (ith + 1) / nth;
        if (r1 == r0) return;
        float* m = mat.data() + r0 * n;
        for (int64_t r = r0; r < r1; ++r) tt.to_float(t.data + r * row_b, mat.data() + r * n, n);
        const std::span<float> part(m, static_cast<size_t>((r1 - r0) * n));
        const std::vector<float> s = prune::scores(part, r1 - r0, n, nrm);
        const std::vector<uint8_t> keep =
            opts.method == PruneMethod::NM
                ? prune::nm_mask(s, r1 - r0, n, opts.nm_n, opts.nm_m)
                : prune::row_mask(s, r1 - r0, n, opts.sparsity);
        prune::apply_mask(part, keep);
        int64_t z = 0;
        for (float v : part) z += v == 0.0f;
        zeros[static_cast<size_t>(ith)] = z;
        for (int64_t r = r0; r < r1; ++r) tt.from_float(mat.data() + r * n, buf.data() + r * row_b, n);
      });
      w.write_tensor(buf.data(), t.size);
      ++rep.n_pruned;
      rep.n_weights += n * rows;
      for (int64_t z : zeros) rep.n_zeros += z;
    }
    if (opts.on_progress) opts.on_progress(i + 1, f.tensors().size(), t.name);
  }
  rep.n_tensors = f.tensors().size();
  rep.out_file_bytes = w.bytes_written();
  w.finish();
  rep.in_file_bytes = f.mapping()->size();
  rep.seconds = now_s() - t0;
  return rep;
}

}  // namespace coppice
