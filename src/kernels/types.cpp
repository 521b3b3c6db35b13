// The traits table: one entry per supported element type. Adding a format touches only here
// and its kernel file.
#include "kernels/types.h"

#include <cctype>

#include "kernels/blocks.h"
#include "kernels/quant_impl.h"

namespace coppice {
namespace {

using namespace quant;  // NOLINT(google-build-using-namespace): table rows stay on one line

constexpr TypeTraits kTraits[] = {
    {DType::F32, "f32", 1, sizeof(float), false, to_float_f32, from_float_f32, DType::F32, vec_dot_f32},
    {DType::F16, "f16", 1, sizeof(uint16_t), false, to_float_f16, from_float_f16, DType::F16, vec_dot_f16},
    {DType::Q4_0, "q4_0", QK4_0, sizeof(BlockQ4_0), true, to_float_q4_0, from_float_q4_0, DType::Q8_0, vec_dot_q4_0_q8_0},
    {DType::Q4_1, "q4_1", QK4_1, sizeof(BlockQ4_1), true, to_float_q4_1, from_float_q4_1, DType::Q8_1, vec_dot_q4_1_q8_1},
    {DType::Q5_0, "q5_0", QK5_0, sizeof(BlockQ5_0), true, to_float_q5_0, from_float_q5_0, DType::Q8_0, vec_dot_q5_0_q8_0},
    {DType::Q5_1, "q5_1", QK5_1, sizeof(BlockQ5_1), true, to_float_q5_1, from_float_q5_1, DType::Q8_1, vec_dot_q5_1_q8_1},
    {DType::Q8_0, "q8_0", QK8_0, sizeof(BlockQ8_0), true, to_float_q8_0, from_float_q8_0, DType::Q8_0, vec_dot_q8_0_q8_0},
    {DType::Q8_1, "q8_1", QK8_1, sizeof(BlockQ8_1), true, to_float_q8_1, from_float_q8_1, DType::Q8_1, vec_dot_q8_1_q8_1},
    {DType::Q2_K, "q2_K", QK_K, sizeof(BlockQ2_K), true, to_float_q2_K, from_float_q2_K, DType::Q8_K, vec_dot_q2_K_q8_K},
    {DType::Q3_K, "q3_K", QK_K, sizeof(BlockQ3_K), true, to_float_q3_K, from_float_q3_K, DType::Q8_K, vec_dot_q3_K_q8_K},
    {DType::Q4_K, "q4_K", QK_K, sizeof(BlockQ4_K), true, to_float_q4_K, from_float_q4_K, DType::Q8_K, vec_dot_q4_K_q8_K},
    {DType::Q5_K, "q5_K", QK_K, sizeof(BlockQ5_K), true, to_float_q5_K, from_float_q5_K, DType::Q8_K, vec_dot_q5_K_q8_K},
    {DType::Q6_K, "q6_K", QK_K, sizeof(BlockQ6_K), true, to_float_q6_K, from_float_q6_K, DType::Q8_K, vec_dot_q6_K_q8_K},
    {DType::Q8_K, "q8_K", QK_K, sizeof(BlockQ8_K), true, to_float_q8_K, from_float_q8_K, DType::Q8_K, vec_dot_q8_K_q8_K},
    {DType::BF16, "bf16", 1, sizeof(uint16_t), false, to_float_bf16, from_float_bf16, DType::BF16, vec_dot_bf16},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto ca = static_cast<unsigned char>(a[i]), cb = static_cast<unsigned char>(b[i]);
    if (std::tolower(ca) != std::tolower(cb)) return false;
  }
  return true;
}

}  // namespace

const TypeTraits* type_traits(uint32_t id) {
  for (const TypeTraits& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == id) return &t;
  }
  return nullptr;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const TypeTraits& t : kTraits) {
    if (iequals(name, t.name)) return t.type;
  }
  return std::nullopt;
}

const char* dtype_name(DType t) {
  const TypeTraits* tt = type_traits(t);
  return tt != nullptr ? tt->name : "unknown";
}

}  // namespace coppice
