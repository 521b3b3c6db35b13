#include "util/download.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "util/error.h"

namespace coppice {
namespace fs = std::filesystem;

HfSpec parse_hf_spec(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t slash = spec.find('/', start);
    parts.push_back(spec.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 3)
    fail("download", "'" + spec + "' is not owner/repo/path/to/file (e.g. ggml-org/models/tinyllamas/stories260K.gguf)");
  for (const auto& p : parts)
    if (p.empty() || p == "." || p == ".." || p.find('\\') != std::string::npos ||
        p.find_first_of("?#%") != std::string::npos)
      fail("download", "'" + spec + "': bad path component '" + p + "'");
  HfSpec s{parts[0], parts[1], ""};
  for (size_t i = 2; i < parts.size(); ++i) s.path += (i > 2 ? "/" : "") + parts[i];
  return s;
}

std::string default_model_dir() {
  fs::path d;
  if (const char* m = std::getenv("COPPICE_MODELS"); m && *m) d = m;
  else if (const char* h = std::getenv("HOME"); h && *h) d = fs::path(h) / ".cache" / "coppice";
  else d = fs::temp_directory_path() / "coppice";
  std::error_code ec;
  fs::create_directories(d, ec);
  return d.string();
}

std::string hf_endpoint() {
  std::string e = "https://huggingface.co";
  if (const char* v = std::getenv("COPPICE_HF_ENDPOINT"); v && *v) e = v;
  else if (const char* w = std::getenv("HF_ENDPOINT"); w && *w) e = w;
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) fail("download", path + ": cannot read for checksum: " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  CP_ASSERT(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1);
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) EVP_DigestUpdate(ctx.get(), buf.data(), n);
  if (std::ferror(f.get())) fail("download", path + ": read error while computing sha256");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_sha256(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

std::string size_str(uint64_t b) {
  if (b < (1u << 20)) return std::to_string(b) + " bytes";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / 1048576.0);
  return buf;
}

// State shared with libcurl's callbacks for one request.
struct Transfer {
  CURL* curl = nullptr;
  FILE* out = nullptr;
  std::string part;
  uint64_t offset = 0;     // bytes of the .part this request continues from
  uint64_t received = 0;   // body bytes written by this request
  uint64_t total = 0;      // final size when the server said (Content-Range or Content-Length)
  bool checked = false;    // status looked at, on the first body bytes
  long http_error = 0;     // >= 400: body discarded, transfer aborted
  bool restarted = false;  // asked for a range, got the whole file (200): truncated to zero
  bool bad_range = false;  // 206 starting somewhere other than offset
  bool write_failed = false;
  int write_errno = 0;
  // Per response (reset at each status line: redirects have their own headers).
  long range_start = -1;
  uint64_t range_total = 0, content_length = 0;
  std::string linked_etag, etag;  // sha256 candidates, kept across the redirect chain
  bool progress = false;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now(), last{};
};

size_t on_header(char* buf, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  const std::string line(buf, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->range_start = -1;
    t->range_total = t->content_length = 0;
    return size * n;
  }
  const auto colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  const std::string key = lower(line.substr(0, colon));
  std::string val = line.substr(colon + 1);
  while (!val.empty() && std::isspace(static_cast<unsigned char>(val.back()))) val.pop_back();
  val.erase(0, val.find_first_not_of(" \t"));
  if (key == "etag" || key == "x-linked-etag") {
    if (val.rfind("W/", 0) == 0) val.erase(0, 2);
    if (val.size() >= 2 && val.front() == '"' && val.back() == '"') val = val.substr(1, val.size() - 2);
    val = lower(val);
    if (!is_sha256(val)) return size * n;  // git blob sha1 or a CDN md5: not a content hash we can use
    // The hub sends the LFS object's sha256 as X-Linked-Etag on its redirect.
    (key == "x-linked-etag" ? t->linked_etag : t->etag) = val;
  } else if (key == "content-range") {  // bytes START-END/TOTAL
    unsigned long long a = 0, b = 0, tot = 0;
    if (std::sscanf(val.c_str(), "bytes %llu-%llu/%llu", &a, &b, &tot) == 3) {
      t->range_start = static_cast<long>(a);
      t->range_total = tot;
    }
  } else if (key == "content-length") {
    t->content_length = std::strtoull(val.c_str(), nullptr, 10);
  }
  return size * n;
}

size_t on_data(char* buf, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  if (!t->checked) {  // first body bytes of the final response: decide what they mean
    t->checked = true;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 400) {
      t->http_error = status;  // keep the error page out of the .part
      return 0;
    }
    if (t->offset > 0 && status == 200) {  // Range ignored: the body is the whole file
      if (!std::freopen(t->part.c_str(), "wb", t->out)) {
        t->write_failed = true;
        t->write_errno = errno;
        t->out = nullptr;
        return 0;
      }
      t->offset = 0;
      t->restarted = true;
    } else if (t->offset > 0 && status == 206 && t->range_start != static_cast<long>(t->offset)) {
      t->bad_range = true;
      return 0;
    }
    t->total = status == 206 && t->range_total ? t->range_total : t->offset + t->content_length;
  }
  const size_t bytes = size * n;
  if (std::fwrite(buf, 1, bytes, t->out) != bytes) {
    t->write_failed = true;
    t->write_errno = errno;
    return 0;
  }
  t->received += bytes;
  return bytes;
}

void draw_progress(Transfer& t, bool final) {
  const auto now = std::chrono::steady_clock::now();
  if (!final && now - t.last < std::chrono::milliseconds(150)) return;
  t.last = now;
  const double secs = std::chrono::duration<double>(now - t.t0).count();
  const double done = static_cast<double>(t.offset + t.received), total = static_cast<double>(t.total);
  const double rate = secs > 0 ? static_cast<double>(t.received) / secs / 1e6 : 0.0;
  constexpr int kWidth = 30;
  if (t.total > 0) {
    const int fill = std::clamp(static_cast<int>(kWidth * done / total), 0, kWidth);
    std::fprintf(stderr, "\r[%s%s] %7.1f / %.1f MB %5.1f%% %6.2f MB/s ", std::string(fill, '#').c_str(),
                 std::string(kWidth - fill, ' ').c_str(), done / 1e6, total / 1e6, 100.0 * done / total, rate);
  } else {
    std::fprintf(stderr, "\r%7.1f MB %6.2f MB/s ", done / 1e6, rate);
  }
  if (final) std::fputc('\n', stderr);
}

int on_progress(void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(ud);
  if (t->progress && t->checked) draw_progress(*t, false);
  return 0;
}

std::string http_hint(long status) {
  if (status == 401 || status == 403) return " (unauthorized: a gated or private repository needs HF_TOKEN)";
  if (status == 404) return " (not found: check owner/repo/path)";
  if (status >= 500) return " (server error: try again later)";
  return "";
}

DownloadResult download_once(const std::string& url, const std::string& dest, const DownloadOptions& opts,
                             bool may_retry) {
  static const bool curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  if (!curl_ok) fail("download", "libcurl failed to initialise");
  const std::string part = dest + ".part";
  std::error_code ec;
  if (!fs::path(dest).parent_path().empty()) fs::create_directories(fs::path(dest).parent_path(), ec);

  Transfer t;
  t.part = part;
  t.progress = opts.progress && isatty(STDERR_FILENO);
  const auto have = fs::is_regular_file(part, ec) ? fs::file_size(part, ec) : 0;
  t.offset = ec ? 0 : have;
  t.out = std::fopen(part.c_str(), t.offset ? "ab" : "wb");
  if (!t.out) fail("download", part + ": cannot open for writing: " + std::strerror(errno));

  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  CP_ASSERT(curl);
  t.curl = curl.get();
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(nullptr, curl_slist_free_all);
  if (!opts.bearer_token.empty())
    headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + opts.bearer_token).c_str()));
  char errbuf[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "coppice/0.1");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // abort after 60 s without progress
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  // A plain Range header, not CURLOPT_RESUME_FROM: that one fails outright on a 200 answer,
  // where we want to restart from zero instead.
  const std::string range = std::to_string(t.offset) + "-";
  if (t.offset) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());

  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  const bool closed = t.out && std::fclose(t.out) == 0;
  t.out = nullptr;
  if (t.progress && t.checked) draw_progress(t, true);
  if (rc == CURLE_OK && status == 200 && t.offset > 0 && !t.checked) {
    // Range ignored and the whole file is empty: on_data never ran to truncate the old .part.
    fs::resize_file(part, 0, ec);
    if (ec) fail("download", part + ": cannot truncate: " + ec.message());
    t.offset = 0;
    t.restarted = true;
  }
  const uint64_t on_disk = t.offset + t.received;

  if (t.write_failed || (rc == CURLE_OK && !closed))
    fail("download", part + ": write failed after " + std::to_string(on_disk) + " bytes: " +
                         std::strerror(t.write_errno ? t.write_errno : errno) + " (disk full?)");
  if (status == 416 && t.offset > 0 && may_retry) {
    // Our .part is at least as long as the file (complete, or from a different file): restart.
    fs::remove(part, ec);
    return download_once(url, dest, opts, false);
  }
  const long http = t.http_error ? t.http_error : (status >= 400 ? status : 0);
  if (http || t.bad_range || rc != CURLE_OK) {
    if (on_disk == 0) fs::remove(part, ec);  // nothing worth resuming
    if (http) fail("download", url + ": HTTP " + std::to_string(http) + http_hint(http));
    if (t.bad_range)
      fail("download", url + ": asked for bytes from " + std::to_string(t.offset) +
                           " but the server sent a range starting at " + std::to_string(t.range_start));
    const std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (on_disk == 0) fail("download", url + ": " + why);
    fail("download", url + ": " + why + " (" + size_str(on_disk) +
                         (t.total ? " of " + size_str(t.total) : std::string()) + " kept in " + part +
                         "; run again to resume)");
  }

  DownloadResult res;
  res.path = dest;
  res.resumed = t.offset > 0 && !t.restarted;
  res.bytes = on_disk;
  res.sha256 = sha256_file(part);
  const std::string expected =
      !opts.expected_sha256.empty() ? lower(opts.expected_sha256) : !t.linked_etag.empty() ? t.linked_etag : t.etag;
  if (!expected.empty()) {
    if (expected != res.sha256) {
      fs::remove(part, ec);
      fail("download", url + ": sha256 mismatch: expected " + expected + ", got " + res.sha256 + " (" +
                           std::to_string(on_disk) + " bytes; the partial file was deleted)");
    }
    res.verified = true;
  } else {
    std::fprintf(stderr, "coppice: warning: %s: no sha256 available (none given, none in the headers); not verified\n",
                 url.c_str());
  }
  fs::rename(part, dest, ec);  // atomic within one file system: dest is never half-written
  if (ec) fail("download", dest + ": cannot move the download into place: " + ec.message());
  return res;
}

}  // namespace

DownloadResult download_file(const std::string& url, const std::string& dest, const DownloadOptions& opts) {
  if (!opts.expected_sha256.empty() && !is_sha256(opts.expected_sha256))
    fail("download", "expected sha256 '" + opts.expected_sha256 + "' is not 64 hex digits");
  return download_once(url, dest, opts, true);
}

std::string download_hf(const std::string& spec, const std::string& dir, const std::string& sha256, bool progress) {
  const HfSpec s = parse_hf_spec(spec);
  const fs::path dest = fs::path(dir) / s.owner / s.repo / s.path;
  std::error_code ec;
  if (fs::exists(dest, ec)) {
    if (!sha256.empty() && sha256_file(dest.string()) != lower(sha256))
      fail("download", dest.string() + ": cached file does not match sha256 " + sha256 + "; delete it to re-download");
    return dest.string();
  }
  DownloadOptions o;
  o.expected_sha256 = sha256;
  o.progress = progress;
  if (const char* tok = std::getenv("HF_TOKEN"); tok && *tok) o.bearer_token = tok;
  const std::string url = hf_endpoint() + "/" + s.owner + "/" + s.repo + "/resolve/main/" + s.path;
  std::fprintf(stderr, "coppice: downloading %s\n", url.c_str());
  return download_file(url, dest.string(), o).path;
}

}  // namespace coppice
