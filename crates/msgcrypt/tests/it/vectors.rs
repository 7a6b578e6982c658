//! Published vectors, copied byte for byte from where they were published.
//! WeCom (企业微信) uses the same scheme with the corp id in the appid's
//! place, so its official vectors test the same code.

use wxtoken_msgcrypt::MsgCrypt;

/// Tencent's official-account sample key (also WxJava's and most SDKs').
const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn random(s: &str) -> [u8; 16] {
    s.as_bytes().try_into().unwrap()
}

/// Tencent's official-account Java sample, `WXBizMsgCryptTest.testAesEncrypt`
/// and `testAesEncrypt2`, kept verbatim in WxJava's `WxCryptUtilTest`
/// (weixin-java-common/src/test/java/me/chanjar/weixin/common/util/crypto/).
#[test]
fn tencent_java_sample_fixed_random_encryptions() {
    let c = MsgCrypt::new("pamtest", SAMPLE_KEY, "wxb11529c136998cb6").unwrap();
    let cases = [
        (
            "我是中文abcd123",
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==",
        ),
        (
            "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>",
            "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb",
        ),
    ];
    for (xml, encrypt) in cases {
        assert_eq!(
            c.encrypt_with_random(xml, random("aaaabbbbccccdddd")),
            encrypt
        );
        assert_eq!(c.decrypt(encrypt).unwrap(), xml);
    }
}

/// Tencent's official-account Python sample (`Sample.py`, jonyqin, 2014):
/// its DecryptMsg example, a body whose plain fields ride along outside
/// `Encrypt` ("compatible mode").
#[test]
fn tencent_python_sample_decrypt_message() {
    let c = MsgCrypt::new("spamtest", SAMPLE_KEY, "wx2c2769f8efd9abc2").unwrap();
    let encrypt = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let (timestamp, nonce, sig) = (
        "1409735669",
        "1320562132",
        "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    );
    assert_eq!(c.signature(timestamp, nonce, encrypt), sig);
    let xml = c.open(body.as_bytes(), timestamp, nonce, sig).unwrap();
    assert_eq!(
        xml,
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
    );
}

/// WeCom's official WXBizMsgCrypt samples (Go `sample.go`, PHP, Java:
/// "使用示例一：验证回调URL" and "使用示例二：对用户回复的消息解密"); the
/// plaintexts are as the samples' PHP port asserts them.
#[test]
fn wecom_official_sample_verify_url_and_decrypt() {
    let c = MsgCrypt::new(
        "QDG6eK",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "wx5823bf96d3bd56c7",
    )
    .unwrap();
    let echostr =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    assert_eq!(
        c.signature("1409659589", "263014780", echostr),
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    );
    assert_eq!(c.decrypt(echostr).unwrap(), "1616140317555161061");

    let body = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>";
    let xml = c
        .open(
            body.as_bytes(),
            "1409659813",
            "1372623149",
            "477715d11cdb4164915debcba66cb864d751f3e6",
        )
        .unwrap();
    assert_eq!(
        xml,
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>"
    );
}

/// wechatpy's own tests (tests/test_crypto.py, WeCom flavour):
/// `test_encrypt_message` (random "1234567890123456"), `test_decrypt_message`
/// and `test_check_signature_should_ok`.
#[test]
fn wechatpy_test_crypto_vectors() {
    let c = MsgCrypt::new(
        "123456",
        "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
        "wx49f0ab532d5d035a",
    )
    .unwrap();
    let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    let encrypt = c.encrypt_with_random(reply, random("1234567890123456"));
    assert_eq!(
        encrypt,
        "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
    );
    assert_eq!(
        c.signature("1411525903", "461056294", &encrypt),
        "407518b7649e86ef23978113f92d27afa9296533"
    );

    let body = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>";
    let xml = c
        .open(
            body.as_bytes(),
            "1411525903",
            "461056294",
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        )
        .unwrap();
    assert!(xml.contains("<Content><![CDATA[test]]></Content>"), "{xml}");
    assert!(
        xml.contains("<FromUserName><![CDATA[messense]]></FromUserName>"),
        "{xml}"
    );

    let echo =
        "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==";
    assert_eq!(
        c.signature("1411443780", "437374425", echo),
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
    );
    let echoed = c.decrypt(echo).unwrap();
    assert!(
        !echoed.is_empty() && echoed.bytes().all(|b| b.is_ascii_digit()),
        "{echoed}"
    );
    // test_check_signature_should_fail: one digit of the nonce off.
    assert_ne!(
        c.signature("1411443780", "437374424", echo),
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
    );
}

/// The Open Platform's own worked example for third-party platforms
/// (developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/
/// Before_Develop/message_push.html, "接收消息推送"): a `debug_demo` push to
/// component wx134c8103faa5a59e and the reply to it, with every
/// intermediate (random, lengths, ciphertexts, signatures) given.
#[test]
fn open_platform_doc_push_and_reply() {
    let c = MsgCrypt::new("AAAAA", &"A".repeat(43), "wx134c8103faa5a59e").unwrap();
    let encrypt = "D7yzvUNAL930rd28wf21s4hvXhz0L6Uit/p2Di6C5DHyYGpEgdBRnKjBec34JwoQXicwaZC7fOVihW80F4VtsdvE//1vr7oAbqjDv8KenVp+ajKYpJnyQ4zMRhIC+a31fCVOMC03FfzV/QuC94kBP55a+Za3sJgvAn+ZbsNqZI5DkyuzkhQN8OBqCzFhizGmy0xpM0MEA4agpvE+RuNO1rhHTtuJB5yltw1FiYzecSXJ+y/D2r81VkRn2eYjh2ltsoyfbDR7Is6ookXIFxTfyeNyeHxMeT4KN5WpCDmSbTcUYrbBUlkGLJ9n/rU8YOywma6G7aTb7KZKOqCxgfoUlYEZPk4FUL/TK7ShriFDMVCLyjQJ15Ob++agDWtcxhfUfe6HIoIpRW8mKNBQiY/Jd1svvuskA1wLef1RTtzKfMpagSCX/laZINmdnX4zrF6kIaR9P4xQrWXbsTFHTYe0Mg==";
    let body = format!(
        "<xml>\n    <ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\n    <Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>"
    );
    let msg = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\n<FromUserName><![CDATA[o9AgO5Kd5ggOC-bXrbNODIiE3bGY]]></FromUserName>\n<CreateTime>1715943329</CreateTime>\n<MsgType><![CDATA[event]]></MsgType>\n<Event><![CDATA[debug_demo]]></Event>\n<debug_str><![CDATA[hello world]]></debug_str>\n</xml>";
    assert_eq!(msg.len(), 292, "msg_len=292 in the doc");
    let sig = "6c12a4205838198b8fa631b3220723bb07f1015c";
    assert_eq!(c.signature("1715943329", "1590219412", encrypt), sig);
    assert_eq!(
        c.open(body.as_bytes(), "1715943329", "1590219412", sig)
            .unwrap(),
        msg
    );
    assert_eq!(
        c.encrypt_with_random(msg, random("1205899eaf019bbd")),
        encrypt
    );

    let reply = "<xml><demo_resp>[CDATA[good luck]]</demo_resp></xml>";
    assert_eq!(reply.len(), 52, "msg_len=52 in the doc");
    let reply_encrypt = c.encrypt_with_random(reply, random("999951349e8ee746"));
    assert_eq!(
        reply_encrypt,
        "hE8R6mGXHkJJjU72KxzKUd1GEkKJaEZq7vRL8XgK3o+00k8JGq6+pZJUIlTSyhsX+bxIBQ72g3GyvDdIZcr6+3HAZbSvPT9t/o11MI7d6WELwqrGd7jMnV0zv3Zc9Nq7"
    );
    assert_eq!(
        c.signature("1713424427", "415670741", &reply_encrypt),
        "03e0812039325c2712ef5f0f980fd14c70d6e307"
    );
    assert_eq!(c.decrypt(&reply_encrypt).unwrap(), reply);
}
