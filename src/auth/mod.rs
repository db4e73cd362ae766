//! Credentials: password hashing, access tokens (JWT) and WebSocket tickets.

pub mod jwt;
pub mod password;
pub mod refresh;
pub mod sealed;
pub mod ticket;

pub use jwt::{Claims, IssuedToken, TokenError, TokenKeys};
pub use password::PasswordHasher;
pub use refresh::RefreshCodec;
pub use ticket::{MintedTicket, TicketCodec};

use rand::TryRngCore;

/// `N` bytes from the operating system's CSPRNG (getrandom). A failing OS generator leaves no safe
/// way to mint secrets, so it aborts the request's task rather than falling back to anything weaker.
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}
