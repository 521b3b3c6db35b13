// Model downloads from Hugging Face (or a mirror): resumable (.part + HTTP Range), verified
// against a sha256 (explicit, or the hub's X-Linked-Etag/ETag), renamed into place only when
// complete and correct. Errors: "[download] URL: HTTP 404".
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace coppice {

struct HfSpec {
  std::string owner, repo, path;  // path inside the repository, may contain '/'
};
// "owner/repo/path/to/file.gguf"; throws coppice::Error for a malformed spec.
HfSpec parse_hf_spec(const std::string& spec);

// $COPPICE_MODELS, else ~/.cache/coppice (created when missing).
std::string default_model_dir();

// $COPPICE_HF_ENDPOINT, else $HF_ENDPOINT, else https://huggingface.co (no trailing slash).
std::string hf_endpoint();

struct DownloadOptions {
  std::string expected_sha256;  // 64 hex digits; empty: the server's X-Linked-Etag/ETag if offered
  bool progress = true;         // progress bar on stderr (only drawn when stderr is a terminal)
  std::string bearer_token;     // Authorization: Bearer ... (HF_TOKEN); not sent across redirects
};

struct DownloadResult {
  std::string path;
  std::string sha256;
  bool verified = false;  // a checksum was available and matched
  bool resumed = false;   // continued a .part file
  uint64_t bytes = 0;
};

// Downloads url to dest via dest + ".part": continues an existing .part with a Range request
// (restarting from zero if the server answers 200), verifies the sha256, then renames into
// place. Throws coppice::Error on failure: a .part left by an interrupted transfer is kept for
// resuming; one with a wrong checksum is deleted. Without any checksum it warns on stderr and
// returns verified = false.
DownloadResult download_file(const std::string& url, const std::string& dest, const DownloadOptions& opts);

// Resolves spec against hf_endpoint() and downloads into dir/<owner>/<repo>/<path> unless that
// file already exists (checked against sha256 when given). Sends $HF_TOKEN when set. Returns
// the local path.
std::string download_hf(const std::string& spec, const std::string& dir, const std::string& sha256 = "",
                        bool progress = true);

// Lower-case hex sha256 of a file; throws coppice::Error when unreadable.
std::string sha256_file(const std::string& path);

}  // namespace coppice
