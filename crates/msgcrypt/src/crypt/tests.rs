//! The frame's edge cases, built byte by byte with the private cipher, so
//! each check in `unframe` is hit on its own.

use super::*;
use proptest::strategy::Strategy as _;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wxb11529c136998cb6";

fn crypt() -> MsgCrypt {
    MsgCrypt::new("pamtest", KEY, APPID).unwrap()
}

/// Encrypts `plain` (a multiple of 16 bytes) as is, no framing or padding.
fn raw(c: &MsgCrypt, plain: &[u8]) -> String {
    assert_eq!(plain.len() % AES_BLOCK, 0);
    let mut buf = plain.to_vec();
    c.cbc_encrypt(&mut buf);
    STANDARD.encode(&buf)
}

/// `random ‖ len ‖ body` padded with `pad` copies of `pad_byte` (not
/// necessarily a valid pad).
fn plain(len_field: u32, body: &[u8], pad: usize, pad_byte: u8) -> Vec<u8> {
    let mut p = vec![7u8; RANDOM_LEN];
    p.extend_from_slice(&len_field.to_be_bytes());
    p.extend_from_slice(body);
    p.extend(std::iter::repeat_n(pad_byte, pad));
    p
}

/// Valid framing of `xml` followed by `tail` (normally the appid), padded.
fn framed(xml: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut body = xml.to_vec();
    body.extend_from_slice(tail);
    let unpadded = HEADER_LEN + body.len();
    let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
    plain(xml.len() as u32, &body, pad, pad as u8)
}

#[test]
fn frame_layout_is_random_length_xml_appid_pad() {
    let c = crypt();
    let f = c.frame(b"<xml/>", [1; 16]);
    // 16 + 4 + 6 + 18 = 44 → padded to 64 with 20 bytes of 20.
    assert_eq!(f.len(), 64);
    assert_eq!(&f[..16], &[1; 16]);
    assert_eq!(&f[16..20], &[0, 0, 0, 6]);
    assert_eq!(&f[20..26], b"<xml/>");
    assert_eq!(&f[26..44], APPID.as_bytes());
    assert!(f[44..].iter().all(|&b| b == 20));
}

#[test]
fn an_aligned_frame_gets_a_whole_block_of_32() {
    let c = crypt();
    // 16 + 4 + 26 + 18 = 64: already aligned, so 32 bytes of 32 follow.
    let f = c.frame(&[b'a'; 26], [0; 16]);
    assert_eq!(f.len(), 96);
    assert!(f[64..].iter().all(|&b| b == 32));
    assert_eq!(c.decrypt(&raw(&c, &f)).unwrap(), "a".repeat(26));
}

#[test]
fn handmade_valid_frame_decrypts() {
    let c = crypt();
    let p = framed("中文 ok".as_bytes(), APPID.as_bytes());
    assert_eq!(c.decrypt(&raw(&c, &p)).unwrap(), "中文 ok");
}

#[test]
fn pad_zero_and_pad_over_32_are_bad_padding() {
    let c = crypt();
    // 16 + 4 + 10 + 18 = 48: 16 bytes to fill to 64.
    let body = [b"0123456789".as_slice(), APPID.as_bytes()].concat();
    for pad_byte in [0u8, 33, 64, 255] {
        let p = plain(10, &body, 16, pad_byte);
        assert_eq!(
            c.decrypt(&raw(&c, &p)),
            Err(CryptError::BadPadding),
            "pad {pad_byte}"
        );
    }
    // A "pad" of 48 over a 64-byte message would reach into the frame.
    let p = plain(10, &body, 16, 48);
    assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::BadPadding));
}

#[test]
fn pad_bytes_must_all_equal_the_pad_length() {
    let c = crypt();
    let mut p = framed(b"<xml>hi</xml>", APPID.as_bytes());
    let n = p.len();
    let pad = p[n - 1];
    assert!(pad >= 2, "the test needs a pad of 2 or more, got {pad}");
    p[n - 2] ^= 1;
    assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::BadPadding));
}

#[test]
fn length_field_past_the_end_is_bad_length() {
    let c = crypt();
    for len_field in [100, 1_000_000, u32::MAX] {
        let body = [b"<xml/>".as_slice(), APPID.as_bytes()].concat();
        // 16 + 4 + 24 = 44 → 20 bytes of pad.
        let p = plain(len_field, &body, 20, 20);
        assert_eq!(
            c.decrypt(&raw(&c, &p)),
            Err(CryptError::BadLength),
            "len {len_field}"
        );
    }
}

#[test]
fn frame_shorter_than_its_header_is_bad_length() {
    let c = crypt();
    // 32 bytes of which 16 are pad: only 16 bytes left, no length field.
    let mut p = vec![9u8; 16];
    p.extend([16u8; 16]);
    assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::BadLength));
    // All pad: nothing left at all.
    assert_eq!(c.decrypt(&raw(&c, &[32u8; 32])), Err(CryptError::BadLength));
}

#[test]
fn ciphertext_not_in_32_byte_blocks_is_bad_length() {
    let c = crypt();
    assert_eq!(c.decrypt(""), Err(CryptError::BadLength));
    assert_eq!(
        c.decrypt(&STANDARD.encode([0u8; 16])),
        Err(CryptError::BadLength)
    );
    assert_eq!(
        c.decrypt(&STANDARD.encode([0u8; 48])),
        Err(CryptError::BadLength)
    );
    assert_eq!(
        c.decrypt(&STANDARD.encode([0u8; 31])),
        Err(CryptError::BadLength)
    );
}

#[test]
fn trailing_bytes_other_than_the_appid_are_wrong_appid() {
    let c = crypt();
    for tail in [
        b"wxb11529c136998cb7".as_slice(),
        b"wxb11529c136998cb",
        b"wxb11529c136998cb66",
        b"",
    ] {
        let p = framed(b"<xml/>", tail);
        assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::WrongAppid));
    }
    // A length field shorter than the XML leaves XML in front of the appid.
    let mut p = framed(b"<xml>abc</xml>", APPID.as_bytes());
    p[19] -= 3;
    assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::WrongAppid));
}

#[test]
fn xml_that_is_not_utf8_is_not_utf8() {
    let c = crypt();
    let p = framed(b"<xml>\xff\xfe</xml>", APPID.as_bytes());
    assert_eq!(c.decrypt(&raw(&c, &p)), Err(CryptError::NotUtf8));
}

#[test]
fn unpadded_len_edge_cases() {
    assert_eq!(unpadded_len(&[]), Err(CryptError::BadPadding));
    assert_eq!(unpadded_len(&[1]), Ok(0));
    assert_eq!(unpadded_len(&[2]), Err(CryptError::BadPadding));
    assert_eq!(unpadded_len(&[5, 2, 2]), Ok(1));
    assert_eq!(unpadded_len(&[5, 3, 2]), Err(CryptError::BadPadding));
    assert_eq!(unpadded_len(&[32; 32]), Ok(0));
    assert_eq!(unpadded_len(&[33; 40]), Err(CryptError::BadPadding));
}

proptest::proptest! {
    /// Any correctly padded plaintext, so every check after the padding
    /// runs on arbitrary bytes: never a panic, and Ok only for a frame
    /// whose length field and appid fit.
    #[test]
    fn unframe_never_panics_on_padded_garbage(
        mut body in (0usize..6).prop_flat_map(|n| proptest::collection::vec(proptest::prelude::any::<u8>(), n * 32 + 31)),
        pad in 1u8..=32,
        len_field in proptest::prelude::any::<Option<u32>>(),
    ) {
        let c = crypt();
        let keep = body.len() + 1 - usize::from(pad);
        body.truncate(keep);
        if let (Some(len), true) = (len_field, body.len() >= HEADER_LEN) {
            body[16..20].copy_from_slice(&len.to_be_bytes());
        }
        body.resize(keep + usize::from(pad), pad);
        let result = c.decrypt(&raw(&c, &body));
        if let Ok(xml) = result {
            proptest::prop_assert!(body[..keep].ends_with(APPID.as_bytes()));
            proptest::prop_assert_eq!(xml.len() + HEADER_LEN + APPID.len(), keep);
        }
    }
}
