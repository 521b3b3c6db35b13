// The `coppice` binary end to end: the README's greedy story, machine-readable outputs, and
// clear errors (non-zero exit, a message naming the problem) for bad input.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>

#include "test_util.h"

using testutil::run_cli;
using testutil::shared;

namespace {
const std::string kStories = "-m " + shared("models/stories260K.gguf");
const char* kGreedy =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said";
}  // namespace

TEST(Cli, RunPrintsTheReferenceGreedyStory) {
  auto r = run_cli("run " + kStories + " -p \"Once upon a time\" -n 64 --temp 0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kGreedy) + "\n");
}

TEST(Cli, RunReadsPromptFromFileAndStdin) {
  const std::string p = testutil::temp_path("prompt.txt");
  testutil::write_bytes(p, {'O', 'n', 'c', 'e', ' ', 'u', 'p', 'o', 'n', ' ', 'a', ' ', 't', 'i', 'm', 'e'});
  auto a = run_cli("run " + kStories + " -f " + p + " -n 8 --temp 0");
  auto b = run_cli("run " + kStories + " -n 8 --temp 0 < " + p);
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("Once upon a time, there was", 0), 0u) << a.out;
}

TEST(Cli, SeededSamplingIsReproducible) {
  const std::string args = "run " + kStories + " -p \"Once upon a time\" -n 24 --temp 0.9 --top-k 40 --top-p 0.95";
  auto a = run_cli(args + " --seed 42"), b = run_cli(args + " --seed 42"), c = run_cli(args + " --seed 7");
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(Cli, TokenizeIdsIsAJsonArray) {
  auto r = run_cli("tokenize " + kStories + " -p \"Once upon a time\" --ids");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  std::vector<int> ids = j.get<std::vector<int>>();
  const std::vector<int> expect = {1, 403, 407, 261, 378};
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 5), expect);
}

TEST(Cli, EvalWritesAllLogitsAsFloat32) {
  const std::string out = testutil::temp_path("logits.f32");
  std::string ids;
  for (int id : testutil::reference_ids()) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(id);
  }
  auto r = run_cli("eval " + kStories + " --ids " + ids + " -o " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto got = testutil::read_f32(out);
  const auto ref = testutil::read_f32(shared("models/stories260K.logits.f32"));
  ASSERT_EQ(got.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) num += (got[i] - ref[i]) * (got[i] - ref[i]), den += ref[i] * ref[i];
  EXPECT_LT(std::sqrt(num / den), 2e-3);
}

TEST(Cli, InfoJsonHasMetadataAndTensors) {
  auto r = run_cli("info " + kStories + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["metadata"]["general.architecture"], "llama");
  EXPECT_EQ(j["tensors"].size(), 48u);
  auto s = run_cli("info --system --json");
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_TRUE(nlohmann::json::parse(s.out).contains("cpu_isa"));
}

TEST(Cli, PerplexityAndKlBase) {
  // A stories-like text long enough for a few chunks of 64 tokens.
  std::string text;
  for (int i = 0; i < 12; ++i)
    text += "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ";
  const std::string f = testutil::temp_path("ppl.txt");
  testutil::write_bytes(f, std::vector<uint8_t>(text.begin(), text.end()));
  const std::string base = testutil::temp_path("base.kl");
  std::filesystem::remove(base);
  auto a = run_cli("perplexity " + kStories + " -f " + f + " -c 64 --json --kl-base " + base);
  ASSERT_EQ(a.status, 0) << a.err;
  auto ja = nlohmann::json::parse(a.out);
  EXPECT_GT(ja["perplexity"].get<double>(), 1.0);
  EXPECT_LT(ja["perplexity"].get<double>(), 20.0);  // the model knows this text well
  // Same model again: KL ~ 0 (only the 16-bit storage error), full top-1 agreement.
  auto b = run_cli("perplexity " + kStories + " -f " + f + " -c 64 --json --kl-base " + base);
  ASSERT_EQ(b.status, 0) << b.err;
  auto jb = nlohmann::json::parse(b.out);
  EXPECT_LT(jb["kl"]["mean"].get<double>(), 1e-4);
  EXPECT_EQ(jb["kl"]["top1_agreement"].get<double>(), 1.0);
  // A different KV type moves the logits a little: small but non-negative KL.
  auto c = run_cli("perplexity " + kStories + " -f " + f + " -c 64 --json --cache-type bf16 --kl-base " + base);
  ASSERT_EQ(c.status, 0) << c.err;
  auto jc = nlohmann::json::parse(c.out);
  EXPECT_GE(jc["kl"]["mean"].get<double>(), 0.0);
  EXPECT_LT(jc["kl"]["mean"].get<double>(), 0.01);
}

TEST(Cli, BenchJsonHasTheDocumentedKeys) {
  auto r = run_cli("bench " + kStories + " -p 32 -n 8 -r 2 -t 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["test"], "pp32");
  EXPECT_EQ(j[1]["test"], "tg8");
  for (const auto& t : j) {
    EXPECT_EQ(t["threads"], 1);
    EXPECT_GT(t["tokens_per_second"].get<double>(), 0.0);
    EXPECT_TRUE(t.contains("stddev"));
  }
}

TEST(Cli, BadInputGivesClearErrors) {
  auto missing = run_cli("run -m /nonexistent/model.gguf -p hi");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("/nonexistent/model.gguf"), std::string::npos) << missing.err;

  const std::string bad = testutil::temp_path("bad.gguf");
  testutil::write_bytes(bad, {'G', 'G', 'U', 'F', 3, 0, 0, 0, 1});
  auto corrupt = run_cli("run -m " + bad + " -p hi");
  EXPECT_EQ(corrupt.status, 1);
  EXPECT_NE(corrupt.err.find("[gguf]"), std::string::npos) << corrupt.err;

  auto usage = run_cli("run " + kStories + " --no-such-flag");
  EXPECT_EQ(usage.status, 2);
  EXPECT_NE(usage.err.find("usage:"), std::string::npos) << usage.err;

  auto temp = run_cli("run " + kStories + " -p hi --temp -1");
  EXPECT_NE(temp.status, 0);
  EXPECT_NE(temp.err.find("temperature"), std::string::npos) << temp.err;

  auto ids = run_cli("eval " + kStories + " --ids 1,99999");
  EXPECT_NE(ids.status, 0);
  EXPECT_NE(ids.err.find("99999"), std::string::npos) << ids.err;

  auto nocmd = run_cli("");
  EXPECT_NE(nocmd.status, 0);
}

namespace {
// A throwaway static HTTP server (python3 http.server) on a free loopback port, serving dir.
class LocalHttpServer {
 public:
  explicit LocalHttpServer(const std::string& dir) {
    const std::string port_file = testutil::temp_path("port.txt");
    std::filesystem::remove(port_file);
    const std::string cmd =
        "python3 -c \"import http.server,sys,os; os.chdir(sys.argv[1]); "
        "s=http.server.ThreadingHTTPServer(('127.0.0.1',0), http.server.SimpleHTTPRequestHandler); "
        "open(sys.argv[2],'w').write(str(s.server_address[1])); s.serve_forever()\" " +
        dir + " " + port_file + " >/dev/null 2>&1 & echo $!";
    FILE* p = popen(cmd.c_str(), "r");
    if (p) {
      if (fscanf(p, "%d", &pid_) != 1) pid_ = -1;
      pclose(p);
    }
    for (int i = 0; i < 200 && port_.empty(); ++i) {
      auto b = testutil::read_bytes(port_file);
      if (!b.empty()) port_.assign(b.begin(), b.end());
      else usleep(25000);
    }
  }
  ~LocalHttpServer() {
    if (pid_ > 0) kill(pid_, SIGTERM);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + port_; }
  bool ok() const { return pid_ > 0 && !port_.empty(); }

 private:
  int pid_ = -1;
  std::string port_;
};

const char* kStoriesSha = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
}  // namespace

TEST(Cli, HfDownloadFromLocalServerThenRun) {
  namespace fs = std::filesystem;
  const fs::path root = testutil::temp_path("hf");
  fs::remove_all(root);
  const fs::path srv = root / "srv";
  fs::create_directories(srv / "someone/tiny/resolve/main/sub");
  fs::copy_file(shared("models/stories260K.gguf"), srv / "someone/tiny/resolve/main/sub/m.gguf");
  LocalHttpServer server(srv.string());
  ASSERT_TRUE(server.ok());
  const std::string env = "COPPICE_HF_ENDPOINT=" + server.endpoint() + " COPPICE_MODELS=" + (root / "cache").string();

  auto r = run_cli("run -hf someone/tiny/sub/m.gguf --hf-sha256 " + std::string(kStoriesSha) +
                       " -p \"Once upon a time\" -n 8 --temp 0", env);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl", 0), 0u) << r.out;
  EXPECT_TRUE(fs::exists(root / "cache/someone/tiny/sub/m.gguf"));

  // A wrong checksum is an error and leaves nothing under the final name.
  auto bad = run_cli("run --hf someone/tiny/sub/m.gguf --hf-sha256 " + std::string(64, 'a') + " -p hi -n 1",
                     "COPPICE_HF_ENDPOINT=" + server.endpoint() + " COPPICE_MODELS=" + (root / "cache2").string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("sha256 mismatch"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(root / "cache2/someone/tiny/sub/m.gguf"));

  auto missing = run_cli("run --hf someone/tiny/nope.gguf -p hi -n 1", env);
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("HTTP 404"), std::string::npos) << missing.err;
}

TEST(Cli, DefaultModelIsDownloadedWhenAbsentFromTheModelsPath) {
  namespace fs = std::filesystem;
  const fs::path root = testutil::temp_path("default-model");
  fs::remove_all(root);
  const fs::path srv = root / "srv";
  fs::create_directories(srv / "ggml-org/models/resolve/main/tinyllamas");
  fs::copy_file(shared("models/stories260K.gguf"), srv / "ggml-org/models/resolve/main/tinyllamas/stories260K.gguf");
  fs::create_directories(root / "work");
  LocalHttpServer server(srv.string());
  ASSERT_TRUE(server.ok());
  // No -m: neither $COPPICE_MODELS, ./models nor ../shared/models has the default model.
  const std::string env = "cd " + (root / "work").string() + " && COPPICE_HF_ENDPOINT=" + server.endpoint() +
                          " COPPICE_MODELS=" + (root / "cache").string();
  auto r = run_cli("run -p \"Once upon a time\" -n 64 --temp 0", env);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kGreedy) + "\n");
  EXPECT_TRUE(fs::exists(root / "cache/ggml-org/models/tinyllamas/stories260K.gguf"));
  // Second run finds it on the models path: no server needed.
  auto again = run_cli("run -p \"Once upon a time\" -n 4 --temp 0",
                       "cd " + (root / "work").string() + " && COPPICE_HF_ENDPOINT=http://127.0.0.1:1 COPPICE_MODELS=" +
                           (root / "cache").string());
  EXPECT_EQ(again.status, 0) << again.err;
}

TEST(Cli, ChatAnswersEachLineOfStdin) {
  auto r = run_cli("chat " + kStories + " -n 12 --temp 0 < /dev/null");
  EXPECT_EQ(r.status, 0) << r.err;
  const std::string in = testutil::temp_path("chat.txt");
  const std::string lines = "Tell me a story.\nWhat happened next?\n";
  testutil::write_bytes(in, std::vector<uint8_t>(lines.begin(), lines.end()));
  auto c = run_cli("chat " + kStories + " -n 12 --temp 0 < " + in);
  ASSERT_EQ(c.status, 0) << c.err;
  size_t newlines = 0;
  for (char ch : c.out) newlines += ch == '\n';
  EXPECT_GE(newlines, 2u) << c.out;  // one reply per user line
}

TEST(Cli, TemplateRendersAConversation) {
  const std::string msgs = testutil::temp_path("msgs.json");
  const std::string j = R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])";
  testutil::write_bytes(msgs, std::vector<uint8_t>(j.begin(), j.end()));
  auto r = run_cli("template --template " + shared("conformance/chat-templates/Qwen-Qwen2.5-7B-Instruct.jinja") +
                   " --messages " + msgs + " --add-generation-prompt");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // stories260K has no template: the built-in plain format, with a note.
  auto p = run_cli("template " + kStories + " --messages " + msgs);
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_NE(p.out.find("User: Hi"), std::string::npos) << p.out;
  // A broken template names its line.
  const std::string bad = testutil::temp_path("bad.jinja");
  const std::string src = "line one\n{% for m in messages %}\n{{ m.content }\n";
  testutil::write_bytes(bad, std::vector<uint8_t>(src.begin(), src.end()));
  auto b = run_cli("template --template " + bad + " --messages " + msgs);
  EXPECT_EQ(b.status, 1);
  EXPECT_NE(b.err.find("[template] line 3"), std::string::npos) << b.err;
}
