// The HTTP scorer of `coppice search`: POSTs {"prompt": ..., "text": ...} to a URL and reads
// back a number (plain text) or {"score": x}. Lives with the apps because the engine layer
// does not link the HTTP library.
#pragma once
#include <memory>
#include <string>

#include "engine/search_scorer.h"

namespace coppice::cli {

// url: http://host[:port][/path]. Throws coppice::Error on a bad URL; each score() throws on
// a connection failure, a non-2xx status or a body that is not a number.
std::unique_ptr<Scorer> make_http_scorer(const std::string& url);

}  // namespace coppice::cli
