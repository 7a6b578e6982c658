//! The JS-SDK signature (`wx.config`, and WeCom's `wx.agentConfig`): what a
//! page needs to use JS-SDK APIs, computed from a ticket that never has to
//! leave the server.
//!
//! `signature = sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U")` in
//! lowercase hex, where U is the page URL without its `#fragment` (WeChat's
//! JS-SDK doc, 附录1). Pure functions; the caller supplies the ticket, the
//! clock and, if it wants, the nonce.

use rand::Rng;

/// The four fields of a JS-SDK signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub nonce_str: String,
    pub timestamp: u64,
    pub signature: String,
}

/// `url` as WeChat signs it: everything before the first `#`.
pub fn signed_url(url: &str) -> &str {
    url.split_once('#').map_or(url, |(before, _)| before)
}

/// The signature of `url` with `ticket`, `nonce_str` and `timestamp` (unix s).
pub fn signature(ticket: &str, nonce_str: &str, timestamp: u64, url: &str) -> String {
    let plain = format!(
        "jsapi_ticket={ticket}&noncestr={nonce_str}&timestamp={timestamp}&url={}",
        signed_url(url)
    );
    sha1_smol::Sha1::from(plain).hexdigest()
}

/// Signs `url` with a fresh 16-character nonce at `timestamp`.
pub fn sign(ticket: &str, timestamp: u64, url: &str) -> Signed {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let nonce_str: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    let signature = signature(ticket, &nonce_str, timestamp, url);
    Signed {
        nonce_str,
        timestamp,
        signature,
    }
}

/// Whether `url` is one a JS-SDK page could be signed for: an absolute
/// http(s) URL of at most 2048 bytes without control characters.
pub fn plausible_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WeChat's worked example (JS-SDK doc 附录1; also wechatpy's
    /// tests/test_client.py and WeCom's document/path/96909).
    #[test]
    fn wechat_published_example() {
        let ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        assert_eq!(
            signature(
                ticket,
                "Wm3WZYTPz0wzccnW",
                1_414_587_457,
                "http://mp.weixin.qq.com?params=value"
            ),
            "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
        );
        // The doc's older revision signs the bare host.
        assert_eq!(
            signature(
                ticket,
                "Wm3WZYTPz0wzccnW",
                1_414_587_457,
                "http://mp.weixin.qq.com"
            ),
            "f4d90daf4b3bca3078ab155816175ba34c443a7b"
        );
    }

    #[test]
    fn the_fragment_is_not_signed() {
        let t = "TICKET";
        assert_eq!(
            signature(t, "n", 1, "https://a.example/p?x=1#/route"),
            signature(t, "n", 1, "https://a.example/p?x=1")
        );
        let s = sign(t, 7, "https://a.example/");
        assert_eq!(s.nonce_str.len(), 16);
        assert_eq!(
            s.signature,
            signature(t, &s.nonce_str, 7, "https://a.example/")
        );
        assert!(plausible_url("https://a.example/x") && !plausible_url("javascript:x"));
    }
}
