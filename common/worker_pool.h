#pragma once
// A bounded pool of threads for blocking calls (LDAP, GSSAPI/KDC, SQLite), which must never run on
// an event loop. Bounded twice: a fixed number of threads and a fixed queue, so a dead KDC makes
// requests fail fast with "overloaded" instead of piling up threads or memory.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/result.h"

namespace orthrus {

class WorkerPool {
 public:
  WorkerPool(size_t threads, size_t max_queue);
  ~WorkerPool();  // finishes queued work, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False when the queue is full.
  bool TrySubmit(std::function<void()> job);

 private:
  void Work();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  size_t max_queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Runs `fn` on the pool and resumes the calling coroutine (on its own executor, a strand) with the
// result. If no result arrives within `timeout` the caller gets `on_timeout` at once; the job runs to
// completion on its worker and its result is dropped. `on_overload` when the queue is full.
template <class T>
boost::asio::awaitable<Result<T>> RunBlocking(WorkerPool& pool, std::function<Result<T>()> fn,
                                              std::chrono::milliseconds timeout, Error on_timeout,
                                              Error on_overload) {
  auto executor = co_await boost::asio::this_coro::executor;
  struct State {
    explicit State(boost::asio::any_io_executor ex) : timer(ex) {}
    std::optional<Result<T>> result;
    boost::asio::steady_timer timer;
  };
  auto state = std::make_shared<State>(executor);
  state->timer.expires_after(timeout);
  bool queued = pool.TrySubmit([state, fn = std::move(fn), executor]() mutable {
    Result<T> r = fn();
    boost::asio::post(executor, [state, r = std::move(r)]() mutable {
      state->result.emplace(std::move(r));
      state->timer.cancel();
    });
  });
  if (!queued) co_return std::unexpected(std::move(on_overload));
  // The completion is posted to this same strand, so it cannot slip in before the wait starts.
  boost::system::error_code ec;
  co_await state->timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  if (!state->result) co_return std::unexpected(std::move(on_timeout));
  co_return std::move(*state->result);
}

}  // namespace orthrus
