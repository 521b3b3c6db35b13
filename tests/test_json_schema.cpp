// JSON Schema suite: every schema in tests/data/schemas is compiled, sampled under its grammar
// with real models at temperature 1, and every output is checked by ajv (tests/js), a real
// validator. Unsupported schemas (tests/data/schemas_invalid) must fail with the stated error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "engine/grammar_sampling.h"
#include "grammar/json_schema.h"
#include "model/model.h"
#include "server/request.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
using testutil::shared;

namespace {

const std::string kData = std::string(COPPICE_SOURCE_DIR) + "/tests/data";

std::vector<std::filesystem::path> files(const std::string& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::ordered_json load(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::ordered_json::parse(in);
}

// Generates one constrained output; "" with *complete = false when max_tokens ran out.
std::string generate_one(Model& m, const Tokenizer& tok, const std::shared_ptr<const GrammarVocab>& vocab,
                         const grammar::GrammarPtr& g, uint64_t seed, bool* complete) {
  KvCache cache = m.make_cache(512);
  cache.add_sequence(0);
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = seed;
  Sampler sampler(sp);
  sampler.set_constraint(make_grammar_constraint(g, vocab));
  GenerateOptions go;
  go.n_predict = 320;
  std::string out;
  *complete = false;
  const auto prompt = tok.encode("Once upon a time", true, false);
  generate(m, cache, 0, tok, sampler, prompt, go, [&](int32_t id) {
    out += vocab->pieces[id];
    return true;
  });
  // generate() stops at end-of-generation, which the grammar allows only when complete.
  grammar::Matcher check(g);
  *complete = check.accept(out) && check.is_complete() && sampler.history().size() < prompt.size() + 320;
  return out;
}

}  // namespace

TEST(JsonSchemaSuite, GeneratedOutputsValidateWithAjv) {
  const auto schemas = files(kData + "/schemas");
  ASSERT_GE(schemas.size(), 40u);
  struct M {
    std::string path;
    int seeds;
  };
  const std::vector<M> models = {{shared("models/stories260K.gguf"), 3}, {shared("models/fixtures/llama-d256-q8_0.gguf"), 1}};
  const std::string jsonl = testutil::temp_path("schema_outputs.jsonl");
  std::ofstream out(jsonl);
  size_t n = 0;
  for (const M& mm : models) {
    if (!std::filesystem::exists(mm.path)) {
      ADD_FAILURE() << "missing model " << mm.path;
      continue;
    }
    auto model = Model::load(mm.path);
    auto tok = Tokenizer::from_gguf(model->file());
    auto vocab = GrammarVocab::from_tokenizer(*tok);
    for (const auto& p : schemas) {
      const auto schema = load(p);
      grammar::GrammarPtr g;
      ASSERT_NO_THROW(g = compile_grammar(grammar::json_schema_to_gbnf(schema))) << p;
      for (int s = 0; s < mm.seeds; ++s) {
        bool complete = false;
        const std::string text = generate_one(*model, *tok, vocab, g, 1000 + static_cast<uint64_t>(s), &complete);
        EXPECT_TRUE(complete) << p.filename() << " seed " << s << " did not finish: " << text;
        const std::string name = p.filename().string() + " " + std::filesystem::path(mm.path).filename().string() +
                                 " seed " + std::to_string(s);
        out << nlohmann::json{{"name", name}, {"schema", schema}, {"output", text}}.dump(-1, ' ', false,
                                                                                         nlohmann::json::error_handler_t::replace)
            << "\n";
        ++n;
      }
    }
  }
  out.close();
  EXPECT_GE(n, 160u);
  const std::string cmd = "node " + std::string(COPPICE_SOURCE_DIR) + "/tests/js/validate_schema.mjs " + jsonl + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string report;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, pipe)) > 0) report.append(buf, k);
  const int st = pclose(pipe);
  EXPECT_EQ(st, 0) << report;
  EXPECT_NE(report.find("validated " + std::to_string(n) + " outputs, 0 failed"), std::string::npos) << report;
}

TEST(JsonSchemaSuite, UnsupportedFeaturesAreErrors) {
  const auto bad = files(kData + "/schemas_invalid");
  ASSERT_GE(bad.size(), 10u);
  for (const auto& p : bad) {
    const auto j = load(p);
    try {
      grammar::json_schema_to_gbnf(j["schema"]);
      ADD_FAILURE() << p.filename() << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(j["error"].get<std::string>()), std::string::npos)
          << p.filename() << ": got " << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("[json-schema] ", 0), 0u) << e.what();
    }
  }
}

TEST(GrammarCli, JsonSchemaOutputParses) {
  const std::string schema = kData + "/schemas/40_nested.json";
  auto r = testutil::run_cli("run -m " + shared("models/stories260K.gguf") +
                             " -p Once --no-display-prompt --temp 1 -s 5 -n 300 --json-schema @" + schema);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto v = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(v.is_discarded()) << r.out;
  EXPECT_TRUE(v.contains("user") && v.contains("ok")) << r.out;
}

TEST(GrammarCli, BadInputsExitNonZero) {
  const std::string m = "run -m " + shared("models/stories260K.gguf") + " -p x ";
  auto r = testutil::run_cli(m + "--grammar 'root ::= \"a\" [b-'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("[grammar] line 1, col 14: expected ']'"), std::string::npos) << r.err;
  r = testutil::run_cli(m + "--json-schema '{\"type\":\"array\",\"uniqueItems\":true}'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("[json-schema] /uniqueItems: unsupported keyword 'uniqueItems'"), std::string::npos) << r.err;
  r = testutil::run_cli(m + "--regex 'a(b'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("[regex] col 2"), std::string::npos) << r.err;
  r = testutil::run_cli(m + "--json-schema '{not json'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("[json-schema] not valid JSON"), std::string::npos) << r.err;
}

TEST(GrammarServer, ResponseFormatAndGrammarFields) {
  using server::parse_request;
  const server::ParseLimits lim;
  auto ok = [&](const std::string& extra) {
    auto r = parse_request(R"({"messages":[{"role":"user","content":"hi"}],)" + extra + "}", server::Endpoint::Chat, lim);
    EXPECT_TRUE(std::holds_alternative<server::ApiRequest>(r)) << extra;
    return std::holds_alternative<server::ApiRequest>(r) ? std::get<server::ApiRequest>(r).gen.grammar != nullptr : false;
  };
  auto err = [&](const std::string& extra) {
    auto r = parse_request(R"({"messages":[{"role":"user","content":"hi"}],)" + extra + "}", server::Endpoint::Chat, lim);
    EXPECT_TRUE(std::holds_alternative<server::ApiError>(r)) << extra;
    return std::holds_alternative<server::ApiError>(r) ? std::get<server::ApiError>(r) : server::ApiError(200, "");
  };
  EXPECT_FALSE(ok(R"("response_format":{"type":"text"})"));
  EXPECT_TRUE(ok(R"("response_format":{"type":"json_object"})"));
  EXPECT_TRUE(ok(R"("response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"integer"}}}}})"));
  EXPECT_TRUE(ok(R"("grammar":"root ::= \"yes\" | \"no\"")"));
  auto e = err(R"("response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"array","uniqueItems":true}}})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "response_format.json_schema.schema");
  EXPECT_NE(std::string(e.what()).find("unsupported keyword 'uniqueItems'"), std::string::npos) << e.what();
  EXPECT_EQ(e.to_json()["error"]["type"], "invalid_request_error");
  e = err(R"("grammar":"root ::= [a")");
  EXPECT_EQ(e.param, "grammar");
  EXPECT_NE(std::string(e.what()).find("line 1, col 10"), std::string::npos) << e.what();
  EXPECT_EQ(err(R"("response_format":{"type":"yaml"})").param, "response_format.type");
  EXPECT_EQ(err(R"("response_format":{"type":"json_schema","json_schema":{"schema":{}}})").param, "response_format.json_schema.name");
  EXPECT_EQ(err(R"("response_format":{"type":"json_object"},"grammar":"root ::= \"a\"")").status, 400);
}
