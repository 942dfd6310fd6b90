//! Bearer token extraction (RFC 7235 section 2.1, RFC 6750 section 2.1) and `jti` extraction from a
//! JWS in compact serialization (RFC 7515 section 7.1).
//!
//! Only the payload is decoded, and the signature is not checked here: Envoy's `jwt_authn` filter
//! (Istio's `RequestAuthentication`) and the authorization service check it.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Reasons an `Authorization` header or its token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// The header uses another scheme, such as `Basic`.
    NotBearer,
    /// A malformed `Authorization` header: RFC 6750 `invalid_request`.
    InvalidRequest(&'static str),
    /// A bearer token that is not a JWS with a string `jti`: RFC 6750 `invalid_token`.
    InvalidToken(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBearer => {
                f.write_str("the Authorization header does not use the Bearer scheme")
            }
            Self::InvalidRequest(reason) | Self::InvalidToken(reason) => f.write_str(reason),
        }
    }
}

/// Returns the token of an `Authorization: Bearer <token>` header value.
///
/// The scheme matches in any case; one or more spaces separate it from the token, which must be a
/// single `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn bearer_token(value: &[u8]) -> Result<&str, TokenError> {
    const SCHEME: &[u8] = b"bearer";

    let scheme_len = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    if !value[..scheme_len].eq_ignore_ascii_case(SCHEME) {
        return Err(TokenError::NotBearer);
    }
    let rest = &value[scheme_len..];
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[token_start..];
    if token.is_empty() {
        return Err(TokenError::InvalidRequest("the Bearer scheme has no token"));
    }

    let body_len = token
        .iter()
        .position(|&b| !is_b64token_char(b))
        .unwrap_or(token.len());
    let padding_len = token[body_len..].iter().take_while(|&&b| b == b'=').count();
    if body_len == 0 {
        return Err(TokenError::InvalidRequest(
            "the bearer token contains a character not allowed in a b64token",
        ));
    }
    if body_len + padding_len != token.len() {
        return Err(TokenError::InvalidRequest(
            match token[body_len + padding_len] {
                b' ' => "the Authorization header has text after the bearer token",
                // Envoy joins repeated HTTP/1.1 headers with commas, and a b64token has none.
                b',' => "the request has more than one Authorization header",
                _ => "the bearer token contains a character not allowed in a b64token",
            },
        ));
    }

    // Every byte was checked to be ASCII above.
    std::str::from_utf8(token)
        .map_err(|_| TokenError::InvalidRequest("the bearer token is not ASCII"))
}

fn is_b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// The claims of a JWT that the filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub jti: String,
    pub exp: Expiry,
}

/// The `exp` claim (RFC 7519 section 4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The token has no `exp`.
    Never,
    /// Seconds since the Unix epoch, without the fraction. A negative time counts as 0.
    At(u64),
    /// `exp` is not a number, or appears more than once. The token is still checked with the
    /// authorization service, but its decision is never cached.
    Unusable,
}

/// Returns the `jti` claim of a JWS in compact serialization.
///
/// The token must have three non-empty base64url segments without padding. The payload must be a
/// JSON object whose `jti` is a non-empty string and appears once.
pub fn jti(token: &str) -> Result<String, TokenError> {
    claims(token).map(|claims| claims.jti)
}

/// Returns the `jti` and `exp` claims of a JWS in compact serialization, with the checks of
/// [`jti`].
pub fn claims(token: &str) -> Result<Claims, TokenError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::InvalidToken(
            "the token is not a JWT: expected three dot-separated segments",
        ));
    };
    for segment in [header, signature] {
        if segment.is_empty() || !segment.bytes().all(is_base64url_char) {
            return Err(TokenError::InvalidToken(
                "the token is not a JWT: a segment is not base64url",
            ));
        }
    }
    if payload.is_empty() {
        return Err(TokenError::InvalidToken("the JWT payload is empty"));
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::InvalidToken("the JWT payload is not unpadded base64url"))?;

    let mut deserializer = serde_json::Deserializer::from_slice(&json);
    let (jti, exp) = deserializer
        .deserialize_map(ClaimsVisitor)
        .and_then(|claims| deserializer.end().map(|()| claims))
        .map_err(|error| {
            TokenError::InvalidToken(match error.classify() {
                serde_json::error::Category::Data => "the JWT payload is not a JSON object",
                // Also a number beyond the range of f64, such as 1e400, or an escaped lone
                // UTF-16 surrogate, such as \ud800.
                _ => "the JWT payload is not valid JSON",
            })
        })?;
    match jti {
        JtiClaim::Found(jti) if !jti.is_empty() => Ok(Claims {
            jti: jti.into_owned(),
            exp,
        }),
        JtiClaim::Found(_) => Err(TokenError::InvalidToken("the JWT claim jti is empty")),
        JtiClaim::Missing => Err(TokenError::InvalidToken("the JWT has no jti claim")),
        JtiClaim::NotString => Err(TokenError::InvalidToken(
            "the JWT claim jti is not a string",
        )),
        JtiClaim::Duplicate => Err(TokenError::InvalidToken(
            "the JWT claim jti appears more than once",
        )),
    }
}

fn is_base64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The `jti` claim as found in a JWT payload.
enum JtiClaim<'de> {
    Missing,
    Found(Cow<'de, str>),
    NotString,
    Duplicate,
}

/// Reads a JSON object, keeping only `jti` and `exp` and skipping every other claim without
/// allocating.
struct ClaimsVisitor;

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = (JtiClaim<'de>, Expiry);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut jti = JtiClaim::Missing;
        let mut exp = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "jti" => {
                    let value: ClaimValue<'de> = map.next_value()?;
                    jti = match (jti, value.string) {
                        (JtiClaim::Missing, Some(jti)) => JtiClaim::Found(jti),
                        (JtiClaim::Missing, None) => JtiClaim::NotString,
                        _ => JtiClaim::Duplicate,
                    };
                }
                "exp" => {
                    let value: ClaimValue<'de> = map.next_value()?;
                    exp = match (exp, value.seconds) {
                        (None, Some(seconds)) => Some(Expiry::At(seconds)),
                        _ => Some(Expiry::Unusable),
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((jti, exp.unwrap_or(Expiry::Never)))
    }
}

/// A claim's JSON value, kept when it is a string or a number and only recognised otherwise.
#[derive(Default)]
struct ClaimValue<'de> {
    string: Option<Cow<'de, str>>,
    /// A number as whole seconds, for `exp`.
    seconds: Option<u64>,
}

impl<'de> de::Deserialize<'de> for ClaimValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyVisitor;

        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = ClaimValue<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ClaimValue {
                    string: Some(Cow::Borrowed(v)),
                    seconds: None,
                })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ClaimValue {
                    string: Some(Cow::Owned(v.to_owned())),
                    seconds: None,
                })
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ClaimValue::default())
            }

            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ClaimValue {
                    string: None,
                    seconds: Some(u64::try_from(v).unwrap_or(0)),
                })
            }

            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ClaimValue {
                    string: None,
                    seconds: Some(v),
                })
            }

            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                // `as` saturates: negative times become 0 and huge ones u64::MAX.
                Ok(ClaimValue {
                    string: None,
                    seconds: v.is_finite().then_some(v as u64),
                })
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ClaimValue::default())
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ClaimValue::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ClaimValue::default())
            }
        }

        deserializer.deserialize_any(AnyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn jwt(payload: &str) -> String {
        format!("{}.{}.c2ln", b64(r#"{"alg":"HS256"}"#), b64(payload))
    }

    #[test]
    fn bearer_scheme_any_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR abc"] {
            assert_eq!(bearer_token(value.as_bytes()), Ok("abc"), "{value}");
        }
    }

    #[test]
    fn bearer_several_spaces() {
        assert_eq!(bearer_token(b"Bearer    abc.def"), Ok("abc.def"));
    }

    #[test]
    fn bearer_b64token_alphabet() {
        assert_eq!(bearer_token(b"Bearer aZ09-._~+/=="), Ok("aZ09-._~+/=="));
    }

    #[test]
    fn bearer_other_scheme() {
        assert_eq!(
            bearer_token(b"Basic dXNlcjpwYXNz"),
            Err(TokenError::NotBearer)
        );
        assert_eq!(bearer_token(b"Bearerabc"), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(b""), Err(TokenError::NotBearer));
    }

    #[test]
    fn bearer_without_token() {
        for value in ["Bearer", "Bearer ", "Bearer    "] {
            assert!(
                matches!(
                    bearer_token(value.as_bytes()),
                    Err(TokenError::InvalidRequest(_))
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn bearer_text_after_token() {
        assert_eq!(
            bearer_token(b"Bearer abc extra"),
            Err(TokenError::InvalidRequest(
                "the Authorization header has text after the bearer token"
            ))
        );
    }

    #[test]
    fn bearer_joined_values() {
        assert_eq!(
            bearer_token(b"Bearer abc,Bearer abc"),
            Err(TokenError::InvalidRequest(
                "the request has more than one Authorization header"
            ))
        );
    }

    #[test]
    fn bearer_bad_characters() {
        for value in [
            &b"Bearer ab\tc"[..],
            b"Bearer \tabc",
            b"Bearer ab\xc3\xa9",
            b"Bearer ab\x00c",
            b"Bearer ab=c",
            b"Bearer =abc",
            b"Bearer ab,c",
            b"Bearer \xff",
        ] {
            assert!(
                matches!(bearer_token(value), Err(TokenError::InvalidRequest(_))),
                "{value:?}"
            );
        }
    }

    #[test]
    fn jti_read() {
        assert_eq!(
            jti(&jwt(r#"{"sub":"a","jti":"id-1","exp":1}"#)),
            Ok("id-1".to_owned())
        );
    }

    #[test]
    fn jti_with_escapes_read() {
        assert_eq!(
            jti(&jwt(r#"{"jti":"a\"b\u00e9"}"#)),
            Ok("a\"b\u{e9}".to_owned())
        );
    }

    #[test]
    fn jti_skips_nested_claims() {
        let payload = r#"{"nested":{"jti":5,"list":[1,{"a":null}]},"jti":"x"}"#;
        assert_eq!(jti(&jwt(payload)), Ok("x".to_owned()));
    }

    #[test]
    fn jti_must_be_string() {
        for payload in [
            r#"{"jti":123}"#,
            r#"{"jti":null}"#,
            r#"{"jti":["a"]}"#,
            r#"{"jti":{}}"#,
        ] {
            assert_eq!(
                jti(&jwt(payload)),
                Err(TokenError::InvalidToken(
                    "the JWT claim jti is not a string"
                )),
                "{payload}"
            );
        }
    }

    #[test]
    fn jti_missing_or_empty() {
        assert_eq!(
            jti(&jwt(r#"{"sub":"a"}"#)),
            Err(TokenError::InvalidToken("the JWT has no jti claim"))
        );
        assert_eq!(
            jti(&jwt(r#"{"jti":""}"#)),
            Err(TokenError::InvalidToken("the JWT claim jti is empty"))
        );
    }

    #[test]
    fn jti_duplicate_rejected() {
        assert_eq!(
            jti(&jwt(r#"{"jti":"a","jti":"b"}"#)),
            Err(TokenError::InvalidToken(
                "the JWT claim jti appears more than once"
            ))
        );
    }

    #[test]
    fn exp_read() {
        let exp = |payload: &str| claims(&jwt(payload)).map(|claims| claims.exp);
        assert_eq!(exp(r#"{"jti":"a"}"#), Ok(Expiry::Never));
        assert_eq!(
            exp(r#"{"exp":1700000000,"jti":"a"}"#),
            Ok(Expiry::At(1_700_000_000))
        );
        assert_eq!(
            exp(r#"{"jti":"a","exp":1700000000.9}"#),
            Ok(Expiry::At(1_700_000_000))
        );
        assert_eq!(exp(r#"{"jti":"a","exp":-5}"#), Ok(Expiry::At(0)));
        assert_eq!(exp(r#"{"jti":"a","exp":1e300}"#), Ok(Expiry::At(u64::MAX)));
    }

    #[test]
    fn exp_unusable_still_parses() {
        for payload in [
            r#"{"jti":"a","exp":"1700000000"}"#,
            r#"{"jti":"a","exp":null}"#,
            r#"{"jti":"a","exp":[1]}"#,
            r#"{"jti":"a","exp":1,"exp":2}"#,
        ] {
            assert_eq!(
                claims(&jwt(payload)),
                Ok(Claims {
                    jti: "a".to_owned(),
                    exp: Expiry::Unusable
                }),
                "{payload}"
            );
        }
    }

    #[test]
    fn payload_not_json_object() {
        for payload in [r#"["jti","a"]"#, r#""jti""#, "5"] {
            assert_eq!(
                jti(&jwt(payload)),
                Err(TokenError::InvalidToken(
                    "the JWT payload is not a JSON object"
                )),
                "{payload}"
            );
        }
    }

    #[test]
    fn payload_not_valid_json() {
        for payload in [
            "not json",
            r#"{"jti":"a"} x"#,
            "{",
            r#"{"jti":"x","exp":1e400}"#,
            r#"{"jti":"\ud800"}"#,
        ] {
            assert_eq!(
                jti(&jwt(payload)),
                Err(TokenError::InvalidToken(
                    "the JWT payload is not valid JSON"
                )),
                "{payload}"
            );
        }
    }

    #[test]
    fn standard_alphabet_rejected() {
        let header = b64(r#"{"alg":"HS256"}"#);
        // Some run of '?' characters lines up so that base64url emits '_' where base64 emits '/'.
        let payload = (0..3)
            .map(|n| b64(&format!(r#"{{"jti":"a","x":"{}"}}"#, "?".repeat(n + 1))))
            .find(|p| p.contains('_'))
            .unwrap();
        let token = format!("{header}.{}.c2ln", payload.replace('_', "/"));
        assert!(
            matches!(jti(&token), Err(TokenError::InvalidToken(_))),
            "{token}"
        );
        let token = format!("{header}.{}.c2l+", b64(r#"{"jti":"a"}"#));
        assert!(
            matches!(jti(&token), Err(TokenError::InvalidToken(_))),
            "{token}"
        );
    }

    #[test]
    fn padded_payload_rejected() {
        let token = format!("{}.{}=.c2ln", b64("{}"), b64(r#"{"jti":"ab"}"#));
        assert_eq!(
            jti(&token),
            Err(TokenError::InvalidToken(
                "the JWT payload is not unpadded base64url"
            ))
        );
    }

    #[test]
    fn wrong_segment_counts_rejected() {
        let payload = b64(r#"{"jti":"a"}"#);
        for token in [
            format!("{payload}.c2ln"),
            format!("a.{payload}.b.c.d"),
            payload.clone(),
            format!("a.{payload}.c2ln."),
            format!(".{payload}.c2ln"),
            "a..c2ln".to_owned(),
        ] {
            assert!(
                matches!(jti(&token), Err(TokenError::InvalidToken(_))),
                "{token}"
            );
        }
    }
}
