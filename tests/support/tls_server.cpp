#include "tests/support/tls_server.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace botgate::test {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

[[noreturn]] void fail(const std::string& what) {
  char buf[256] = "no OpenSSL error";
  if (unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  throw std::runtime_error("make_self_signed: " + what + ": " + buf);
}

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!ext) fail("extension " + value);
  if (X509_add_ext(cert, ext.get(), -1) != 1) fail("X509_add_ext " + value);
}

template <typename Write>
std::string to_pem(Write write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) fail("PEM write");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

TlsIdentity make_self_signed(const std::string& common_name,
                             const std::vector<std::string>& dns_names,
                             const std::vector<std::string>& ip_addresses) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) fail("EVP_EC_gen");

  X509Ptr cert(X509_new());
  if (!cert) fail("X509_new");
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial_bytes[8];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) fail("RAND_bytes");
  std::uint64_t serial = 0;
  for (unsigned char b : serial_bytes) serial = serial << 8 | b;
  serial &= 0x7fffffffffffffffULL;  // positive
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial == 0 ? 1 : serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  if (X509_set_pubkey(cert.get(), key.get()) != 1) fail("X509_set_pubkey");

  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) != 1) {
    fail("subject CN");
  }
  if (X509_set_issuer_name(cert.get(), name) != 1) fail("issuer");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyCertSign");
  add_extension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + ("DNS:" + d);
  for (const auto& ip : ip_addresses) san += (san.empty() ? "" : ",") + ("IP:" + ip);
  if (!san.empty()) add_extension(cert.get(), &ctx, NID_subject_alt_name, san);

  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("X509_sign");

  TlsIdentity id;
  id.cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  id.key_pem = to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return id;
}

TlsIdentity make_localhost_identity() {
  return make_self_signed("localhost", {"localhost"}, {"127.0.0.1"});
}

struct TlsServer::Impl {
  using Stream = ssl::stream<tcp::socket>;

  Impl(const TlsIdentity& identity, TlsServerMode m) : mode(m) {
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3);
    ctx.use_certificate_chain(net::buffer(identity.cert_pem));
    ctx.use_private_key(net::buffer(identity.key_pem), ssl::context::pem);
    const tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    port = acceptor.local_endpoint().port();
  }

  // Shared with the test thread.
  mutable std::mutex mu;
  std::vector<TlsRequest> reqs;
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> handshakes{0};
  std::uint16_t port = 0;
  const TlsServerMode mode;

  // Owned by the io thread.
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  std::set<std::shared_ptr<Stream>> conns;
  std::vector<tcp::socket> stalled;
  std::thread io_thread;

  void close_connections() {
    boost::system::error_code ec;
    for (const auto& s : conns) s->lowest_layer().close(ec);
    for (auto& s : stalled) s.close(ec);
    stalled.clear();
  }

  static net::awaitable<void> accept_loop(Impl* self) {
    for (;;) {
      auto [ec, sock] = co_await self->acceptor.async_accept(kTuple);
      if (ec) co_return;
      const auto id = ++self->accepted;
      if (self->mode == TlsServerMode::stall_handshake) {
        self->stalled.push_back(std::move(sock));
        continue;
      }
      sock.set_option(tcp::no_delay(true), ec);
      auto s = std::make_shared<Stream>(std::move(sock), self->ctx);
      self->conns.insert(s);
      net::co_spawn(self->ioc, session(self, s, id), net::detached);
    }
  }

  static net::awaitable<void> session(Impl* self, std::shared_ptr<Stream> s, std::uint64_t id) {
    auto [hec] = co_await s->async_handshake(ssl::stream_base::server, kTuple);
    if (!hec) {
      ++self->handshakes;
      const char* sni = SSL_get_servername(s->native_handle(), TLSEXT_NAMETYPE_host_name);
      const std::string server_name = sni ? sni : "";
      beast::flat_buffer buffer;
      for (;;) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(16 * 1024 * 1024);
        auto [rec, rn] = co_await http::async_read(*s, buffer, parser, kTuple);
        if (rec) break;
        auto req = parser.release();
        TlsRequest r;
        r.connection = id;
        r.server_name = server_name;
        r.method = std::string(req.method_string());
        r.target = std::string(req.target());
        r.body = req.body();
        {
          std::lock_guard lk(self->mu);
          self->reqs.push_back(r);
        }
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::server, "botgate-tls-test");
        res.set(http::field::content_type, "text/plain");
        res.body() = r.method + " " + r.target + "\n" + r.body;
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(*s, res, kTuple);
        if (wec || !res.keep_alive()) break;
      }
    }
    boost::system::error_code ec;
    s->lowest_layer().close(ec);
    self->conns.erase(s);
  }
};

TlsServer::TlsServer(const TlsIdentity& identity, TlsServerMode mode)
    : impl_(std::make_shared<Impl>(identity, mode)) {
  net::co_spawn(impl_->ioc, Impl::accept_loop(impl_.get()), net::detached);
  impl_->io_thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

TlsServer::~TlsServer() {
  net::post(impl_->ioc, [impl = impl_.get()] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    impl->close_connections();
    impl->guard.reset();
  });
  impl_->io_thread.join();  // every coroutine ends once its socket is closed
}

std::uint16_t TlsServer::port() const {
  return impl_->port;
}
std::uint64_t TlsServer::connections_accepted() const {
  return impl_->accepted.load();
}
std::uint64_t TlsServer::handshakes_completed() const {
  return impl_->handshakes.load();
}

std::vector<TlsRequest> TlsServer::requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->reqs;
}

void TlsServer::drop_connections() {
  std::promise<void> done;
  net::post(impl_->ioc, [impl = impl_.get(), &done] {
    impl->close_connections();
    done.set_value();
  });
  done.get_future().wait();
}

}  // namespace botgate::test
