// transport/http_server's reading of Transfer-Encoding (RFC 9112 6.1, 6.3): only a body that is
// chunked and nothing else is read; anything else would leave its length unknown or need a
// decoder botgate does not have.
#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

#include "transport/http_server.hpp"

using botgate::http::classify_transfer_encoding;
using botgate::http::TransferCoding;

namespace {

TransferCoding classify(std::vector<std::string_view> values) {
  return classify_transfer_encoding(values);
}

}  // namespace

TEST_CASE("no Transfer-Encoding field: the body is framed by Content-Length", "[http]") {
  CHECK(classify({}) == TransferCoding::none);
}

TEST_CASE("chunked alone is read, in any case, with spaces, empty elements or parameters",
          "[http]") {
  CHECK(classify({"chunked"}) == TransferCoding::chunked);
  CHECK(classify({"Chunked"}) == TransferCoding::chunked);
  CHECK(classify({" \tCHUNKED \t"}) == TransferCoding::chunked);
  CHECK(classify({", chunked ,"}) == TransferCoding::chunked);
  CHECK(classify({"", "chunked"}) == TransferCoding::chunked);
  CHECK(classify({"chunked;x=1"}) == TransferCoding::chunked);
}

TEST_CASE("another coding before a final chunked is not supported (501)", "[http]") {
  CHECK(classify({"gzip, chunked"}) == TransferCoding::unsupported);
  CHECK(classify({"gzip", "chunked"}) == TransferCoding::unsupported);
  CHECK(classify({"identity, chunked"}) == TransferCoding::unsupported);
}

TEST_CASE("a body whose length Transfer-Encoding leaves unknown is refused (400)", "[http]") {
  CHECK(classify({"identity"}) == TransferCoding::bad_framing);
  CHECK(classify({"gzip"}) == TransferCoding::bad_framing);
  CHECK(classify({"chunked, identity"}) == TransferCoding::bad_framing);
  CHECK(classify({"chunked", "gzip"}) == TransferCoding::bad_framing);
  CHECK(classify({"chunked, chunked"}) == TransferCoding::bad_framing);
  CHECK(classify({"xchunked"}) == TransferCoding::bad_framing);
  CHECK(classify({"chunkedx"}) == TransferCoding::bad_framing);
  CHECK(classify({""}) == TransferCoding::bad_framing);
  CHECK(classify({" , "}) == TransferCoding::bad_framing);
  // Parameters without a coding: Beast's own list reader stops there and sees no chunked.
  CHECK(classify({";x, chunked"}) == TransferCoding::bad_framing);
  CHECK(classify({" ;x", "chunked"}) == TransferCoding::bad_framing);
}
