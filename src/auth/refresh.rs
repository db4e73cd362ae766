//! Refresh tokens: `version | session id | generation | 256 random bits`, sealed with a MAC.
//!
//! The store keeps one record per session (its current generation and the hash of the current
//! token), not one per token ever issued: storage stays proportional to sessions however often they
//! rotate. Reuse is still detected: a token whose MAC is genuine but whose generation is older than
//! the session's was issued by us and already rotated away, so it is a replay.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::sealed::{hash_text, Sealer};

const VERSION: u8 = 1;
const SID_LEN: usize = 16;
const RANDOM_LEN: usize = 32;
const BODY_LEN: usize = 1 + SID_LEN + 8 + RANDOM_LEN;

/// A new refresh token.
pub struct MintedRefresh {
    /// The text, for the client only. Secret.
    pub text: String,
    /// What the store keeps.
    pub hash: [u8; 32],
}

/// A refresh token whose MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRefresh {
    /// Its session.
    pub sid: String,
    /// Its position in the session's rotation chain.
    pub generation: u64,
    /// Hash of the text.
    pub hash: [u8; 32],
}

/// Mints and opens refresh tokens.
pub struct RefreshCodec {
    sealer: Sealer,
}

/// A new random session id (128 bits, base64url).
pub fn new_session_id() -> String {
    URL_SAFE_NO_PAD.encode(super::os_random::<SID_LEN>())
}

impl RefreshCodec {
    /// Keys the MAC from the JWT secrets.
    pub fn new(secret: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            sealer: Sealer::new(secret, previous, "wsgate refresh-token mac v1", BODY_LEN),
        }
    }

    /// Mints generation `generation` of session `sid` (an id from `new_session_id`).
    pub fn mint(&self, sid: &str, generation: u64) -> MintedRefresh {
        let mut body = [0u8; BODY_LEN];
        body[0] = VERSION;
        let sid_bytes = URL_SAFE_NO_PAD.decode(sid).unwrap_or_default();
        let n = sid_bytes.len().min(SID_LEN);
        body[1..1 + n].copy_from_slice(&sid_bytes[..n]);
        body[1 + SID_LEN..1 + SID_LEN + 8].copy_from_slice(&generation.to_be_bytes());
        body[1 + SID_LEN + 8..].copy_from_slice(&super::os_random::<RANDOM_LEN>());
        let text = self.sealer.seal(&body);
        MintedRefresh {
            hash: hash_text(&text),
            text,
        }
    }

    /// Opens a genuine token; `None` for anything we did not issue.
    pub fn open(&self, text: &str) -> Option<OpenedRefresh> {
        let body = self.sealer.open(text)?;
        if body[0] != VERSION {
            return None;
        }
        Some(OpenedRefresh {
            sid: URL_SAFE_NO_PAD.encode(&body[1..1 + SID_LEN]),
            generation: u64::from_be_bytes(body[1 + SID_LEN..1 + SID_LEN + 8].try_into().ok()?),
            hash: hash_text(text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_session_and_generation_and_are_unique() {
        let codec = RefreshCodec::new(&[3; 32], None);
        let sid = new_session_id();
        let a = codec.mint(&sid, 7);
        let b = codec.mint(&sid, 7);
        assert_ne!(a.text, b.text);
        let opened = codec.open(&a.text).unwrap();
        assert_eq!((opened.sid.as_str(), opened.generation), (sid.as_str(), 7));
        assert_eq!(opened.hash, a.hash);
        assert!(codec.open("garbage").is_none());
        assert!(RefreshCodec::new(&[4; 32], None).open(&a.text).is_none());
    }
}
