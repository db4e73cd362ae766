//! Sealed tokens: a binary body plus a truncated HMAC-SHA256 tag, as unpadded base64url text.
//!
//! Tickets and refresh tokens are both "random secret + a few public fields the server must be able to
//! trust without a lookup" (a ticket's expiry, a refresh token's session and generation). The tag makes
//! those fields unforgeable and lets garbage be refused before any store round trip. Each use has its
//! own key, derived from the JWT secret with a domain label, so no key serves two purposes; the
//! previous secret's key still opens tokens during a key rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Tag length: 128 bits.
pub const TAG_LEN: usize = 16;

/// Seals and opens bodies of one fixed length under one purpose.
pub struct Sealer {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    body_len: usize,
}

fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

/// SHA-256 of a token's text: what stores keep instead of the token.
pub fn hash_text(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Sealer {
    /// A sealer for bodies of `body_len` bytes, keyed for `purpose` from the JWT secret(s).
    pub fn new(secret: &[u8], previous: Option<&[u8]>, purpose: &str, body_len: usize) -> Self {
        Self {
            current: derive_key(secret, purpose),
            previous: previous.map(|p| derive_key(p, purpose)),
            body_len,
        }
    }

    /// Length of a sealed text.
    pub fn text_len(&self) -> usize {
        ((self.body_len + TAG_LEN) * 4).div_ceil(3)
    }

    /// Body and tag as text. `body` must be `body_len` bytes.
    pub fn seal(&self, body: &[u8]) -> String {
        debug_assert_eq!(body.len(), self.body_len);
        let tag = mac(&self.current, body).finalize().into_bytes();
        let mut raw = Vec::with_capacity(body.len() + TAG_LEN);
        raw.extend_from_slice(body);
        raw.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The body of a genuine text (tag checked in constant time), or `None`.
    pub fn open(&self, text: &str) -> Option<Vec<u8>> {
        if text.len() != self.text_len() {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() != self.body_len + TAG_LEN {
            return None;
        }
        let tag = raw.split_off(self.body_len);
        let genuine = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|key| mac(key, &raw).verify_truncated_left(&tag).is_ok());
        genuine.then_some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_their_key_and_purpose() {
        let a = Sealer::new(&[1; 32], None, "one", 9);
        let text = a.seal(b"123456789");
        assert_eq!(text.len(), a.text_len());
        assert_eq!(a.open(&text).unwrap(), b"123456789");
        assert!(Sealer::new(&[1; 32], None, "two", 9).open(&text).is_none());
        assert!(Sealer::new(&[2; 32], None, "one", 9).open(&text).is_none());
        assert!(Sealer::new(&[2; 32], Some(&[1; 32]), "one", 9)
            .open(&text)
            .is_some());
        let mut tampered = text.into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert!(a.open(std::str::from_utf8(&tampered).unwrap()).is_none());
        assert!(a.open("").is_none());
    }
}
