// An https test server on 127.0.0.1 and the self-signed certificates it serves,
// generated at run time with the OpenSSL C API (nothing secret is checked in).
//
// TlsServer runs Boost.Beast over an Asio ssl::stream on its own io thread: every
// connection does a TLS handshake, then serves HTTP/1.1 keep-alive requests, each
// answered 200 with the body "<METHOD> <target>\n<request body>". It counts the TCP
// connections it accepted and the handshakes that completed. In `stall_handshake`
// mode it accepts TCP connections and never reads from them, so a client's
// handshake can only time out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace botgate::test {

// A certificate and its private key, both PEM.
struct TlsIdentity {
  std::string cert_pem;
  std::string key_pem;
};

// An EC P-256 key and a self-signed X.509 v3 certificate for it, valid from an
// hour ago for a day: subject and issuer CN=`common_name`, subjectAltName
// DNS:<each of dns_names> and IP:<each of ip_addresses>, CA:TRUE (so it can be
// its own trust anchor), extendedKeyUsage serverAuth. Throws on OpenSSL errors.
TlsIdentity make_self_signed(const std::string& common_name,
                             const std::vector<std::string>& dns_names,
                             const std::vector<std::string>& ip_addresses);

// CN=localhost with DNS:localhost and IP:127.0.0.1.
TlsIdentity make_localhost_identity();

struct TlsRequest {
  std::uint64_t connection = 0;  // which accepted connection carried it, from 1
  std::string server_name;       // the SNI the client sent; empty when none
  std::string method;
  std::string target;
  std::string body;
};

enum class TlsServerMode {
  serve,            // handshake, then answer every request
  stall_handshake,  // accept TCP, never read or write: the handshake never completes
};

class TlsServer {
 public:
  // Binds 127.0.0.1 on an ephemeral port and starts serving `identity`.
  explicit TlsServer(const TlsIdentity& identity, TlsServerMode mode = TlsServerMode::serve);
  // Closes the listener and every connection, and joins the io thread.
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  std::uint16_t port() const;
  std::uint64_t connections_accepted() const;
  std::uint64_t handshakes_completed() const;
  std::vector<TlsRequest> requests() const;

  // Closes every open connection (no close_notify), as a server that dropped its
  // idle keep-alive connections; keeps listening. Blocks until done.
  void drop_connections();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace botgate::test
