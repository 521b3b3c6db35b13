#include "server/exchange.h"

namespace coppice::server {

namespace {
int severity(FinishReason r) {
  switch (r) {
    case FinishReason::Error: return 4;
    case FinishReason::Cancelled: return 3;
    case FinishReason::Length: return 2;
    case FinishReason::Stop: return 1;
    default: return 0;
  }
}
double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Exchange::Exchange(const Tokenizer& tok, Options opts, Metrics* metrics, Clock::time_point arrival)
    : tok_(tok), opts_(std::move(opts)), metrics_(metrics), arrival_(arrival), open_(opts_.n) {
  choices_.reserve(static_cast<size_t>(opts_.n));
  for (int i = 0; i < opts_.n; ++i) {
    choices_.push_back(Choice{std::make_unique<StreamDecoder>(tok_), StopMatcher(opts_.stop), {}, 0, {}, {},
                              FinishReason::None});
    // Decoding a few prompt tokens sets the decoder's "text has started" state; their text
    // (and any incomplete character at the end) is dropped.
    for (int32_t id : opts_.prime) choices_.back().dec->push(id);
    choices_.back().dec->flush();
  }
}

EventSink Exchange::sink(const std::shared_ptr<Exchange>& self) {
  return [self](const TokenEvent& ev) { return self->on_event(ev); };
}

void Exchange::emit(Choice& c, int index, std::string text, FinishReason finish) {
  Piece p;
  p.choice = index;
  p.text = std::move(text);
  p.finish = finish;
  // Logprobs travel with the text their tokens produced; a stop match drops the held ones.
  if (!p.text.empty() || finish != FinishReason::None) {
    if (!p.text.empty() || !c.stop.stopped()) p.tokens = std::move(c.pending);
    c.pending.clear();
  }
  if (p.text.empty() && p.tokens.empty() && finish == FinishReason::None) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::move(p));
  }
  cv_.notify_all();
}

bool Exchange::on_event(const TokenEvent& ev) {
  if (ev.choice < 0 || ev.choice >= opts_.n) return false;
  Choice& c = choices_[static_cast<size_t>(ev.choice)];
  if (c.finish != FinishReason::None) return false;
  const auto now = Clock::now();
  if (ev.token >= 0) {
    if (c.tokens++ == 0) c.first = now;
    c.last = now;
    if (metrics_) metrics_->on_tokens(1, now);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!any_token_) {
        any_token_ = true;
        first_token_ = now;
        if (metrics_) metrics_->on_ttft(seconds(now - arrival_));
      }
    }
    if (!c.stop.stopped()) {
      if (opts_.logprobs) {
        TokenInfo ti{ev.token, tok_.token_to_piece(ev.token, true), ev.logprob, {}};
        for (const TokenLogprob& t : ev.top) ti.top.emplace_back(tok_.token_to_piece(t.id, true), t.logprob);
        c.pending.push_back(std::move(ti));
      }
      std::string text = c.stop.push(c.dec->push(ev.token));
      emit(c, ev.choice, std::move(text), FinishReason::None);
    }
  }
  if (ev.finish == FinishReason::None) return !c.stop.stopped();

  // The choice's last event: release what is held back, report usage.
  FinishReason why = c.stop.stopped() ? FinishReason::Stop : ev.finish;
  std::string rest;
  if (!c.stop.stopped()) {
    rest = c.stop.push(c.dec->flush());
    rest += c.stop.flush();
    if (c.stop.stopped()) why = FinishReason::Stop;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    c.finish = why;
  }
  emit(c, ev.choice, std::move(rest), why);
  if (metrics_ && c.tokens >= 2) metrics_->on_tpot(seconds(c.last - c.first) / (c.tokens - 1));
  bool done = false;
  FinishReason worst = FinishReason::None;
  {
    std::lock_guard<std::mutex> lk(mu_);
    usage_.prompt_tokens = std::max(usage_.prompt_tokens, ev.prompt_tokens);
    usage_.cached_tokens = std::max(usage_.cached_tokens, ev.cached_tokens);
    usage_.completion_tokens += ev.completion_tokens;
    done = --open_ == 0;
    if (done)
      for (const Choice& x : choices_)
        if (severity(x.finish) > severity(worst)) worst = x.finish;
  }
  if (done && metrics_) metrics_->on_request_finished(worst);
  cv_.notify_all();
  return false;
}

bool Exchange::drain(std::vector<Piece>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !queue_.empty() || open_ == 0; });
  for (Piece& p : queue_) out.push_back(std::move(p));
  queue_.clear();
  return open_ == 0;
}

Usage Exchange::usage() const {
  std::lock_guard<std::mutex> lk(mu_);
  return usage_;
}

FinishReason Exchange::finish_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  FinishReason worst = FinishReason::None;
  for (const Choice& x : choices_)
    if (severity(x.finish) > severity(worst)) worst = x.finish;
  return worst;
}

double Exchange::ttft_ms() const {
  std::lock_guard<std::mutex> lk(mu_);
  return any_token_ ? std::chrono::duration<double, std::milli>(first_token_ - arrival_).count() : -1.0;
}

}  // namespace coppice::server
