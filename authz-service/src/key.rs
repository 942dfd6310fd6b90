//! The HS256 signing key, read from a JSON Web Key Set (RFC 7517).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Minimum HS256 key length in bytes. RFC 7518, section 3.2, requires a key at least as long as
/// the SHA-256 output.
pub const MIN_SECRET_BYTES: usize = 32;

/// A symmetric HS256 key and its key ID (`kid`).
///
/// `Debug` prints the `kid` only, so the secret never reaches a log line through this type.
#[derive(Clone)]
pub struct Key {
    kid: String,
    secret: Vec<u8>,
}

impl Key {
    /// Parses a JWKS document that contains exactly one `oct` key for HS256.
    ///
    /// The expected form is `{"keys":[{"kty":"oct","alg":"HS256","kid":"...","k":"..."}]}`,
    /// which Envoy's `jwt_authn` filter also accepts as a local JWKS. `alg` may be absent but
    /// must be `HS256` when present. `kid` must be a non-empty string. `k` is the secret in
    /// base64url without padding and must decode to at least 32 bytes.
    ///
    /// Returns an error message naming the member that is missing or invalid.
    pub fn from_jwks_json(text: &str) -> Result<Key, String> {
        let document: Value =
            serde_json::from_str(text).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;

        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let jwk = match keys.as_slice() {
            [jwk] => jwk,
            _ => {
                return Err(format!(
                    "JWKS must contain exactly one key, found {}",
                    keys.len()
                ))
            }
        };

        let kty = jwk.get("kty").and_then(Value::as_str);
        if kty != Some("oct") {
            return Err("JWKS key must have \"kty\":\"oct\"".to_string());
        }

        match jwk.get("alg") {
            None => {}
            Some(alg) if alg.as_str() == Some("HS256") => {}
            Some(_) => return Err("JWKS key \"alg\" must be \"HS256\"".to_string()),
        }

        let kid = match jwk.get("kid").and_then(Value::as_str) {
            Some(kid) if !kid.is_empty() => kid.to_string(),
            _ => return Err("JWKS key has no \"kid\" string".to_string()),
        };

        let encoded_secret = jwk
            .get("k")
            .and_then(Value::as_str)
            .ok_or("JWKS key has no \"k\" string")?;
        let secret = URL_SAFE_NO_PAD
            .decode(encoded_secret)
            .map_err(|e| format!("JWKS key \"k\" is not base64url without padding: {e}"))?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "JWKS key \"k\" decodes to {} bytes, but HS256 needs at least {MIN_SECRET_BYTES}",
                secret.len()
            ));
        }

        Ok(Key { kid, secret })
    }

    /// Returns the key ID that signed tokens carry in their `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes of 0x01, base64url-encoded.
    const SECRET_32: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

    fn jwks_with(jwk: &str) -> String {
        format!("{{\"keys\":[{jwk}]}}")
    }

    #[test]
    fn jwks_valid_key_parses() {
        let text = jwks_with(&format!(
            r#"{{"kty":"oct","alg":"HS256","kid":"demo","k":"{SECRET_32}"}}"#
        ));

        let key = Key::from_jwks_json(&text).expect("valid JWKS");

        assert_eq!(key.kid(), "demo");
        assert_eq!(key.secret(), &[1u8; 32]);
    }

    #[test]
    fn jwks_without_alg_parses() {
        let text = jwks_with(&format!(
            r#"{{"kty":"oct","kid":"demo","k":"{SECRET_32}"}}"#
        ));

        assert!(Key::from_jwks_json(&text).is_ok());
    }

    #[test]
    fn jwks_debug_hides_secret() {
        let text = jwks_with(&format!(
            r#"{{"kty":"oct","kid":"demo","k":"{SECRET_32}"}}"#
        ));
        let key = Key::from_jwks_json(&text).unwrap();

        let printed = format!("{key:?}");

        assert!(printed.contains("demo"));
        assert!(!printed.contains(SECRET_32));
        assert!(!printed.contains("[1, 1"));
    }

    #[test]
    fn jwks_invalid_documents_rejected() {
        let short_secret = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ"; // 31 bytes
        let two_keys = format!(
            r#"{{"keys":[{{"kty":"oct","kid":"a","k":"{SECRET_32}"}},{{"kty":"oct","kid":"b","k":"{SECRET_32}"}}]}}"#
        );
        let cases: Vec<(String, &str)> = vec![
            ("not json".to_string(), "not valid JSON"),
            ("{}".to_string(), "no \"keys\" array"),
            (r#"{"keys":{}}"#.to_string(), "no \"keys\" array"),
            (r#"{"keys":[]}"#.to_string(), "exactly one key, found 0"),
            (two_keys, "exactly one key, found 2"),
            (
                jwks_with(&format!(
                    r#"{{"kty":"RSA","kid":"demo","k":"{SECRET_32}"}}"#
                )),
                "\"kty\":\"oct\"",
            ),
            (
                jwks_with(&format!(r#"{{"kid":"demo","k":"{SECRET_32}"}}"#)),
                "\"kty\":\"oct\"",
            ),
            (
                jwks_with(&format!(
                    r#"{{"kty":"oct","alg":"HS512","kid":"demo","k":"{SECRET_32}"}}"#
                )),
                "\"alg\" must be \"HS256\"",
            ),
            (
                jwks_with(&format!(r#"{{"kty":"oct","k":"{SECRET_32}"}}"#)),
                "no \"kid\" string",
            ),
            (
                jwks_with(&format!(r#"{{"kty":"oct","kid":"","k":"{SECRET_32}"}}"#)),
                "no \"kid\" string",
            ),
            (
                jwks_with(r#"{"kty":"oct","kid":"demo"}"#),
                "no \"k\" string",
            ),
            (
                jwks_with(r#"{"kty":"oct","kid":"demo","k":"not+base64url/"}"#),
                "not base64url",
            ),
            (
                jwks_with(&format!(
                    r#"{{"kty":"oct","kid":"demo","k":"{SECRET_32}="}}"#
                )),
                "not base64url",
            ),
            (
                jwks_with(&format!(
                    r#"{{"kty":"oct","kid":"demo","k":"{short_secret}"}}"#
                )),
                "decodes to 31 bytes",
            ),
        ];

        for (text, expected) in &cases {
            let error = Key::from_jwks_json(text).expect_err(text);
            assert!(
                error.contains(expected),
                "JWKS {text}: error {error:?} does not contain {expected:?}"
            );
        }
    }
}
