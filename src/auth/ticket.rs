//! WebSocket tickets: 256 random bits plus a MAC-protected expiry, in URL-safe text; stored only as a hash.
//!
//! Layout before base64url (no padding): `version(1) | random(32) | expires_at_ms(8, big-endian) |
//! tag(16)`, 57 bytes, 76 characters. The tag is HMAC-SHA256 over the first 41 bytes with a key
//! derived from the JWT secret. Carrying the expiry inside the ticket lets the gateway tell an expired
//! ticket from an unknown one *without* the store, so the answer does not depend on whether garbage
//! collection has already removed the record; the MAC stops anyone from forging a later expiry, and
//! lets garbage be refused before any store round trip.

use super::sealed::{hash_text, Sealer};
use crate::store::{TicketHash, UnixMillis};

const VERSION: u8 = 1;
const RANDOM_LEN: usize = 32;
const BODY_LEN: usize = 1 + RANDOM_LEN + 8;
/// Length of a ticket's text.
pub const TICKET_TEXT_LEN: usize = ((BODY_LEN + super::sealed::TAG_LEN) * 4).div_ceil(3);

/// A new ticket: the text goes to the client once, the hash to the store.
pub struct MintedTicket {
    /// The ticket text. Secret: never log it.
    pub text: String,
    /// What the store keeps.
    pub hash: TicketHash,
    /// Expiry, Unix milliseconds.
    pub expires_at: UnixMillis,
}

/// A ticket whose MAC checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedTicket {
    /// What the store keeps.
    pub hash: TicketHash,
    /// Expiry, Unix milliseconds, as minted.
    pub expires_at: UnixMillis,
}

/// Mints and verifies ticket texts.
pub struct TicketCodec {
    sealer: Sealer,
}

/// The stored form of a ticket text.
pub fn hash_ticket(text: &str) -> TicketHash {
    hash_text(text)
}

impl TicketCodec {
    /// Keys the ticket MAC from the JWT secrets (domain-separated, never the JWT key itself).
    pub fn new(secret: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            sealer: Sealer::new(secret, previous, "wsgate ws-ticket mac v1", BODY_LEN),
        }
    }

    /// Mints a ticket that expires at `expires_at`.
    pub fn mint(&self, expires_at: UnixMillis) -> MintedTicket {
        let mut body = [0u8; BODY_LEN];
        body[0] = VERSION;
        body[1..1 + RANDOM_LEN].copy_from_slice(&super::os_random::<RANDOM_LEN>());
        body[1 + RANDOM_LEN..].copy_from_slice(&expires_at.to_be_bytes());
        let text = self.sealer.seal(&body);
        MintedTicket {
            hash: hash_ticket(&text),
            text,
            expires_at,
        }
    }

    /// Checks the text's shape and MAC. `None` means "not a ticket of ours" (`ticket_invalid`).
    pub fn verify(&self, text: &str) -> Option<VerifiedTicket> {
        let body = self.sealer.open(text)?;
        if body[0] != VERSION {
            return None;
        }
        let expires_at = i64::from_be_bytes(body[1 + RANDOM_LEN..].try_into().ok()?);
        Some(VerifiedTicket {
            hash: hash_ticket(text),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tickets_verify_and_are_url_safe_and_unique() {
        let codec = TicketCodec::new(&[1u8; 32], None);
        let a = codec.mint(1_000);
        let b = codec.mint(1_000);
        assert_ne!(a.text, b.text);
        assert_eq!(a.text.len(), TICKET_TEXT_LEN);
        assert!(a
            .text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let verified = codec.verify(&a.text).unwrap();
        assert_eq!(verified.expires_at, 1_000);
        assert_eq!(verified.hash, a.hash);
    }

    #[test]
    fn tampered_foreign_or_malformed_texts_are_refused() {
        let codec = TicketCodec::new(&[1u8; 32], None);
        let ticket = codec.mint(1_000).text;
        // Flip one character in the random part and in the expiry part.
        for pos in [5, 50] {
            let mut bytes = ticket.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
            assert!(codec.verify(std::str::from_utf8(&bytes).unwrap()).is_none());
        }
        let other = TicketCodec::new(&[2u8; 32], None);
        assert!(other.verify(&ticket).is_none());
        assert!(codec.verify("").is_none());
        assert!(codec.verify(&"!".repeat(TICKET_TEXT_LEN)).is_none());
        assert!(codec.verify("eyJhbGciOiJIUzI1NiJ9.e30.sig").is_none());
    }

    #[test]
    fn previous_key_still_verifies() {
        let old = TicketCodec::new(&[1u8; 32], None);
        let ticket = old.mint(5).text;
        let rotated = TicketCodec::new(&[2u8; 32], Some(&[1u8; 32]));
        assert!(rotated.verify(&ticket).is_some());
    }
}
