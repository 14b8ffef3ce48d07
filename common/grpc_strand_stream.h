#pragma once
// Bridges a gRPC callback-API bidirectional stream to C++20 coroutines running on an Asio strand.
//
// gRPC calls its reactions on its own threads; everything here is re-posted onto the strand, so the
// coroutine side needs no locks. Flow control: at most one write in flight (a gRPC rule) and at most
// kInboxLimit received frames buffered before reading pauses, so a slow consumer pushes back on the
// peer instead of growing memory.
//
// Lifetime: the object owns itself from Start() until gRPC's OnDone, because gRPC may call into it
// until then even if the coroutine that drives it has already gone.
//
// No operation may be started once gRPC has called OnDone (the call object is gone). Since OnDone
// reaches the strand asynchronously, "not finished yet" cannot be known there; instead the derived
// class guarantees OnDone cannot happen while the strand may still start operations: the client
// holds the call (AddHold) until Release(), the server only finishes through its own Finish().
// Both set `closing_` on the strand before that point, and no operation starts after it.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <optional>

namespace orthrus {

// Wakes the coroutine waiting on the strand. Waiters must re-check their condition in a loop; a wake
// that happens while nobody waits is not lost because the condition is checked first, on the strand.
class StrandWaker {
 public:
  explicit StrandWaker(boost::asio::any_io_executor strand) : timer_(strand) {
    timer_.expires_at(boost::asio::steady_timer::time_point::max());
  }
  boost::asio::awaitable<void> Wait() {
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }
  void Wake() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
};

template <class Base, class In, class Out>
class StrandStream : public Base,
                     public std::enable_shared_from_this<StrandStream<Base, In, Out>> {
 public:
  static constexpr size_t kInboxLimit = 2;

  explicit StrandStream(boost::asio::any_io_executor strand) : strand_(strand), waker_(strand) {}

  // ---- coroutine side: call only on the strand ----

  // Returns false when the stream can no longer carry writes (peer gone, cancelled, finished).
  boost::asio::awaitable<bool> Write(Out frame) {
    if (finished_ || write_failed_ || closing_ || writing_) co_return false;
    out_ = std::move(frame);
    writing_ = true;
    this->StartWrite(&out_);
    while (writing_) co_await waker_.Wait();
    co_return !write_failed_;
  }

  // Next frame from the peer; nullopt when the peer has no more (half-close, error or cancel).
  boost::asio::awaitable<std::optional<In>> Read() {
    while (inbox_.empty() && !read_ended_) co_await waker_.Wait();
    if (inbox_.empty()) co_return std::nullopt;
    In frame = std::move(inbox_.front());
    inbox_.pop_front();
    ResumeReadingIfPaused();
    co_return frame;
  }

  boost::asio::awaitable<void> WaitUntilDone() {
    while (!finished_) co_await waker_.Wait();
  }

  bool finished() const { return finished_; }
  boost::asio::any_io_executor strand_executor() const { return strand_; }

 protected:
  // Call once, before the call starts: from then on gRPC may call back at any time.
  void BeginOwnership() {
    self_ = this->shared_from_this();
    reading_ = true;
    this->StartRead(&in_);
  }

  // For derived classes that end the stream themselves (server Finish): no further ops may start.
  void MarkClosing() { closing_ = true; }
  bool closing() const { return closing_; }

  // Post `fn` to the strand with the object kept alive.
  template <class Fn>
  void OnStrand(Fn fn) {
    boost::asio::post(strand_, [self = this->shared_from_this(), fn = std::move(fn)]() mutable { fn(); });
  }

  void OnReadDone(bool ok) override {
    OnStrand([this, ok] {
      reading_ = false;
      if (ok) {
        inbox_.push_back(std::move(in_));
        in_.Clear();
        ResumeReadingIfPaused();
      } else {
        read_ended_ = true;
      }
      waker_.Wake();
    });
  }

  void OnWriteDone(bool ok) override {
    OnStrand([this, ok] {
      writing_ = false;
      if (!ok) write_failed_ = true;
      waker_.Wake();
    });
  }

  // Derived reactors call this from their OnDone: the last reaction gRPC makes.
  void MarkDoneFromGrpc() {
    OnStrand([this] {
      finished_ = true;
      read_ended_ = true;
      writing_ = false;
      write_failed_ = true;
      waker_.Wake();
      self_.reset();
    });
  }

  boost::asio::any_io_executor strand_;
  StrandWaker waker_;

 private:
  void ResumeReadingIfPaused() {
    if (!reading_ && !read_ended_ && !closing_ && !finished_ && inbox_.size() < kInboxLimit) {
      reading_ = true;
      this->StartRead(&in_);
    }
  }

  std::shared_ptr<StrandStream> self_;
  In in_;
  Out out_;
  std::deque<In> inbox_;
  bool reading_ = false;
  bool read_ended_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace orthrus
