//! wechatpy 1.8.18 as an independent implementation: what we seal it opens,
//! what it encrypts we decrypt (byte-identical when given the same random),
//! the signatures agree, and where wechatpy is lenient we are strict.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use wxtoken_msgcrypt::{CryptError, MsgCrypt};

use crate::python::wechatpy;

/// One token + key + appid, as both sides are built from it.
struct Config {
    token: String,
    key: String,
    appid: String,
}

impl Config {
    fn ours(&self) -> MsgCrypt {
        MsgCrypt::new(&self.token, &self.key, &self.appid).unwrap()
    }
}

const KEY_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The official sample, a WeCom-like corp id, an empty appid, and random
/// ones (keys of 43 random characters, so the spare bits are often set).
fn configs(rng: &mut StdRng) -> Vec<Config> {
    let mut out = vec![
        Config {
            token: "pamtest".into(),
            key: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into(),
            appid: "wxb11529c136998cb6".into(),
        },
        Config {
            token: "QDG6eK".into(),
            key: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into(),
            appid: "ww1436e0e65a779aee".into(),
        },
        Config {
            token: "t".into(),
            key: "A".repeat(43),
            appid: String::new(),
        },
    ];
    for appid_len in [18, 1, 31, 32, 33] {
        let pick = |rng: &mut StdRng, n: usize, from: &[u8]| -> String {
            (0..n)
                .map(|_| from[rng.random_range(0..from.len())] as char)
                .collect()
        };
        out.push(Config {
            token: pick(rng, 32, &KEY_CHARS[..62]),
            key: pick(rng, 43, KEY_CHARS),
            appid: pick(rng, appid_len, &KEY_CHARS[..62]),
        });
    }
    out
}

/// A string of exactly `len` UTF-8 bytes mixing ASCII, XML
/// metacharacters, `]]>`, newlines and 2-, 3- and 4-byte characters.
fn text(rng: &mut StdRng, len: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        " ",
        "\n",
        "\t",
        "<",
        ">",
        "&",
        "\"",
        "]]>",
        "<![CDATA[",
        "é",
        "中",
        "文",
        "微信",
        "😀",
        "\u{1F600}\u{200D}",
        "\u{0}",
    ];
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let piece = PIECES[rng.random_range(0..PIECES.len())];
        if s.len() + piece.len() <= len {
            s.push_str(piece);
        } else {
            s.push('x');
        }
    }
    s
}

/// 0..=100 byte by byte (every pad length 1..=32 for every appid length
/// above, the 31/32/33 boundaries among them), then up to 1000 in steps.
fn lengths() -> Vec<usize> {
    (0..=100)
        .chain((101..1000).step_by(37))
        .chain([1000])
        .collect()
}

#[test]
fn ours_seal_wechatpy_decrypts() {
    let mut rng = StdRng::seed_from_u64(0x5ea1);
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for (i, cfg) in configs(&mut rng).iter().enumerate() {
        let ours = cfg.ours();
        for len in lengths() {
            let xml = text(&mut rng, len);
            let (timestamp, nonce) = (format!("{}", 1_700_000_000 + len), format!("n{i}x{len}"));
            let sealed = ours.seal(&xml, &timestamp, &nonce);
            requests.push(json!({
                "op": "decrypt_message", "token": cfg.token, "key": cfg.key, "appid": cfg.appid,
                "body": sealed.body, "signature": sealed.msg_signature,
                "timestamp": timestamp, "nonce": nonce,
            }));
            expected.push(xml);
        }
    }
    let replies = wechatpy(&requests);
    for ((reply, xml), req) in replies.iter().zip(&expected).zip(&requests) {
        assert_eq!(
            reply["xml"].as_str(),
            Some(xml.as_str()),
            "{reply} for {req}"
        );
    }
    assert!(replies.len() > 1000, "{} cases", replies.len());
}

#[test]
fn wechatpy_encrypts_ours_decrypts_and_matches() {
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    let mut requests = Vec::new();
    let mut cases = Vec::new();
    let configs = configs(&mut rng);
    for (i, cfg) in configs.iter().enumerate() {
        for (j, len) in lengths().into_iter().enumerate() {
            let xml = text(&mut rng, len);
            // Half with a random we choose (so the ciphertexts must be
            // identical), half with wechatpy's own random_string(16).
            let random = (j % 2 == 0).then(|| {
                let mut r = [0u8; 16];
                rng.fill_bytes(&mut r);
                r
            });
            let (timestamp, nonce) = (format!("{}", 1_600_000_000 + j), format!("{i}-{j}"));
            requests.push(json!({
                "op": "encrypt_message", "token": cfg.token, "key": cfg.key, "appid": cfg.appid,
                "xml": xml, "nonce": nonce, "timestamp": timestamp,
                "random": random.map(|r| r.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            }));
            cases.push((i, xml, random, timestamp, nonce));
        }
    }
    let replies = wechatpy(&requests);
    for (reply, (i, xml, random, timestamp, nonce)) in replies.iter().zip(&cases) {
        let ours = configs[*i].ours();
        let encrypt = reply["encrypt"].as_str().unwrap();
        let signature = reply["signature"].as_str().unwrap();
        assert_eq!(
            ours.decrypt(encrypt).as_deref(),
            Ok(xml.as_str()),
            "{reply}"
        );
        assert_eq!(ours.signature(timestamp, nonce, encrypt), signature);
        let body = reply["body"].as_str().unwrap();
        assert_eq!(
            ours.open(body.as_bytes(), timestamp, nonce, signature)
                .as_deref(),
            Ok(xml.as_str())
        );
        if let Some(random) = random {
            assert_eq!(ours.encrypt_with_random(xml, *random), encrypt);
        }
    }
}

#[test]
fn signatures_agree_on_any_strings() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut requests = Vec::new();
    let mut inputs = Vec::new();
    for n in 0..300 {
        let parts: Vec<String> = (0..4).map(|_| text(&mut rng, n % 40)).collect();
        requests.push(json!({
            "op": "signature", "token": parts[0], "timestamp": parts[1],
            "nonce": parts[2], "encrypt": parts[3],
        }));
        inputs.push(parts);
    }
    for (reply, p) in wechatpy(&requests).iter().zip(&inputs) {
        let ours = MsgCrypt::new(&p[0], &"A".repeat(43), "wx").unwrap();
        assert_eq!(
            reply["signature"].as_str(),
            Some(ours.signature(&p[1], &p[2], &p[3]).as_str())
        );
    }
}

/// Frames that wechatpy's PrpCrypto.decrypt accepts and we refuse: it reads
/// only the last byte of the padding, slices off up to 255 bytes, and its
/// base64 skips characters outside the alphabet.
#[test]
fn where_wechatpy_is_lenient_we_refuse() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let appid = "wxb11529c136998cb6";
    let ours = MsgCrypt::new("pamtest", key, appid).unwrap();
    let frame = |xml: &[u8], pad: &[u8]| -> String {
        let mut p = vec![b'R'; 16];
        p.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        p.extend_from_slice(xml);
        p.extend_from_slice(appid.as_bytes());
        p.extend_from_slice(pad);
        p.iter().map(|b| format!("{b:02x}")).collect()
    };
    // Every frame is 16 + 4 + xml + 18 + pad = 64 or 96 bytes, except the
    // 16-byte-block one.
    let mut uneven = vec![7u8; 12];
    uneven.push(13);
    let plains = [
        (frame(b"<xml>hi</xml>", &uneven), CryptError::BadPadding),
        (
            frame(b"<x>0123456789abcdefgh</x>", &[33; 33]),
            CryptError::BadPadding,
        ),
        (frame(b"<x>hi</x>", &[49; 49]), CryptError::BadPadding),
        // 16-byte PKCS#7 (what a generic AES library would do): 80 bytes.
        (frame(&[b'a'; 30], &[12; 12]), CryptError::BadLength),
    ];
    let mut requests: Vec<Value> = plains
        .iter()
        .map(|(plain, _)| json!({"op": "raw_encrypt", "key": key, "plain": plain}))
        .collect();
    let encrypted: Vec<String> = wechatpy(&requests)
        .iter()
        .map(|r| r["encrypt"].as_str().unwrap().to_owned())
        .collect();
    let mut refusals: Vec<(String, CryptError)> = encrypted
        .iter()
        .zip(&plains)
        .map(|(e, (_, err))| (e.clone(), err.clone()))
        .collect();
    let valid = ours.encrypt("<xml>ok</xml>");
    refusals.push((
        format!("{}!! \n{}", &valid[..10], &valid[10..]),
        CryptError::BadBase64,
    ));
    requests = refusals
        .iter()
        .map(|(e, _)| json!({"op": "decrypt", "key": key, "appid": appid, "encrypt": e}))
        .collect();
    for (reply, (encrypt, err)) in wechatpy(&requests).iter().zip(&refusals) {
        assert!(
            reply["xml"].is_string(),
            "wechatpy accepted it before: {reply}"
        );
        assert_eq!(ours.decrypt(encrypt).as_ref(), Err(err), "{reply}");
    }
}
