// Published WeChat / WeCom test vectors shared by the crypto and codec tests.
#pragma once

#include <string>

namespace botgate::test::wecom_sample {

// WeCom: the official WXBizMsgCrypt sample (Sample.cpp / Sample.py of the WeCom
// "加解密库", and the "举例说明" section of https://developer.work.weixin.qq.com/document/
// path/90968). Example one is URL verification (echostr), example two a message push.
// The decrypted texts are the ones that page publishes.
inline const std::string kWecomToken = "QDG6eK";
inline const std::string kWecomCorpId = "wx5823bf96d3bd56c7";
inline const std::string kWecomKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

inline const std::string kWecomVerifySig = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3";
inline const std::string kWecomVerifyTs = "1409659589";
inline const std::string kWecomVerifyNonce = "263014780";
inline const std::string kWecomEchoStr =
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
inline const std::string kWecomEchoPlain = "1616140317555161061";

inline const std::string kWecomMsgSig = "477715d11cdb4164915debcba66cb864d751f3e6";
inline const std::string kWecomMsgTs = "1409659813";
inline const std::string kWecomMsgNonce = "1372623149";
inline const std::string kWecomEncrypt =
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
inline const std::string kWecomMsgPlain =
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>";

}  // namespace botgate::test::wecom_sample
