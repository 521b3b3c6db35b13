// The downloader against an in-process HTTP server on 127.0.0.1 (cpp-httplib): fresh and
// resumed transfers, checksum handling, HTTP errors, interruptions and write failures.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "util/download.h"
#include "util/error.h"

using namespace coppice;
namespace fs = std::filesystem;

namespace {

const char* kStoriesSha = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";

// One sized read: a byte-wise istreambuf_iterator costs seconds on 1 MB under ASan.
std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  std::string s(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

// Serves /owner/repo/resolve/main/model.gguf (the stories260K bytes) the way the hub does for
// an LFS file: ETag = quoted sha256, Range answered with 206. Listens on 127.0.0.1 only.
class HubServer {
 public:
  enum class Mode {
    kNormal,       // Range honoured (httplib's own 206 handling)
    kIgnoreRange,  // always the whole file with 200 (chunked, so httplib cannot slice it)
    kInterrupt,    // closes the connection after half of the body
    kNoEtag,       // no checksum header
  };

  HubServer() : body_(file_text(testutil::shared("models/stories260K.gguf"))) {
    srv_.Get("/owner/repo/resolve/main/model.gguf", [this](const httplib::Request& req, httplib::Response& res) {
      record(req);
      const Mode m = mode.load();
      if (m != Mode::kNoEtag) res.set_header("ETag", "\"" + std::string(kStoriesSha) + "\"");
      if (m == Mode::kIgnoreRange) {
        res.status = 200;
        res.set_chunked_content_provider("application/octet-stream", [this](size_t off, httplib::DataSink& sink) {
          const size_t n = std::min<size_t>(64 * 1024, body_.size() - off);
          sink.write(body_.data() + off, n);
          if (off + n == body_.size()) sink.done();
          return true;
        });
      } else if (m == Mode::kInterrupt) {
        res.set_content_provider(body_.size(), "application/octet-stream",
                                 [this](size_t off, size_t len, httplib::DataSink& sink) {
                                   if (off >= body_.size() / 2) return false;  // drop the connection
                                   sink.write(body_.data() + off, std::min<size_t>(len, 32 * 1024));
                                   return true;
                                 });
      } else {
        res.set_content(body_, "application/octet-stream");
      }
    });
    srv_.Get("/owner/repo/resolve/main/private.gguf",
             [](const httplib::Request&, httplib::Response& res) { res.status = 401; });
    srv_.Get("/owner/repo/resolve/main/broken.gguf", [](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content("try later", "text/plain");
    });
    // The hub's LFS flow: a 302 carrying the sha256 as X-Linked-Etag (its own ETag is the git
    // blob's sha1), then a CDN whose ETag is an md5: neither ETag is usable, only the linked one.
    srv_.Get("/owner/repo/resolve/main/lfs.gguf", [this](const httplib::Request& req, httplib::Response& res) {
      record(req);
      {
        std::lock_guard<std::mutex> lk(mu_);
        res.set_header("X-Linked-Etag", "\"" + linked_etag_ + "\"");
      }
      res.set_header("ETag", "\"0123456789abcdef0123456789abcdef01234567\"");
      res.set_redirect("/cdn/blob");
      // A body that must not end up in the .part (only without Range: httplib would slice it).
      if (!req.has_header("Range")) res.set_content("redirecting", "text/plain");
    });
    srv_.Get("/cdn/blob", [this](const httplib::Request& req, httplib::Response& res) {
      record(req);
      res.set_header("ETag", "\"d41d8cd98f00b204e9800998ecf8427e\"");
      res.set_content(body_, "application/octet-stream");
    });
    // An empty file from a server that ignores Range (chunked, so nothing slices it).
    srv_.Get("/owner/repo/resolve/main/empty.gguf", [this](const httplib::Request& req, httplib::Response& res) {
      record(req);
      res.status = 200;  // left unset, httplib answers a Range request with 206
      res.set_chunked_content_provider("application/octet-stream", [](size_t, httplib::DataSink& sink) {
        sink.done();
        return true;
      });
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");  // listening from here on; accept() starts below
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    // stop() is a no-op until the accept loop runs, so wait for it (bounded).
    for (int i = 0; i < 2000 && port_ > 0 && !srv_.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~HubServer() {
    srv_.stop();
    thread_.join();
  }
  bool ok() const { return port_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& file = "model.gguf") const {
    return endpoint() + "/owner/repo/resolve/main/" + file;
  }
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> lk(mu_);
    return ranges_;
  }
  const std::string& body() const { return body_; }
  void set_linked_etag(const std::string& sha) {
    std::lock_guard<std::mutex> lk(mu_);
    linked_etag_ = sha;
  }
  std::atomic<Mode> mode{Mode::kNormal};

 private:
  void record(const httplib::Request& req) {
    std::lock_guard<std::mutex> lk(mu_);
    ranges_.push_back(req.get_header_value("Range"));
  }

  std::string body_;
  httplib::Server srv_;
  int port_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> ranges_;  // the Range header of each request ("" when none)
  std::string linked_etag_ = kStoriesSha;
};

DownloadOptions quiet() {
  DownloadOptions o;
  o.progress = false;
  return o;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = testutil::temp_path("download-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_text(const fs::path& p, const std::string& s) {
  testutil::write_bytes(p.string(), std::vector<uint8_t>(s.begin(), s.end()));
}

}  // namespace

TEST(Download, FreshDownloadIsByteExactAndVerifiedByEtag) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("fresh") / "sub" / "model.gguf";
  const auto r = download_file(hub.url(), dest.string(), quiet());
  EXPECT_EQ(file_text(dest.string()), hub.body());
  EXPECT_TRUE(r.verified);
  EXPECT_FALSE(r.resumed);
  EXPECT_EQ(r.sha256, kStoriesSha);
  EXPECT_EQ(r.bytes, hub.body().size());
  EXPECT_FALSE(fs::exists(dest.string() + ".part"));
  EXPECT_EQ(hub.ranges(), std::vector<std::string>{""});
}

TEST(Download, ResumesAPartFileWithARangeRequest) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("resume") / "model.gguf";
  const size_t third = hub.body().size() / 3;
  write_text(dest.string() + ".part", hub.body().substr(0, third));
  const auto r = download_file(hub.url(), dest.string(), quiet());
  EXPECT_EQ(hub.ranges(), std::vector<std::string>{"bytes=" + std::to_string(third) + "-"});
  EXPECT_TRUE(r.resumed);
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(file_text(dest.string()), hub.body());
  EXPECT_FALSE(fs::exists(dest.string() + ".part"));
}

TEST(Download, APartAsLongAsTheFileIsRefetchedAfter416) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("complete-part") / "model.gguf";
  write_text(dest.string() + ".part", hub.body());  // e.g. killed between download and rename
  const auto r = download_file(hub.url(), dest.string(), quiet());
  EXPECT_EQ(hub.ranges(), (std::vector<std::string>{"bytes=" + std::to_string(hub.body().size()) + "-", ""}));
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(file_text(dest.string()), hub.body());
}

TEST(Download, RestartsFromZeroWhenTheServerIgnoresTheRange) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  hub.mode = HubServer::Mode::kIgnoreRange;
  const fs::path dest = fresh_dir("restart") / "model.gguf";
  write_text(dest.string() + ".part", std::string(1000, 'x'));  // would corrupt the file if appended to
  const auto r = download_file(hub.url(), dest.string(), quiet());
  EXPECT_EQ(hub.ranges(), std::vector<std::string>{"bytes=1000-"});
  EXPECT_FALSE(r.resumed);
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(file_text(dest.string()), hub.body());
}

TEST(Download, FollowsTheHubRedirectAndVerifiesByXLinkedEtag) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("redirect") / "model.gguf";
  auto r = download_file(hub.url("lfs.gguf"), dest.string(), quiet());
  EXPECT_EQ(hub.ranges().size(), 2u);  // the hub, then the CDN
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(r.sha256, kStoriesSha);
  EXPECT_EQ(file_text(dest.string()), hub.body());

  // A resume asks the CDN for the range too.
  fs::remove(dest);
  const size_t third = hub.body().size() / 3;
  write_text(dest.string() + ".part", hub.body().substr(0, third));
  r = download_file(hub.url("lfs.gguf"), dest.string(), quiet());
  EXPECT_TRUE(r.resumed);
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(hub.ranges().back(), "bytes=" + std::to_string(third) + "-");
  EXPECT_EQ(file_text(dest.string()), hub.body());

  // The linked sha256 is what the file is checked against.
  fs::remove(dest);
  hub.set_linked_etag(std::string(64, 'c'));
  try {
    download_file(hub.url("lfs.gguf"), dest.string(), quiet());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sha256 mismatch: expected " + std::string(64, 'c')), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_FALSE(fs::exists(dest.string() + ".part"));
}

TEST(Download, AnEmptyWholeFileAnswerReplacesAStalePart) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("empty") / "empty.gguf";
  write_text(dest.string() + ".part", "stale bytes from another file");
  testing::internal::CaptureStderr();  // no checksum: a warning
  const auto r = download_file(hub.url("empty.gguf"), dest.string(), quiet());
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(hub.ranges(), std::vector<std::string>{"bytes=29-"});
  EXPECT_FALSE(r.resumed);
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(fs::file_size(dest), 0u);
}

TEST(Download, WrongChecksumIsAnErrorAndLeavesNoFile) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("badsum") / "model.gguf";
  DownloadOptions o = quiet();
  o.expected_sha256 = std::string(64, 'a');
  try {
    download_file(hub.url(), dest.string(), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[download]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sha256 mismatch"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string(64, 'a')), std::string::npos) << msg;
    EXPECT_NE(msg.find(kStoriesSha), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_FALSE(fs::exists(dest.string() + ".part"));

  o.expected_sha256 = "not-a-hash";
  EXPECT_THROW(download_file(hub.url(), dest.string(), o), Error);
}

TEST(Download, WithoutAnyChecksumItWarnsButSucceeds) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  hub.mode = HubServer::Mode::kNoEtag;
  const fs::path dest = fresh_dir("nosum") / "model.gguf";
  testing::internal::CaptureStderr();
  const auto r = download_file(hub.url(), dest.string(), quiet());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(r.verified);
  EXPECT_NE(err.find("warning"), std::string::npos) << err;
  EXPECT_EQ(file_text(dest.string()), hub.body());
  // An explicit checksum still verifies it.
  fs::remove(dest);
  DownloadOptions o = quiet();
  o.expected_sha256 = kStoriesSha;
  EXPECT_TRUE(download_file(hub.url(), dest.string(), o).verified);
}

TEST(Download, HttpErrorsNameTheStatus) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dir = fresh_dir("http");
  for (const auto& [file, status] : std::vector<std::pair<std::string, std::string>>{
           {"missing.gguf", "HTTP 404"}, {"private.gguf", "HTTP 401"}, {"broken.gguf", "HTTP 503"}}) {
    const fs::path dest = dir / file;
    try {
      download_file(hub.url(file), dest.string(), quiet());
      ADD_FAILURE() << file << ": no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("[download] " + hub.url(file) + ": " + status, 0), 0u) << msg;
    }
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_FALSE(fs::exists(dest.string() + ".part"));  // no error page saved as data
  }
}

TEST(Download, InterruptedTransferKeepsThePartThenResumes) {
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  hub.mode = HubServer::Mode::kInterrupt;
  const fs::path dest = fresh_dir("interrupt") / "model.gguf";
  const std::string part = dest.string() + ".part";
  try {
    download_file(hub.url(), dest.string(), quiet());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resume"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dest));
  ASSERT_TRUE(fs::exists(part));
  const auto kept = fs::file_size(part);
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, hub.body().size());
  EXPECT_EQ(file_text(part), hub.body().substr(0, kept));

  hub.mode = HubServer::Mode::kNormal;
  const auto r = download_file(hub.url(), dest.string(), quiet());
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(hub.ranges().back(), "bytes=" + std::to_string(kept) + "-");
  EXPECT_EQ(file_text(dest.string()), hub.body());
}

TEST(Download, ConnectionRefusedIsAClearError) {
  int port = 0;
  {
    HubServer gone;  // take a free port, then close it
    ASSERT_TRUE(gone.ok());
    port = std::stoi(gone.endpoint().substr(gone.endpoint().rfind(':') + 1));
  }
  const fs::path dest = fresh_dir("refused") / "model.gguf";
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/owner/repo/resolve/main/model.gguf";
  try {
    download_file(url, dest.string(), quiet());
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[download] " + url + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("onnect"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dest.string() + ".part"));
}

TEST(Download, WriteFailureIsReported) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dest = fresh_dir("diskfull") / "model.gguf";
  fs::create_symlink("/dev/full", dest.string() + ".part");  // every write: ENOSPC
  try {
    download_file(hub.url(), dest.string(), quiet());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("write failed"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dest));
}

TEST(Download, HfSpecAndEndpointAndCache) {
  const HfSpec s = parse_hf_spec("ggml-org/models/tinyllamas/stories260K.gguf");
  EXPECT_EQ(s.owner, "ggml-org");
  EXPECT_EQ(s.repo, "models");
  EXPECT_EQ(s.path, "tinyllamas/stories260K.gguf");
  for (const char* bad : {"", "a", "a/b", "a/b/", "a//c", "a/b/../c.gguf", "../b/c", "a/b/./c", "a/b/c?x=1"})
    EXPECT_THROW(parse_hf_spec(bad), Error) << bad;

  HubServer hub;
  ASSERT_TRUE(hub.ok());
  const fs::path dir = fresh_dir("hf");
  ::setenv("COPPICE_HF_ENDPOINT", (hub.endpoint() + "/").c_str(), 1);
  EXPECT_EQ(hf_endpoint(), hub.endpoint());
  ::setenv("COPPICE_MODELS", dir.c_str(), 1);
  EXPECT_EQ(default_model_dir(), dir.string());
  const std::string got = download_hf("owner/repo/model.gguf", default_model_dir(), kStoriesSha, false);
  EXPECT_EQ(got, (dir / "owner/repo/model.gguf").string());
  EXPECT_EQ(file_text(got), hub.body());
  const size_t requests = hub.ranges().size();
  EXPECT_EQ(download_hf("owner/repo/model.gguf", dir.string(), "", false), got);  // cached: no request
  EXPECT_EQ(hub.ranges().size(), requests);
  EXPECT_THROW(download_hf("owner/repo/model.gguf", dir.string(), std::string(64, 'b'), false), Error);
  // Without an explicit sha256, download_hf checks the hub's X-Linked-Etag.
  EXPECT_EQ(file_text(download_hf("owner/repo/lfs.gguf", dir.string(), "", false)), hub.body());
  hub.set_linked_etag(std::string(64, 'd'));
  try {
    download_hf("owner/repo/lfs.gguf", (dir / "other").string(), "", false);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "other/owner/repo/lfs.gguf"));
  EXPECT_FALSE(fs::exists(dir / "other/owner/repo/lfs.gguf.part"));
  ::unsetenv("COPPICE_HF_ENDPOINT");
  ::unsetenv("COPPICE_MODELS");
  ::setenv("HF_ENDPOINT", "https://mirror.example", 1);
  EXPECT_EQ(hf_endpoint(), "https://mirror.example");
  ::unsetenv("HF_ENDPOINT");
  EXPECT_EQ(hf_endpoint(), "https://huggingface.co");
}
