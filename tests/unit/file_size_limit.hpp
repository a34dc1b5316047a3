// A lowered file size limit for a test: writes past it fail like writes to a full disk.
#pragma once

#include <sys/resource.h>

#include <csignal>

namespace botgate::test {

// Lowers this process's file size limit (RLIMIT_FSIZE) with SIGXFSZ ignored, so that a write
// past `bytes` fails with EFBIG after writing what fits, as a full disk fails after a short
// write. Restores both on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

}  // namespace botgate::test
