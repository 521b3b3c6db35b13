// libFuzzer target for the GGUF parser: any input must parse or fail with coppice::Error.
#include <cstddef>
#include <cstdint>

#include "formats/gguf.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = coppice::gguf::File::parse(coppice::MappedFile::borrow(data, size, "fuzz.gguf"));
    // Touch what a loader would: metadata views and every tensor's first and last byte.
    for (const auto& kv : f.kvs()) (void)kv.value.to_display();
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors())
      if (t.size) sink = static_cast<uint8_t>(sink ^ t.data[0] ^ t.data[t.size - 1]);
    (void)sink;
  } catch (const coppice::Error&) {
  }
  return 0;
}
