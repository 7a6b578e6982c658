//! [`MsgCrypt`]: one token + EncodingAESKey + appid, and everything done
//! with them: `msg_signature`, the AES-256-CBC frame in both directions,
//! and sealing / opening whole envelopes. Owns the byte layout and its
//! checks; the XML around the ciphertext belongs to [`crate::envelope`].
//!
//! The layout, from WeChat's docs and official samples (WXBizMsgCrypt):
//! key = base64(EncodingAESKey + "="), IV = key[..16], plaintext =
//! `random(16) ‖ len(xml) as u32 big-endian ‖ xml ‖ appid`, PKCS#7-padded
//! to a multiple of **32** bytes (WeChat's block, not AES's 16), no MAC:
//! integrity comes only from `msg_signature`, which is why [`MsgCrypt::open`]
//! checks it before decrypting anything.

use std::fmt;

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use secrecy::zeroize::Zeroize;
use secrecy::{CloneableSecret, ExposeSecret, SecretBox, SecretString};
use subtle::ConstantTimeEq;

use crate::{CryptError, envelope};

/// WeChat's PKCS#7 block size (the pad is 1..=32 bytes).
const PAD_BLOCK: usize = 32;
/// AES's block size, what CBC chains over.
const AES_BLOCK: usize = 16;
/// The random prefix of every plaintext.
const RANDOM_LEN: usize = 16;
/// Random prefix + the 4-byte length.
const HEADER_LEN: usize = RANDOM_LEN + 4;
/// An EncodingAESKey is 43 base64 characters (256 bits + 2 spare bits).
const KEY_CHARS: usize = 43;

/// Base64 for the EncodingAESKey: standard alphabet, canonical padding,
/// but the 2 spare bits of the 43rd character may be set, because WeChat's
/// keys do not clear them (the official sample key
/// `abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG` ends in `G` = `000110`).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The AES key and the IV WeChat derives from it, kept together so the IV
/// needs no fallible slicing at use.
#[derive(Clone, Default)]
struct AesKey {
    key: [u8; 32],
    iv: [u8; 16],
}

impl Zeroize for AesKey {
    fn zeroize(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl CloneableSecret for AesKey {}

/// A token + EncodingAESKey + appid, ready to sign, encrypt, decrypt, seal
/// and open WeChat messages. Cheap to clone; `Debug` shows the appid only.
#[derive(Clone)]
pub struct MsgCrypt {
    /// The message verification token. It is the only secret input of
    /// `msg_signature`, so it is what makes a push unforgeable; in a
    /// `SecretString` so it never reaches a log and is zeroed on drop.
    token: SecretString,
    /// The decoded EncodingAESKey and its IV, in a `SecretBox` for the same
    /// reasons. Always 32 bytes: [`MsgCrypt::new`] refuses anything else.
    key: SecretBox<AesKey>,
    /// The appid every plaintext must end with (the component appid for
    /// Open Platform pushes). Not secret.
    appid: String,
}

/// A sealed message: the body WeChat POSTs and its `msg_signature` (the
/// URL parameter), for the timestamp and nonce it was sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `<xml><AppId><![CDATA[appid]]></AppId><Encrypt><![CDATA[…]]></Encrypt></xml>`.
    pub body: String,
    /// The `msg_signature` query parameter that goes with `body`.
    pub msg_signature: String,
}

impl MsgCrypt {
    /// token: the message verification token; encoding_aes_key: 43 chars;
    /// appid: the component appid (or app appid).
    ///
    /// [`CryptError::BadKey`] unless `encoding_aes_key` is exactly 43
    /// characters of standard base64. The token is not checked here (an
    /// empty one would make every signature forgeable: the config layer
    /// must refuse it).
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<Self, CryptError> {
        if encoding_aes_key.len() != KEY_CHARS {
            return Err(CryptError::BadKey);
        }
        let mut padded = String::with_capacity(KEY_CHARS + 1);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let decoded = KEY_BASE64.decode(padded.as_bytes());
        padded.zeroize();
        let mut bytes = decoded.map_err(|_| CryptError::BadKey)?;
        let parts = (bytes.len() == 32)
            .then(|| bytes.first_chunk::<32>().zip(bytes.first_chunk::<16>()))
            .flatten();
        let key = parts.map(|(key, iv)| {
            SecretBox::<AesKey>::init_with_mut(|k| {
                k.key = *key;
                k.iv = *iv;
            })
        });
        bytes.zeroize();
        let key = key.ok_or(CryptError::BadKey)?;
        Ok(Self {
            token: SecretString::from(token),
            key,
            appid: appid.to_owned(),
        })
    }

    /// The appid this instance encrypts for and accepts.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// hex sha1 of the sorted four strings: `msg_signature` =
    /// `sha1(concat(sort([token, timestamp, nonce, encrypt])))`, lowercase
    /// hex. Sorted by bytes, as wechatpy does (Tencent's Java sample sorts
    /// UTF-16 units; the two agree on everything WeChat sends).
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.expose_secret(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut sha1 = sha1_smol::Sha1::new();
        for part in parts {
            sha1.update(part.as_bytes());
        }
        sha1.digest().to_string()
    }

    /// base64 ciphertext of `xml` with fresh random 16 bytes.
    pub fn encrypt(&self, xml: &str) -> String {
        self.encrypt_with_random(xml, rand::random())
    }

    /// [`MsgCrypt::encrypt`] with the 16 leading bytes given, for published
    /// test vectors. Never reuse a `random` in production: with WeChat's
    /// fixed IV it is what keeps two encryptions of one XML apart.
    ///
    /// The length field is 32 bits: an `xml` of 4 GiB or more gets
    /// `u32::MAX` there, so the result fails closed (decrypt refuses it).
    pub fn encrypt_with_random(&self, xml: &str, random: [u8; 16]) -> String {
        let mut buf = self.frame(xml.as_bytes(), random);
        self.cbc_encrypt(&mut buf);
        let encrypt = STANDARD.encode(&buf);
        buf.zeroize();
        encrypt
    }

    /// the XML inside, after checking padding, length and appid.
    ///
    /// Checks, in order: standard base64 ([`CryptError::BadBase64`]); a
    /// non-empty multiple of 32 bytes ([`CryptError::BadLength`]); PKCS#7
    /// padding of 1..=32 bytes, all equal to the pad length
    /// ([`CryptError::BadPadding`]); the length field fits
    /// ([`CryptError::BadLength`]); the trailing appid, compared in
    /// constant time ([`CryptError::WrongAppid`]); UTF-8
    /// ([`CryptError::NotUtf8`]).
    ///
    /// CBC without a MAC is malleable and the distinct errors would be a
    /// padding oracle: decrypt only what a verified `msg_signature` covers,
    /// which is what [`MsgCrypt::open`] does.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CryptError> {
        let mut buf = STANDARD
            .decode(encrypt_b64.as_bytes())
            .map_err(|_| CryptError::BadBase64)?;
        let xml = self.unframe(&mut buf);
        buf.zeroize();
        xml
    }

    /// What WeChat POSTs: `<xml><AppId><![CDATA[appid]]></AppId><Encrypt><![CDATA[...]]></Encrypt></xml>`
    /// and its msg_signature.
    pub fn seal(&self, xml: &str, timestamp: &str, nonce: &str) -> Sealed {
        let encrypt = self.encrypt(xml);
        Sealed {
            msg_signature: self.signature(timestamp, nonce, &encrypt),
            body: envelope::component_body(&self.appid, &encrypt),
        }
    }

    /// Verifies msg_signature (constant time) over the body's `<Encrypt>`,
    /// decrypts, checks appid; returns the inner XML.
    ///
    /// The body must be one `<xml>` element with one `Encrypt` and no
    /// DOCTYPE ([`CryptError::BadXml`]); its other fields (`AppId`,
    /// `ToUserName`) are ignored, since the signature does not cover them.
    /// Timestamp freshness and body size are the caller's to check.
    pub fn open(
        &self,
        body: &[u8],
        timestamp: &str,
        nonce: &str,
        msg_signature: &str,
    ) -> Result<String, CryptError> {
        let encrypt = envelope::encrypt_of(body)?;
        let expected = self.signature(timestamp, nonce, &encrypt);
        if !bool::from(expected.as_bytes().ct_eq(msg_signature.as_bytes())) {
            return Err(CryptError::BadSignature);
        }
        self.decrypt(&encrypt)
    }

    /// `random ‖ len ‖ xml ‖ appid ‖ pad`, the pad 1..=32 bytes of its length.
    fn frame(&self, xml: &[u8], random: [u8; 16]) -> Vec<u8> {
        let appid = self.appid.as_bytes();
        let unpadded = HEADER_LEN + xml.len() + appid.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&u32::try_from(xml.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(xml);
        buf.extend_from_slice(appid);
        // pad is 1..=32, so it fits a byte.
        buf.resize(unpadded + pad, pad as u8);
        buf
    }

    /// Decrypts `buf` in place and returns the XML of the frame in it.
    fn unframe(&self, buf: &mut [u8]) -> Result<String, CryptError> {
        if buf.is_empty() || !buf.len().is_multiple_of(PAD_BLOCK) {
            return Err(CryptError::BadLength);
        }
        self.cbc_decrypt(buf);
        let content = buf
            .get(..unpadded_len(buf)?)
            .ok_or(CryptError::BadPadding)?;
        let (header, rest) = content
            .split_at_checked(HEADER_LEN)
            .ok_or(CryptError::BadLength)?;
        let (_random, len) = header
            .split_first_chunk::<RANDOM_LEN>()
            .ok_or(CryptError::BadLength)?;
        let len = <[u8; 4]>::try_from(len).map_err(|_| CryptError::BadLength)?;
        let xml_len =
            usize::try_from(u32::from_be_bytes(len)).map_err(|_| CryptError::BadLength)?;
        let (xml, appid) = rest
            .split_at_checked(xml_len)
            .ok_or(CryptError::BadLength)?;
        if !bool::from(appid.ct_eq(self.appid.as_bytes())) {
            return Err(CryptError::WrongAppid);
        }
        std::str::from_utf8(xml)
            .map(str::to_owned)
            .map_err(|_| CryptError::NotUtf8)
    }

    fn cbc_encrypt(&self, buf: &mut [u8]) {
        let key = self.key.expose_secret();
        let mut cipher = cbc::Encryptor::<Aes256>::new((&key.key).into(), (&key.iv).into());
        for block in buf.chunks_exact_mut(AES_BLOCK) {
            cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
    }

    fn cbc_decrypt(&self, buf: &mut [u8]) {
        let key = self.key.expose_secret();
        let mut cipher = cbc::Decryptor::<Aes256>::new((&key.key).into(), (&key.iv).into());
        for block in buf.chunks_exact_mut(AES_BLOCK) {
            cipher.decrypt_block_mut(GenericArray::from_mut_slice(block));
        }
    }
}

/// `buf`'s length without its PKCS#7 padding: the last byte `n` must be
/// 1..=32 and the last `n` bytes must all be `n`. The bytes are compared
/// without an early exit.
fn unpadded_len(buf: &[u8]) -> Result<usize, CryptError> {
    let pad = *buf.last().ok_or(CryptError::BadPadding)?;
    let n = usize::from(pad);
    if n == 0 || n > PAD_BLOCK || n > buf.len() {
        return Err(CryptError::BadPadding);
    }
    let start = buf.len() - n;
    let tail = buf.get(start..).ok_or(CryptError::BadPadding)?;
    if tail.iter().fold(0u8, |diff, &b| diff | (b ^ pad)) != 0 {
        return Err(CryptError::BadPadding);
    }
    Ok(start)
}

impl fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("appid", &self.appid)
            .field("token", &"<redacted>")
            .field("encoding_aes_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests;
