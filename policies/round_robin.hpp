// Round-robin choice of a target index. Pure: no clock, no randomness, no I/O.
#pragma once

#include <cstddef>
#include <optional>

namespace botgate {

class RoundRobin {
 public:
  explicit RoundRobin(std::size_t targets) : n_(targets) {}

  // Next index in rotation. When `avoid` is given and another target exists, the
  // avoided index is skipped: a retry goes to the pool's next target, not the one
  // that just failed. Returns nullopt only for an empty pool.
  std::optional<std::size_t> pick(std::optional<std::size_t> avoid = std::nullopt) noexcept {
    if (n_ == 0) return std::nullopt;
    std::size_t i = next_;
    next_ = (next_ + 1) % n_;
    if (avoid && *avoid == i && n_ > 1) {
      i = next_;
      next_ = (next_ + 1) % n_;
    }
    return i;
  }

  std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_;
  std::size_t next_ = 0;
};

}  // namespace botgate
