// `coppice convert FOLDER OUT.gguf [--type f16|bf16|q8_0|f32]`: a Hugging Face folder
// (formats/hf_folder.h) written as a GGUF. Matrices get the chosen type, 1-D tensors (norms)
// stay f32; q8_0 goes through an f32 temporary and the quantizer. The tokenizer travels as
// tokenizer.huggingface.json / .config text, so the GGUF encodes exactly as the folder.
#include <cstdio>
#include <filesystem>

#include "apps/commands.h"
#include "engine/quantize.h"
#include "formats/gguf.h"
#include "formats/hf_folder.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct ConvertArgs {
  std::string in, out, type = "f16";
};

void write_plain(const gguf::File& f, const std::string& out, DType type) {
  std::vector<gguf::KV> kvs = f.kvs();
  kvs.push_back({"general.file_type", gguf::Value::make_u32(type == DType::F32 ? 0u : type == DType::F16 ? 1u : 32u)});
  std::vector<std::vector<uint8_t>> bufs;  // converted tensor data
  std::vector<gguf::WriterTensor> ts;
  bufs.reserve(f.tensors().size());
  std::vector<float> tmp;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const DType to = t.dims.size() >= 2 ? type : DType::F32;
    const TypeTraits& src = *type_traits(t.type);
    const TypeTraits& dst = *type_traits(to);
    gguf::WriterTensor w{t.name, t.dims, to, t.data, t.size};
    if (to != t.type) {
      const int64_t n = t.n_elements();
      tmp.resize(static_cast<size_t>(n));
      src.to_float(t.data, tmp.data(), n);
      bufs.emplace_back(row_size(dst, n));
      dst.from_float(tmp.data(), bufs.back().data(), n);
      w.data = bufs.back().data();
      w.size = bufs.back().size();
    }
    ts.push_back(std::move(w));
  }
  gguf::write_file(out, kvs, ts);
}

int convert(const ConvertArgs& a) {
  if (!hf::is_model_folder(a.in)) fail("convert", a.in + ": not a Hugging Face model folder (no config.json)");
  const gguf::File f = hf::open_folder(a.in);
  if (a.type == "f32" || a.type == "f16" || a.type == "bf16") {
    write_plain(f, a.out, *dtype_from_name(a.type));
  } else if (a.type == "q8_0") {
    const std::string tmp = a.out + ".f32.tmp";
    write_plain(f, tmp, DType::F32);
    QuantizeOptions qo;
    qo.target = *parse_quant_target("q8_0");
    try {
      quantize_file(tmp, a.out, qo);
    } catch (...) {
      std::filesystem::remove(tmp);
      throw;
    }
    std::filesystem::remove(tmp);
  } else {
    fail("convert", "--type " + a.type + " is not supported (f32, f16, bf16, q8_0)");
  }
  std::printf("wrote %s: %zu tensors, %s\n", a.out.c_str(), f.tensors().size(), a.type.c_str());
  return 0;
}

}  // namespace

Action register_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* sub = app.add_subcommand("convert", "write a Hugging Face model folder as a GGUF");
  sub->add_option("FOLDER", a->in, "folder with config.json, *.safetensors, tokenizer.json")->required();
  sub->add_option("OUT", a->out, "output GGUF")->required();
  sub->add_option("--type", a->type, "matrix type: f16 (default), bf16, f32, q8_0");
  return [a] { return convert(*a); };
}

}  // namespace coppice::cli
