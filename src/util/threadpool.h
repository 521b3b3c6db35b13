// Persistent worker pool tuned for decode: workers spin briefly on a generation counter
// (a forward step issues hundreds of short parallel regions), then sleep on a condvar.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace coppice {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(ith, nth) on every thread (the caller is thread 0) and waits for all.
  template <typename F>
  void run(F&& fn) {
    if (n_threads_ == 1) { fn(0, 1); return; }
    using Fn = std::remove_reference_t<F>;
    dispatch(const_cast<void*>(static_cast<const void*>(&fn)),
             [](void* ctx, int ith, int nth) { (*static_cast<Fn*>(ctx))(ith, nth); });
  }

  // Splits [0, n) into one contiguous range per thread: fn(begin, end).
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    run([&](int ith, int nth) {
      const int64_t b = n * ith / nth, e = n * (ith + 1) / nth;
      if (b < e) fn(b, e);
    });
  }

  // Physical cores of this machine (the -t default).
  static int default_threads();

 private:
  using Trampoline = void (*)(void*, int, int);
  void dispatch(void* ctx, Trampoline call);
  void worker(int ith);

  int n_threads_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  void* ctx_ = nullptr;
  Trampoline call_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace coppice
