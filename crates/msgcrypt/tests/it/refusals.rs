//! Every way a key or a message is refused, through the public API, and
//! that nothing secret leaks into `Debug` or an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wxtoken_msgcrypt::{CryptError, MsgCrypt};

const TOKEN: &str = "pamtest";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wxb11529c136998cb6";
const TS: &str = "1409304348";
const NONCE: &str = "xxxxxx";
const XML: &str = "<xml><Secret><![CDATA[ticket@@@plain]]></Secret></xml>";

fn crypt() -> MsgCrypt {
    MsgCrypt::new(TOKEN, KEY, APPID).unwrap()
}

/// `encrypt` with byte `at` (negative: from the end) flipped by `mask`.
fn flip(encrypt: &str, at: isize, mask: u8) -> String {
    let mut raw = STANDARD.decode(encrypt).unwrap();
    let i = if at < 0 {
        raw.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    raw[i] ^= mask;
    STANDARD.encode(raw)
}

fn body_with(encrypt: &str) -> String {
    format!("<xml><AppId><![CDATA[{APPID}]]></AppId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
}

#[test]
fn keys_that_are_not_43_base64_chars_are_bad_key() {
    for key in [
        "",
        &KEY[..42],
        &format!("{KEY}A"),
        &format!("{KEY}="),
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDE-_",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDE G",
        &"中".repeat(43),
        &"é".repeat(21),
    ] {
        let err = MsgCrypt::new(TOKEN, key, APPID).unwrap_err();
        assert_eq!(err, CryptError::BadKey, "{key:?}");
        assert!(err.is_config());
    }
    // Spare bits set in the 43rd character are fine (WeChat's keys do).
    assert!(MsgCrypt::new(TOKEN, &format!("{}B", "A".repeat(42)), APPID).is_ok());
}

#[test]
fn a_tampered_ciphertext_fails_the_signature() {
    let c = crypt();
    let sealed = c.seal(XML, TS, NONCE);
    let encrypt = c.encrypt(XML);
    let sig = c.signature(TS, NONCE, &encrypt);
    for at in [0, 17, -17, -1] {
        let body = body_with(&flip(&encrypt, at, 0x01));
        assert_eq!(
            c.open(body.as_bytes(), TS, NONCE, &sig),
            Err(CryptError::BadSignature)
        );
    }
    assert!(
        c.open(sealed.body.as_bytes(), TS, NONCE, &sealed.msg_signature)
            .is_ok()
    );
}

#[test]
fn a_tampered_ciphertext_decrypts_to_an_error() {
    let c = crypt();
    let encrypt = c.encrypt_with_random(XML, [3; 16]);
    // Byte 0 flips the length field's top byte (CBC: block 0 into block 1).
    assert_eq!(
        c.decrypt(&flip(&encrypt, 0, 0x80)),
        Err(CryptError::BadLength)
    );
    // The second-to-last AES block flips the last byte: the pad length.
    assert_eq!(
        c.decrypt(&flip(&encrypt, -17, 0x01)),
        Err(CryptError::BadPadding)
    );
    // The last block garbled whole.
    assert!(c.decrypt(&flip(&encrypt, -1, 0x01)).is_err());
}

#[test]
fn another_appid_is_wrong_appid_and_another_key_fails() {
    let encrypt = crypt().encrypt(XML);
    let other = MsgCrypt::new(TOKEN, KEY, "wx0000000000000000").unwrap();
    assert_eq!(other.decrypt(&encrypt), Err(CryptError::WrongAppid));
    let prefix = MsgCrypt::new(TOKEN, KEY, "wxb11529c136998cb").unwrap();
    assert_eq!(prefix.decrypt(&encrypt), Err(CryptError::WrongAppid));
    let other_key = MsgCrypt::new(TOKEN, &"B".repeat(43), APPID).unwrap();
    assert!(matches!(
        other_key.decrypt(&encrypt),
        Err(CryptError::BadPadding | CryptError::BadLength | CryptError::WrongAppid)
    ));
}

#[test]
fn a_wrong_signature_is_bad_signature() {
    let c = crypt();
    let s = c.seal(XML, TS, NONCE);
    let body = s.body.as_bytes();
    for sig in [
        String::new(),
        "0".repeat(40),
        s.msg_signature.to_uppercase(),
        format!("{} ", s.msg_signature),
        s.msg_signature[..39].to_owned(),
    ] {
        assert_eq!(
            c.open(body, TS, NONCE, &sig),
            Err(CryptError::BadSignature),
            "{sig:?}"
        );
    }
    assert_eq!(
        c.open(body, "1409304349", NONCE, &s.msg_signature),
        Err(CryptError::BadSignature)
    );
    assert_eq!(
        c.open(body, TS, "xxxxxy", &s.msg_signature),
        Err(CryptError::BadSignature)
    );
    let other_token = MsgCrypt::new("pamtesT", KEY, APPID).unwrap();
    assert_eq!(
        other_token.open(body, TS, NONCE, &s.msg_signature),
        Err(CryptError::BadSignature)
    );
}

#[test]
fn truncated_or_non_base64_ciphertexts_are_refused() {
    let c = crypt();
    let encrypt = c.encrypt(XML);
    let raw = STANDARD.decode(&encrypt).unwrap();
    // A whole 32-byte block cut off: the new last block is not padding.
    let short = STANDARD.encode(&raw[..raw.len() - 32]);
    assert!(c.decrypt(&short).is_err());
    // Cut to 16 bytes short of a block.
    assert_eq!(
        c.decrypt(&STANDARD.encode(&raw[..raw.len() - 16])),
        Err(CryptError::BadLength)
    );
    // Cut mid-quantum, or its padding dropped.
    assert_eq!(
        c.decrypt(&encrypt[..encrypt.len() - 3]),
        Err(CryptError::BadBase64)
    );
    for bad in [
        "!!!!",
        "abc",
        "YWJj\n",
        " YWJjZA==",
        "YW-_",
        "YWJjZA=",
        "====",
        "中文",
    ] {
        assert_eq!(c.decrypt(bad), Err(CryptError::BadBase64), "{bad:?}");
    }
    let unpadded = encrypt.trim_end_matches('=');
    if unpadded.len() != encrypt.len() {
        assert_eq!(c.decrypt(unpadded), Err(CryptError::BadBase64));
    }
}

#[test]
fn bodies_that_are_not_one_xml_with_one_encrypt_are_bad_xml() {
    let c = crypt();
    let encrypt = c.encrypt(XML);
    let sig = c.signature(TS, NONCE, &encrypt);
    let e = &encrypt;
    for body in [
        String::new(),
        "not xml".into(),
        "<xml/>".into(),
        "<xml></xml>".into(),
        format!("<root><Encrypt>{e}</Encrypt></root>"),
        format!("<xml><Encrypt>{e}</Encrypt>"),
        format!("<xml><Encrypt>{e}</Encrypt></xml><xml/>"),
        format!("<xml><Encrypt>{e}</Encrypt></xml>trailing"),
        format!("<xml><Encrypt>{e}</Encrypt><Encrypt>{e}</Encrypt></xml>"),
        format!(
            "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><Encrypt>{e}</Encrypt></xml>"
        ),
        format!("<xml><Encrypt>{e}&x;</Encrypt></xml>"),
    ] {
        assert_eq!(
            c.open(body.as_bytes(), TS, NONCE, &sig),
            Err(CryptError::BadXml),
            "{body}"
        );
    }
    let not_utf8 = [b"<xml><Encrypt>".as_slice(), b"\xff", b"</Encrypt></xml>"].concat();
    assert_eq!(c.open(&not_utf8, TS, NONCE, &sig), Err(CryptError::BadXml));
}

#[test]
fn envelopes_in_other_shapes_open() {
    let c = crypt();
    let encrypt = c.encrypt(XML);
    let sig = c.signature(TS, NONCE, &encrypt);
    for body in [
        format!("<xml><Encrypt>{encrypt}</Encrypt></xml>"),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n<ToUserName><![CDATA[gh_1]]></ToUserName>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n<AgentID>1</AgentID>\n</xml>\n"
        ),
        // The envelope's AppId is outside the signature and not checked.
        format!(
            "<xml><AppId><![CDATA[wx_anyone]]></AppId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ),
        format!(
            "<!-- hi --><xml><Nested><Encrypt>x</Encrypt></Nested><Encrypt>{encrypt}</Encrypt></xml>"
        ),
    ] {
        assert_eq!(
            c.open(body.as_bytes(), TS, NONCE, &sig).as_deref(),
            Ok(XML),
            "{body}"
        );
    }
}

#[test]
fn seal_writes_the_component_envelope() {
    let c = crypt();
    let s = c.seal(XML, TS, NONCE);
    let encrypt = s
        .body
        .strip_prefix(&format!(
            "<xml><AppId><![CDATA[{APPID}]]></AppId><Encrypt><![CDATA["
        ))
        .and_then(|rest| rest.strip_suffix("]]></Encrypt></xml>"))
        .unwrap();
    assert_eq!(s.msg_signature, c.signature(TS, NONCE, encrypt));
    assert_ne!(
        c.seal(XML, TS, NONCE).body,
        s.body,
        "fresh random each time"
    );
}

#[test]
fn nothing_secret_in_debug_or_errors() {
    let c = crypt();
    let debug = format!("{c:?} {:?}", c.clone());
    assert!(debug.contains(APPID), "{debug}");
    for secret in [TOKEN, KEY, &KEY[..20]] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let errors = [
        CryptError::BadKey,
        CryptError::BadSignature,
        CryptError::BadBase64,
        CryptError::BadPadding,
        CryptError::BadLength,
        CryptError::WrongAppid,
        CryptError::BadXml,
        CryptError::NotUtf8,
    ];
    for e in &errors {
        let text = format!("{e} {e:?} {}", e.code());
        for secret in [TOKEN, KEY, "ticket@@@", APPID] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(e.is_config(), *e == CryptError::BadKey);
    }
    let codes: std::collections::BTreeSet<_> = errors.iter().map(CryptError::code).collect();
    assert_eq!(codes.len(), errors.len());
}
