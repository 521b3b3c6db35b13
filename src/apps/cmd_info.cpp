// `coppice info`: metadata and tensor table of a GGUF file, `--system` for the CPU features.
#include <nlohmann/json.hpp>
#include <cstdio>
#include <iostream>

#include "apps/commands.h"
#include "formats/hf_folder.h"
#include "apps/common.h"
#include "formats/gguf.h"
#include "kernels/dispatch.h"
#include "util/cpu.h"

namespace coppice::cli {
namespace {

struct InfoArgs {
  ModelArgs model;
  bool json = false;
  bool system = false;
  bool all_tensors = false;
};

nlohmann::json value_json(const gguf::Value& v) {
  using gguf::ValueType;
  if (v.type == ValueType::STRING) return v.str;
  if (v.type == ValueType::BOOL) return *v.as_bool();
  if (v.type == ValueType::ARRAY) {
    nlohmann::json a = nlohmann::json::array();
    for (uint64_t i = 0; i < v.n; ++i) {
      if (v.elem_type == ValueType::STRING) a.push_back(v.strs[i]);
      else if (v.elem_type == ValueType::ARRAY) a.push_back(value_json(v.items[i]));
      else if (v.elem_type == ValueType::F32 || v.elem_type == ValueType::F64) a.push_back(v.array_number(i));
      else a.push_back(static_cast<int64_t>(v.array_number(i)));
    }
    return a;
  }
  if (v.type == ValueType::F32 || v.type == ValueType::F64) return *v.as_float();
  return *v.as_int();
}

int info(const InfoArgs& a) {
  if (a.system) {
    const CpuFeatures c = cpu_features();
    if (a.json) {
      nlohmann::json j = {{"cpu_isa", c.best_isa()}, {"kernel_isa", kernels::kernel_isa_name()}, {"features", c.names()},
                          {"physical_cores", ThreadPool::default_threads()}};
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "cpu isa: " << c.best_isa() << "\nkernel isa: " << kernels::kernel_isa_name() << "\nfeatures:";
      for (const auto& n : c.names()) std::cout << " " << n;
      std::cout << "\nphysical cores: " << ThreadPool::default_threads() << "\n";
    }
    return 0;
  }
  const std::string path = resolve_model(a.model);
  gguf::File f = hf::open_model_file(path);
  uint64_t total = 0;
  for (const auto& t : f.tensors()) total += t.size;
  if (a.json) {
    nlohmann::json j;
    j["path"] = path;
    j["version"] = f.version();
    j["alignment"] = f.alignment();
    j["tensor_bytes"] = total;
    nlohmann::json md = nlohmann::json::object();
    for (const auto& kv : f.kvs()) md[kv.key] = value_json(kv.value);
    j["metadata"] = md;
    nlohmann::json ts = nlohmann::json::array();
    for (const auto& t : f.tensors())
      ts.push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"shape", t.dims},
                    {"offset", t.offset}, {"bytes", t.size}});
    j["tensors"] = ts;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("file: %s\nGGUF v%u, %zu metadata entries, %zu tensors, %.2f MiB of tensor data\n\n",
              path.c_str(), f.version(), f.kvs().size(), f.tensors().size(), total / 1048576.0);
  for (const auto& kv : f.kvs())
    std::printf("  %-45s %-8s %s\n", kv.key.c_str(), gguf::value_type_name(kv.value.type),
                kv.value.to_display().c_str());
  std::printf("\n  %-40s %-6s %-22s %12s\n", "tensor", "type", "shape", "bytes");
  size_t shown = 0;
  for (const auto& t : f.tensors()) {
    if (!a.all_tensors && shown++ >= 40) {
      std::printf("  ... %zu more (use --all)\n", f.tensors().size() - 40);
      break;
    }
    std::string shape = "[";
    for (size_t i = 0; i < t.dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.dims[i]);
    shape += "]";
    std::printf("  %-40s %-6s %-22s %12llu\n", t.name.c_str(), dtype_name(t.type), shape.c_str(),
                static_cast<unsigned long long>(t.size));
  }
  return 0;
}

}  // namespace

Action register_info(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  CLI::App* sub = app.add_subcommand("info", "show a model's metadata and tensors, or --system");
  sub->add_option("-m,--model,model", a->model.model, "GGUF model file");
  sub->add_option("--hf", a->model.hf, "Hugging Face owner/repo/file");
  sub->add_flag("--json", a->json, "machine-readable output");
  sub->add_flag("--system", a->system, "show the CPU features and the kernel ISA in use");
  sub->add_flag("--all", a->all_tensors, "list every tensor");
  return [a] { return info(*a); };
}

}  // namespace coppice::cli
