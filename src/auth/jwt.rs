//! Access tokens: HS256 JWTs with pinned algorithm, issuer, audience and required claims, and key rotation.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `iss` and `aud` of every token wsgate issues and accepts.
pub const ISSUER: &str = "wsgate";

/// The claims of a wsgate access token. All are required: a token lacking one fails to deserialize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique token id: the handle for revoking this token.
    pub jti: String,
    /// Session id: the login (refresh-token family) this token descends from; revoking the session
    /// revokes every token that carries it.
    pub sid: String,
    /// Always `wsgate`.
    pub iss: String,
    /// Always `wsgate`.
    pub aud: String,
}

/// A signed token and its claims.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWT. Secret: never log it.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrong signature, wrong algorithm, issuer or audience, unknown key, missing claim.
    #[error("token invalid")]
    Invalid,
    /// Past `exp` plus the leeway.
    #[error("token expired")]
    Expired,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &[u8]) -> Self {
        // The kid names the key without revealing it: a truncated hash of a domain-separated secret.
        let digest = Sha256::new()
            .chain_update(b"wsgate kid v1\0")
            .chain_update(secret)
            .finalize();
        Self {
            kid: URL_SAFE_NO_PAD.encode(&digest[..9]),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// Signs and verifies access tokens. `current` signs; `previous` (during a rotation) only verifies.
pub struct TokenKeys {
    current: Key,
    previous: Option<Key>,
    ttl: Duration,
    leeway: Duration,
}

impl TokenKeys {
    /// Builds the key set. Secrets are raw bytes (at least 32, checked by the configuration).
    pub fn new(secret: &[u8], previous: Option<&[u8]>, ttl: Duration, leeway: Duration) -> Self {
        Self {
            current: Key::new(secret),
            previous: previous.map(Key::new),
            ttl,
            leeway,
        }
    }

    /// Token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Clock-skew leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Issues a token for `username` in session `sid`, valid from now for the configured lifetime.
    pub fn issue(&self, username: &str, sid: &str) -> IssuedToken {
        let now = crate::clock::unix_now();
        let claims = Claims {
            sub: username.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: URL_SAFE_NO_PAD.encode(super::os_random::<16>()),
            sid: sid.to_owned(),
            iss: ISSUER.to_owned(),
            aud: ISSUER.to_owned(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.current.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        IssuedToken { token, claims }
    }

    /// Verifies signature, algorithm, issuer, audience, expiry (with leeway) and the presence of every
    /// claim. Revocation is the caller's business (it needs the store).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let key = match header.kid.as_deref() {
            Some(kid) if kid == self.current.kid => &self.current,
            Some(kid) => match &self.previous {
                Some(previous) if previous.kid == kid => previous,
                _ => return Err(TokenError::Invalid),
            },
            None => return Err(TokenError::Invalid),
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?
            .claims;
        // A token "issued" in the future was not issued by us (or our clock jumped): refuse it.
        if claims.iat > crate::clock::unix_now() + self.leeway.as_secs() as i64
            || claims.jti.is_empty()
            || claims.sid.is_empty()
        {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> TokenKeys {
        TokenKeys::new(
            SECRET,
            None,
            Duration::from_secs(60),
            Duration::from_secs(0),
        )
    }

    fn sign(
        claims: serde_json::Value,
        alg: Algorithm,
        secret: &[u8],
        kid: Option<String>,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid;
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn good_claims() -> serde_json::Value {
        let now = crate::clock::unix_now();
        json!({"sub":"alice","iat":now,"exp":now+60,"jti":"j1","sid":"s1","iss":"wsgate","aud":"wsgate"})
    }

    #[test]
    fn issued_tokens_verify_and_carry_every_claim() {
        let keys = keys();
        let issued = keys.issue("alice", "s1");
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(claims.iss, "wsgate");
        assert_ne!(keys.issue("alice", "s1").claims.jti, claims.jti);
    }

    #[test]
    fn wrong_secret_alg_none_and_missing_claims_are_invalid() {
        let keys = keys();
        let kid = Some(keys.current.kid.clone());
        let other = sign(good_claims(), Algorithm::HS256, &[7u8; 32], kid.clone());
        assert_eq!(keys.verify(&other), Err(TokenError::Invalid));
        let hs512 = sign(good_claims(), Algorithm::HS512, SECRET, kid.clone());
        assert_eq!(keys.verify(&hs512), Err(TokenError::Invalid));
        // alg "none": header {"alg":"none"} and an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(good_claims().to_string())
        );
        assert_eq!(keys.verify(&none), Err(TokenError::Invalid));
        for claim in ["sub", "iat", "exp", "jti", "sid", "iss", "aud"] {
            let mut claims = good_claims();
            claims.as_object_mut().unwrap().remove(claim);
            let token = sign(claims, Algorithm::HS256, SECRET, kid.clone());
            assert_eq!(keys.verify(&token), Err(TokenError::Invalid), "{claim}");
        }
        for (claim, value) in [("iss", "other"), ("aud", "other")] {
            let mut claims = good_claims();
            claims[claim] = json!(value);
            let token = sign(claims, Algorithm::HS256, SECRET, kid.clone());
            assert_eq!(keys.verify(&token), Err(TokenError::Invalid), "{claim}");
        }
        let no_kid = sign(good_claims(), Algorithm::HS256, SECRET, None);
        assert_eq!(keys.verify(&no_kid), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let mut claims = good_claims();
        claims["exp"] = json!(crate::clock::unix_now() - 3);
        let strict = keys();
        let token = sign(
            claims,
            Algorithm::HS256,
            SECRET,
            Some(strict.current.kid.clone()),
        );
        assert_eq!(strict.verify(&token), Err(TokenError::Expired));
        let lenient = TokenKeys::new(
            SECRET,
            None,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        assert!(lenient.verify(&token).is_ok());
    }

    #[test]
    fn previous_secret_verifies_but_never_signs() {
        let old = keys();
        let old_token = old.issue("alice", "s1").token;
        let rotated = TokenKeys::new(
            &[9u8; 32],
            Some(SECRET),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        assert!(rotated.verify(&old_token).is_ok());
        let new_token = rotated.issue("alice", "s1").token;
        assert_eq!(old.verify(&new_token), Err(TokenError::Invalid));
        let dropped = TokenKeys::new(&[9u8; 32], None, Duration::from_secs(60), Duration::ZERO);
        assert_eq!(dropped.verify(&old_token), Err(TokenError::Invalid));
    }
}
