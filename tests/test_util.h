// Helpers shared by the test files: paths to shared data, file I/O, running the CLI.
#pragma once
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sys/wait.h>

namespace testutil {

inline std::string shared(const std::string& rel) { return std::string(COPPICE_SHARED_DIR) + "/" + rel; }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::vector<float> read_f32(const std::string& path) {
  auto b = read_bytes(path);
  std::vector<float> f(b.size() / 4);
  std::memcpy(f.data(), b.data(), f.size() * 4);
  return f;
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A file in this process's own temporary directory, removed with everything in it when the
// process exits (ctest runs every test case in a process of its own).
inline std::string temp_path(const std::string& name) {
  struct Dir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("coppice-test-" + std::to_string(::getpid()));
    ~Dir() {
      std::error_code ec;  // best effort: never throw from a static destructor
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  std::filesystem::create_directories(dir.path);
  return (dir.path / name).string();
}

struct RunResult {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `ENV_PREFIX coppice ARGS` through the shell (ENV_PREFIX may be "cd DIR && VAR=x").
inline RunResult run_cli(const std::string& args, const std::string& env_prefix = "") {
  const std::string err_file = temp_path("stderr.txt");
  const std::string cmd = env_prefix + " " + std::string(COPPICE_BIN) + " " + args + " 2>" + err_file;
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  auto e = read_bytes(err_file);
  r.err.assign(e.begin(), e.end());
  return r;
}

// The 45 reference token ids of shared/models/README.md (BOS first).
inline const std::vector<int32_t>& reference_ids() {
  static const std::vector<int32_t> ids = {
      1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
      426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295,
      433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};
  return ids;
}

}  // namespace testutil
