// A real HTTP/1.1 backend for integration tests: Boost.Beast on its own io thread,
// keep-alive, every request recorded, and faults that can be switched at run time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace botgate::test {

using namespace std::chrono_literals;

struct BackendRequest {
  std::uint64_t order = 0;  // arrival order, shared by every TestBackend in the process
  std::chrono::steady_clock::time_point at{};
  std::uint64_t connection = 0;  // which accepted connection carried it (per backend)
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  int status = 0;         // what the backend chose to answer (0: none: hang/close-mid/killed)
  bool answered = false;  // the whole response was written to the socket

  std::string header(const std::string& lower_name) const;
  std::string idempotency_key() const { return header("idempotency-key"); }
  std::string attempt() const { return header("x-botgate-attempt"); }
  // Answered with a 2xx: the backend took the event.
  bool delivered() const { return answered && status >= 200 && status < 300; }
};

enum class FaultMode {
  ok,                  // 200 {}
  status,              // the configured status, body {"error":"injected"}
  hang,                // read the request, never answer (until the peer or stop() closes)
  close_mid_response,  // send the status line, headers and part of the body, then close
  slow,                // wait `delay`, then 200 {}
  close_after_answer,  // 200 {} with Connection: close, then an orderly close
  close_unanswered,    // read the request, then close without a byte of answer
};

class TestBackend {
 public:
  // Binds 127.0.0.1 on an ephemeral port and starts serving.
  TestBackend();
  ~TestBackend();
  TestBackend(const TestBackend&) = delete;
  TestBackend& operator=(const TestBackend&) = delete;

  // Kills the backend: closes the listening socket and resets every open connection.
  // Requests being served at that moment are never answered. Blocks until done.
  void stop();
  // Serves again on the same port (SO_REUSEADDR). No-op while running.
  void start();
  bool running() const;

  std::uint16_t port() const;
  std::string url(const std::string& path = "/events") const;

  // The body of a 2xx answer, computed from the request (e.g. {"replies":[...]}); by
  // default "{}". Runs under the backend's lock: keep it quick.
  void set_answer_body(std::function<std::string(const BackendRequest&)> body);
  void set_ok();
  void set_status(int status);
  void set_hang();
  void set_close_mid_response();
  void set_slow(std::chrono::milliseconds delay);
  void set_close_after_answer();
  // A Retry-After header on every answer that is not 2xx (empty: none).
  void set_retry_after(std::string value);
  void set_close_unanswered();
  FaultMode mode() const;

  std::vector<BackendRequest> requests() const;
  std::size_t count() const;
  std::size_t delivered_count() const;
  std::uint64_t connections_accepted() const;
  void clear();

  // Block until at least `n` requests were recorded / `pred` holds over the
  // recorded requests. False on timeout.
  bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout = 10s) const;
  bool wait_for_delivered(std::size_t n, std::chrono::milliseconds timeout = 10s) const;
  bool wait_until(const std::function<bool(const std::vector<BackendRequest>&)>& pred,
                  std::chrono::milliseconds timeout = 10s) const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace botgate::test
