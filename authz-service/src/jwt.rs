//! Signing and verification of compact HS256 JWTs (RFC 7519, RFC 7515).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::key::Key;

type HmacSha256 = Hmac<Sha256>;

/// Number of random bytes in a generated `jti` (128 bits).
const JTI_BYTES: usize = 16;

/// The claims that [`verify`] checked and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Token ID, the key of the revocation list.
    pub jti: String,
    /// Expiry time in seconds since the Unix epoch.
    pub exp: u64,
    /// Subject, when the token has a string `sub` claim.
    pub sub: Option<String>,
    /// Issue time in seconds since the Unix epoch, when the token has an integer `iat` claim.
    pub iat: Option<u64>,
}

/// Reason why [`verify`] rejected a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The token is not three base64url segments with a JSON object in the header and payload.
    Malformed(&'static str),
    /// The header `alg` is missing or is not `HS256`.
    UnsupportedAlgorithm,
    /// The header `kid` is present but differs from the key's `kid`.
    UnknownKeyId,
    /// The header has `crit`, which lists extensions that must be understood. This service
    /// understands none (RFC 7515 section 4.1.11).
    CriticalExtension,
    /// The HMAC-SHA256 signature does not match the header and payload.
    InvalidSignature,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an empty value.
    InvalidClaim {
        name: &'static str,
        expected: &'static str,
    },
    /// The current time is at or after `exp`.
    Expired,
    /// The current time is before `nbf`.
    NotYetValid,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed(detail) => write!(f, "token is malformed: {detail}"),
            VerifyError::UnsupportedAlgorithm => write!(f, "token algorithm is not HS256"),
            VerifyError::UnknownKeyId => write!(f, "token kid does not match the signing key"),
            VerifyError::CriticalExtension => {
                write!(f, "token header has crit, and no extension is supported")
            }
            VerifyError::InvalidSignature => write!(f, "token signature is invalid"),
            VerifyError::MissingClaim(name) => write!(f, "token has no {name} claim"),
            VerifyError::InvalidClaim { name, expected } => {
                write!(f, "token {name} claim must be {expected}")
            }
            VerifyError::Expired => write!(f, "token has expired"),
            VerifyError::NotYetValid => write!(f, "token is not valid yet"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Signs `claims` as a compact JWT with the header `{"alg":"HS256","typ":"JWT","kid":<kid>}`.
///
/// `claims` is serialized as given, so a caller can build tokens with missing or wrongly typed
/// claims for tests.
pub fn sign_hs256(key: &Key, claims: &Value) -> String {
    let kid = Value::String(key.kid().to_string());
    let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":{kid}}}"#);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );

    let mut mac = new_mac(key);
    mac.update(signing_input.as_bytes());
    let signature = mac.finalize().into_bytes();

    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Issues a token for `sub` that expires `ttl_secs` after `now_secs`.
///
/// The token carries a random 128-bit `jti` in lowercase hex, `sub`, `iat` and `exp`.
/// Returns the token, its `jti` and its `exp`.
///
/// # Panics
///
/// Panics if the operating system's random number generator fails.
pub fn issue_token(key: &Key, sub: &str, ttl_secs: u64, now_secs: u64) -> (String, String, u64) {
    let jti = random_jti();
    let exp = now_secs.saturating_add(ttl_secs);
    let claims = json!({
        "jti": jti,
        "sub": sub,
        "iat": now_secs,
        "exp": exp,
    });

    (sign_hs256(key, &claims), jti, exp)
}

/// Verifies a compact HS256 JWT at time `now_secs` (seconds since the Unix epoch).
///
/// The checks run in this order, and the first failure is returned:
///
/// 1. The token has three base64url segments, and the header is a JSON object.
/// 2. The header `alg` is `HS256`.
/// 3. The header `kid`, if present, equals the key's `kid`.
/// 4. The header has no `crit`.
/// 5. The HMAC-SHA256 signature matches.
/// 6. The payload is a JSON object.
/// 7. `exp` is an integer later than `now_secs`.
/// 8. `nbf`, if present, is an integer not later than `now_secs`.
/// 9. `jti` is a non-empty string.
///
/// No clock leeway is applied to `exp` or `nbf`.
pub fn verify(key: &Key, token: &str, now_secs: u64) -> Result<Claims, VerifyError> {
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(VerifyError::Malformed(
            "expected three dot-separated segments",
        ));
    };

    let header = decode_json_object(
        header_b64,
        "header is not valid base64url",
        "header is not a JSON object",
    )?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    if let Some(kid) = header.get("kid") {
        if kid.as_str() != Some(key.kid()) {
            return Err(VerifyError::UnknownKeyId);
        }
    }
    if header.contains_key("crit") {
        return Err(VerifyError::CriticalExtension);
    }

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| VerifyError::Malformed("signature is not valid base64url"))?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let mut mac = new_mac(key);
    mac.update(&token.as_bytes()[..signing_input_len]);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| VerifyError::InvalidSignature)?;

    let payload = decode_json_object(
        payload_b64,
        "payload is not valid base64url",
        "payload is not a JSON object",
    )?;
    check_claims(&payload, now_secs)
}

/// Checks the time claims and `jti` of a payload whose signature is already verified.
fn check_claims(payload: &Map<String, Value>, now_secs: u64) -> Result<Claims, VerifyError> {
    let exp = integer_claim(payload, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
    if now_secs >= exp {
        return Err(VerifyError::Expired);
    }

    if let Some(nbf) = integer_claim(payload, "nbf")? {
        if now_secs < nbf {
            return Err(VerifyError::NotYetValid);
        }
    }

    let jti = match payload.get("jti") {
        None => return Err(VerifyError::MissingClaim("jti")),
        Some(Value::String(jti)) if !jti.is_empty() => jti.clone(),
        Some(_) => {
            return Err(VerifyError::InvalidClaim {
                name: "jti",
                expected: "a non-empty string",
            })
        }
    };

    Ok(Claims {
        jti,
        exp,
        sub: payload
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        iat: payload.get("iat").and_then(Value::as_u64),
    })
}

/// Returns the claim as an unsigned integer, `None` when it is absent, or an error for any other
/// JSON type (including fractional and negative numbers).
fn integer_claim(
    payload: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, VerifyError> {
    match payload.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(VerifyError::InvalidClaim {
            name,
            expected: "a non-negative integer",
        }),
    }
}

/// Decodes a base64url segment that must contain a JSON object. The two messages are the
/// `Malformed` details for each way the segment can fail.
fn decode_json_object(
    segment: &str,
    not_base64url: &'static str,
    not_object: &'static str,
) -> Result<Map<String, Value>, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed(not_base64url))?;

    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(VerifyError::Malformed(not_object)),
    }
}

fn new_mac(key: &Key) -> HmacSha256 {
    HmacSha256::new_from_slice(key.secret()).expect("HMAC accepts keys of any length")
}

fn random_jti() -> String {
    let mut bytes = [0u8; JTI_BYTES];
    getrandom::fill(&mut bytes).expect("operating system random number generator failed");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn test_key(kid: &str, secret_byte: u8) -> Key {
        let secret = URL_SAFE_NO_PAD.encode([secret_byte; 32]);
        let jwks =
            format!(r#"{{"keys":[{{"kty":"oct","alg":"HS256","kid":"{kid}","k":"{secret}"}}]}}"#);
        Key::from_jwks_json(&jwks).unwrap()
    }

    fn key() -> Key {
        test_key("test", 7)
    }

    /// Builds a token from raw header and payload JSON, signed with `key`.
    fn sign_raw(key: &Key, header: &str, payload: &str) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = new_mac(key);
        mac.update(signing_input.as_bytes());
        let signature = mac.finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_string).collect()
    }

    #[test]
    fn issued_token_verifies() {
        let key = key();
        let (token, jti, exp) = issue_token(&key, "alice", 600, NOW);

        let claims = verify(&key, &token, NOW).expect("issued token verifies");

        assert_eq!(claims.jti, jti);
        assert_eq!(claims.exp, NOW + 600);
        assert_eq!(exp, NOW + 600);
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.iat, Some(NOW));
    }

    #[test]
    fn issued_token_has_expected_header() {
        let (token, _, _) = issue_token(&key(), "alice", 600, NOW);

        let header = URL_SAFE_NO_PAD.decode(&segments(&token)[0]).unwrap();

        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT","kid":"test"}"#);
    }

    #[test]
    fn issued_jti_is_random_hex() {
        let key = key();
        let (_, first, _) = issue_token(&key, "alice", 600, NOW);
        let (_, second, _) = issue_token(&key, "alice", 600, NOW);

        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn tampered_payload_rejected() {
        let key = key();
        let (token, _, _) = issue_token(&key, "alice", 600, NOW);
        let parts = segments(&token);
        let forged_payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"jti":"x","sub":"admin","exp":{}}}"#,
            NOW + 600
        ));
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);

        assert_eq!(
            verify(&key, &tampered, NOW),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn tampered_signature_rejected() {
        let key = key();
        let (token, _, _) = issue_token(&key, "alice", 600, NOW);
        let parts = segments(&token);
        let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        signature[0] ^= 1;
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );

        assert_eq!(
            verify(&key, &tampered, NOW),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn truncated_signature_rejected() {
        let key = key();
        let (token, _, _) = issue_token(&key, "alice", 600, NOW);
        let parts = segments(&token);
        let tampered = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);

        assert_eq!(
            verify(&key, &tampered, NOW),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn other_key_signature_rejected() {
        let (token, _, _) = issue_token(&test_key("test", 8), "alice", 600, NOW);

        assert_eq!(
            verify(&key(), &token, NOW),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn wrong_alg_rejected() {
        let key = key();
        let payload = format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 600);
        let headers = [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT","kid":"test"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":"test"}"#,
            r#"{"typ":"JWT","kid":"test"}"#,
        ];

        for header in headers {
            let token = sign_raw(&key, header, &payload);
            assert_eq!(
                verify(&key, &token, NOW),
                Err(VerifyError::UnsupportedAlgorithm),
                "header {header}"
            );
        }
    }

    #[test]
    fn unsigned_alg_none_rejected() {
        let key = key();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 600));
        let token = format!("{header}.{payload}.");

        assert_eq!(
            verify(&key, &token, NOW),
            Err(VerifyError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn other_kid_rejected() {
        let key = key();
        let payload = format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 600);
        let token = sign_raw(&key, r#"{"alg":"HS256","kid":"other"}"#, &payload);

        assert_eq!(verify(&key, &token, NOW), Err(VerifyError::UnknownKeyId));
    }

    #[test]
    fn crit_header_rejected() {
        let key = key();
        let payload = format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 600);
        let token = sign_raw(&key, r#"{"alg":"HS256","crit":["x"],"x":1}"#, &payload);

        assert_eq!(
            verify(&key, &token, NOW),
            Err(VerifyError::CriticalExtension)
        );
    }

    #[test]
    fn absent_kid_accepted() {
        let key = key();
        let payload = format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 600);
        let token = sign_raw(&key, r#"{"alg":"HS256"}"#, &payload);

        assert!(verify(&key, &token, NOW).is_ok());
    }

    #[test]
    fn expired_token_rejected() {
        let key = key();
        let (token, _, exp) = issue_token(&key, "alice", 600, NOW);

        assert!(verify(&key, &token, exp - 1).is_ok());
        assert_eq!(verify(&key, &token, exp), Err(VerifyError::Expired));
        assert_eq!(verify(&key, &token, exp + 1), Err(VerifyError::Expired));
    }

    #[test]
    fn nbf_in_future_rejected() {
        let key = key();
        let claims = json!({"jti": "a", "exp": NOW + 600, "nbf": NOW + 10});
        let token = sign_hs256(&key, &claims);

        assert_eq!(verify(&key, &token, NOW), Err(VerifyError::NotYetValid));
        assert!(verify(&key, &token, NOW + 10).is_ok());
    }

    #[test]
    fn missing_jti_rejected() {
        let key = key();
        let token = sign_hs256(&key, &json!({"sub": "alice", "exp": NOW + 600}));

        assert_eq!(
            verify(&key, &token, NOW),
            Err(VerifyError::MissingClaim("jti"))
        );
    }

    #[test]
    fn non_string_jti_rejected() {
        let key = key();
        let invalid_jtis = [json!(12345), json!(""), json!(null), json!(["a"])];

        for jti in invalid_jtis {
            let token = sign_hs256(&key, &json!({"jti": jti, "exp": NOW + 600}));
            assert_eq!(
                verify(&key, &token, NOW),
                Err(VerifyError::InvalidClaim {
                    name: "jti",
                    expected: "a non-empty string"
                }),
                "jti {jti}"
            );
        }
    }

    #[test]
    fn missing_exp_rejected() {
        let key = key();
        let token = sign_hs256(&key, &json!({"jti": "a"}));

        assert_eq!(
            verify(&key, &token, NOW),
            Err(VerifyError::MissingClaim("exp"))
        );
    }

    #[test]
    fn non_integer_exp_rejected() {
        let key = key();
        let invalid_exps = [json!("1700000600"), json!(1.7e9), json!(-1), json!(null)];

        for exp in invalid_exps {
            let token = sign_hs256(&key, &json!({"jti": "a", "exp": exp}));
            assert_eq!(
                verify(&key, &token, NOW),
                Err(VerifyError::InvalidClaim {
                    name: "exp",
                    expected: "a non-negative integer"
                }),
                "exp {exp}"
            );
        }
    }

    #[test]
    fn malformed_tokens_rejected() {
        let key = key();
        let (token, _, _) = issue_token(&key, "alice", 600, NOW);
        let parts = segments(&token);
        let cases = [
            ("".to_string(), "expected three dot-separated segments"),
            ("abc".to_string(), "expected three dot-separated segments"),
            (
                format!("{token}.x"),
                "expected three dot-separated segments",
            ),
            (
                format!("{}.{}", parts[0], parts[1]),
                "expected three dot-separated segments",
            ),
            (
                format!("!!.{}.{}", parts[1], parts[2]),
                "header is not valid base64url",
            ),
            (
                format!(
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode("[1]"),
                    parts[1],
                    parts[2]
                ),
                "header is not a JSON object",
            ),
            (
                format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
                "signature is not valid base64url",
            ),
        ];

        for (token, detail) in cases {
            assert_eq!(
                verify(&key, &token, NOW),
                Err(VerifyError::Malformed(detail)),
                "token {token:?}"
            );
        }
    }

    #[test]
    fn malformed_payload_rejected() {
        let key = key();
        let header = r#"{"alg":"HS256","kid":"test"}"#;
        let token = sign_raw(&key, header, "not json");

        assert_eq!(
            verify(&key, &token, NOW),
            Err(VerifyError::Malformed("payload is not a JSON object"))
        );
    }

    #[test]
    fn verify_error_display_is_sentence() {
        assert_eq!(VerifyError::Expired.to_string(), "token has expired");
        assert_eq!(
            VerifyError::MissingClaim("jti").to_string(),
            "token has no jti claim"
        );
        assert_eq!(
            VerifyError::Malformed("header is not valid base64url").to_string(),
            "token is malformed: header is not valid base64url"
        );
    }
}
