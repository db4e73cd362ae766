//! Accounts: the username and password rules, registration, and login (a password check that
//! starts a session).

use crate::auth::password::PasswordError;
use crate::clock::now_millis;
use crate::sessions::{SessionError, TokenPair};
use crate::state::App;
use crate::store::{StoreError, UserRecord};

/// Why registration or login was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The username does not match `^[A-Za-z0-9_]{3,32}$`.
    #[error("invalid username")]
    InvalidUsername,
    /// The password breaks a rule; the message says which.
    #[error("{0}")]
    InvalidPassword(&'static str),
    /// Registration of an existing username (in any case).
    #[error("username taken")]
    UsernameTaken,
    /// Unknown user or wrong password (indistinguishable on purpose).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Hashing failed or is saturated.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The session could not be started.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `name` is a valid username: 3 to 32 ASCII letters, digits or underscores.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Password rules; `Err` holds the message. 72 bytes is bcrypt's input limit: longer passwords are
/// refused rather than silently truncated.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    if password.len() < 8 {
        Err("password must be at least 8 bytes")
    } else if password.len() > 72 {
        Err("password must be at most 72 bytes (bcrypt's limit)")
    } else if password.contains('\0') {
        Err("password must not contain NUL characters")
    } else {
        Ok(())
    }
}

/// Registers `username` with `password` (hashed off the async workers).
pub async fn register(app: &App, username: &str, password: String) -> Result<(), AccountError> {
    if !valid_username(username) {
        return Err(AccountError::InvalidUsername);
    }
    check_password(&password).map_err(AccountError::InvalidPassword)?;
    // Cheap pre-check so a taken name does not cost a bcrypt run; the insert stays authoritative.
    if app.store.find_user(username).await?.is_some() {
        return Err(AccountError::UsernameTaken);
    }
    let password_hash = app.passwords.hash(password).await?;
    app.store
        .create_user(UserRecord {
            username: username.to_owned(),
            password_hash,
            created_at: now_millis(),
        })
        .await
        .map_err(|err| match err {
            // Only a username can legitimately collide here.
            StoreError::Duplicate => AccountError::UsernameTaken,
            err => AccountError::Store(err),
        })?;
    tracing::info!(user = %username, "user registered");
    Ok(())
}

/// Checks the password and starts a session. An unknown user is verified against a dummy hash:
/// the same work, the same time, the same answer as a wrong password.
pub async fn login(app: &App, username: &str, password: String) -> Result<TokenPair, AccountError> {
    let user = if valid_username(username) && check_password(&password).is_ok() {
        app.store.find_user(username).await?
    } else {
        None
    };
    let (username, hash) = match user {
        Some(user) => (Some(user.username), Some(user.password_hash)),
        None => (None, None),
    };
    if !app.passwords.verify(password, hash).await? {
        return Err(AccountError::InvalidCredentials);
    }
    let username = username.ok_or(AccountError::InvalidCredentials)?;
    let tokens = crate::sessions::start(app, &username).await?;
    tracing::info!(user = %username, "login");
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rule() {
        for ok in ["abc", "a_b_9", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["ab", &"x".repeat(33), "a-b", "a b", "émile", ""] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn password_rule_counts_bytes() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"x".repeat(72)).is_ok());
        assert!(check_password(&"x".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; 25 are 75.
        assert!(check_password(&"€".repeat(24)).is_ok());
        assert!(check_password(&"€".repeat(25)).is_err());
        assert!(check_password("12345678\0").is_err());
    }
}
