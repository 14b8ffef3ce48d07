// A small incremental HTTP/1.1 response parser: status, Content-Length / chunked / close-delimited
// bodies (counted and discarded), Connection: close. Enough for a load generator; not a validator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace orthrus::loadgen {

class ResponseParser {
 public:
  static constexpr size_t kMaxHead = 64 * 1024;

  // Consumes bytes up to the end of this response; returns how many were used.
  size_t Feed(const char* data, size_t n) {
    size_t used = 0;
    while (used < n && state_ != State::kDone && state_ != State::kError) {
      used += Step(data + used, n - used);
    }
    return used;
  }
  // The peer closed: completes a close-delimited body, anything else is an error.
  void Eof() { state_ = state_ == State::kUntilClose ? State::kDone : State::kError; }

  bool done() const { return state_ == State::kDone; }
  bool error() const { return state_ == State::kError; }
  int status() const { return status_; }
  uint64_t body_bytes() const { return body_bytes_; }
  bool close() const { return close_; }

 private:
  enum class State { kHead, kLength, kChunkSize, kChunkData, kChunkCrlf, kTrailers, kUntilClose, kDone, kError };

  static bool IEquals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      char x = a[i], y = b[i];
      if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
      if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
      if (x != y) return false;
    }
    return true;
  }
  static bool IContains(std::string_view hay, std::string_view needle) {
    for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
      if (IEquals(hay.substr(i, needle.size()), needle)) return true;
    }
    return false;
  }
  static std::string_view Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
  }

  // Reads one CRLF-terminated line into line_; true when complete.
  bool TakeLine(const char* d, size_t n, size_t& used) {
    while (used < n) {
      char c = d[used++];
      if (c == '\n') return true;
      if (line_.size() > 4096) {
        state_ = State::kError;
        return false;
      }
      line_.push_back(c);
    }
    return false;
  }

  size_t Step(const char* d, size_t n) {
    size_t used = 0;
    switch (state_) {
      case State::kHead: {
        size_t from = head_.size() >= 3 ? head_.size() - 3 : 0;
        size_t take = n;
        head_.append(d, n);
        size_t end = head_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          if (head_.size() > kMaxHead) state_ = State::kError;
          return take;
        }
        size_t head_len = end + 4;
        size_t consumed = take - (head_.size() - head_len);
        head_.resize(head_len);
        ParseHead();
        return consumed;
      }
      case State::kLength: {
        uint64_t k = remaining_ < n ? remaining_ : n;
        remaining_ -= k;
        body_bytes_ += k;
        if (remaining_ == 0) state_ = State::kDone;
        return static_cast<size_t>(k);
      }
      case State::kChunkSize: {
        if (!TakeLine(d, n, used)) return used;
        std::string_view l = Trim(line_);
        size_t semi = l.find(';');
        if (semi != std::string_view::npos) l = Trim(l.substr(0, semi));
        uint64_t size = 0;
        if (l.empty()) {
          state_ = State::kError;
          return used;
        }
        for (char c : l) {
          int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
          if (v < 0 || size > (uint64_t{1} << 56)) {
            state_ = State::kError;
            return used;
          }
          size = size * 16 + static_cast<uint64_t>(v);
        }
        line_.clear();
        remaining_ = size;
        state_ = size == 0 ? State::kTrailers : State::kChunkData;
        return used;
      }
      case State::kChunkData: {
        uint64_t k = remaining_ < n ? remaining_ : n;
        remaining_ -= k;
        body_bytes_ += k;
        if (remaining_ == 0) state_ = State::kChunkCrlf;
        return static_cast<size_t>(k);
      }
      case State::kChunkCrlf: {
        if (!TakeLine(d, n, used)) return used;
        line_.clear();
        state_ = State::kChunkSize;
        return used;
      }
      case State::kTrailers: {
        if (!TakeLine(d, n, used)) return used;
        bool empty = Trim(line_).empty();
        line_.clear();
        if (empty) state_ = State::kDone;
        return used;
      }
      case State::kUntilClose:
        body_bytes_ += n;
        return n;
      case State::kDone:
      case State::kError:
        return 0;
    }
    return n;
  }

  void ParseHead() {
    std::string_view h = head_;
    size_t eol = h.find("\r\n");
    std::string_view status_line = h.substr(0, eol);
    // "HTTP/1.1 200 Reason"
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") {
      state_ = State::kError;
      return;
    }
    bool http10 = status_line.substr(5, 3) == "1.0";
    status_ = 0;
    for (size_t i = 9; i < 12; ++i) {
      char c = status_line[i];
      if (c < '0' || c > '9') {
        state_ = State::kError;
        return;
      }
      status_ = status_ * 10 + (c - '0');
    }
    bool chunked = false, have_length = false, keep_alive = false;
    uint64_t length = 0;
    size_t pos = eol + 2;
    while (pos < h.size()) {
      size_t next = h.find("\r\n", pos);
      if (next == std::string_view::npos || next == pos) break;
      std::string_view line = h.substr(pos, next - pos);
      pos = next + 2;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = line.substr(0, colon);
      std::string_view value = Trim(line.substr(colon + 1));
      if (IEquals(name, "content-length")) {
        length = 0;
        for (char c : value) {
          if (c < '0' || c > '9') {
            state_ = State::kError;
            return;
          }
          length = length * 10 + static_cast<uint64_t>(c - '0');
        }
        have_length = true;
      } else if (IEquals(name, "transfer-encoding")) {
        chunked = IContains(value, "chunked");
      } else if (IEquals(name, "connection")) {
        if (IContains(value, "close")) close_ = true;
        if (IContains(value, "keep-alive")) keep_alive = true;
      }
    }
    if (http10 && !keep_alive) close_ = true;
    head_.clear();
    if (status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200)) {
      state_ = State::kDone;
    } else if (chunked) {
      state_ = State::kChunkSize;
    } else if (have_length) {
      remaining_ = length;
      state_ = length == 0 ? State::kDone : State::kLength;
    } else {
      close_ = true;
      state_ = State::kUntilClose;
    }
  }

  State state_ = State::kHead;
  std::string head_;
  std::string line_;
  uint64_t remaining_ = 0;
  uint64_t body_bytes_ = 0;
  int status_ = 0;
  bool close_ = false;
};

}  // namespace orthrus::loadgen
