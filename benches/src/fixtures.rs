//! The requests every micro-benchmark sends: one set of request headers and three bearer tokens.
//!
//! The tokens are HS256-shaped JWS with a fixed, fake signature. The filter never checks
//! signatures, so the tokens only need the right shape, and the same bytes go through the core,
//! the native module and the wasm module.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Filter configuration shared by the micro-benchmarks, in the form Envoy passes it.
pub const FILTER_CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "authorizeUrl": "/authorize", "timeout": 2000}"#;

/// Approximate size of [`Case::Large`]'s token in bytes.
pub const LARGE_TOKEN_BYTES: usize = 4096;

/// One benchmarked request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// A token of about 300 bytes with the usual registered claims; the callout gets a 200.
    Typical,
    /// A token of about 4 KB with many claims and `jti` last; the callout gets a 200.
    Large,
    /// A typical-size token without `jti`: a 401 local reply, no callout.
    Malformed,
}

impl Case {
    pub const ALL: [Case; 3] = [Case::Typical, Case::Large, Case::Malformed];

    /// Short name used as the benchmark id.
    pub fn name(self) -> &'static str {
        match self {
            Case::Typical => "typical",
            Case::Large => "large_4k",
            Case::Malformed => "malformed",
        }
    }

    /// Returns the token of this case.
    pub fn token(self) -> String {
        match self {
            Case::Typical => typical_token(),
            Case::Large => large_token(),
            Case::Malformed => malformed_token(),
        }
    }

    /// Returns true when the filter sends a callout for this case.
    pub fn makes_callout(self) -> bool {
        self != Case::Malformed
    }

    /// Returns the status of the filter's local reply, or `None` when the request continues.
    pub fn expected_reply_status(self) -> Option<u32> {
        match self {
            Case::Typical | Case::Large => None,
            Case::Malformed => Some(401),
        }
    }
}

const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT","kid":"demo"}"#;

/// A fixed 32-byte value in place of an HMAC-SHA256 signature.
const FAKE_SIGNATURE: [u8; 32] = [0x5a; 32];

fn jws(payload_json: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER_JSON),
        URL_SAFE_NO_PAD.encode(payload_json),
        URL_SAFE_NO_PAD.encode(FAKE_SIGNATURE)
    )
}

/// Returns a token of about 300 bytes, like the ones `authz-service` issues plus issuer and
/// audience.
pub fn typical_token() -> String {
    jws(concat!(
        r#"{"iss":"https://auth.example.com","sub":"alice","aud":"api.example.com","#,
        r#""jti":"4f1c2a9e-7b3d-4e8a-9c6f-2d5b8e1a3c7f","iat":1764806400,"exp":4102444800}"#
    ))
}

/// Returns a token of about [`LARGE_TOKEN_BYTES`] bytes: a typical token plus a long list of
/// permissions, with `jti` as the last claim so the parser reads every other claim first.
pub fn large_token() -> String {
    let mut permissions = Vec::new();
    loop {
        let payload = format!(
            concat!(
                r#"{{"iss":"https://auth.example.com","sub":"alice","aud":"api.example.com","#,
                r#""iat":1764806400,"exp":4102444800,"permissions":[{}],"#,
                r#""jti":"4f1c2a9e-7b3d-4e8a-9c6f-2d5b8e1a3c7f"}}"#
            ),
            permissions.join(",")
        );
        let token = jws(&payload);
        if token.len() >= LARGE_TOKEN_BYTES {
            return token;
        }
        permissions.push(format!("\"orders:read:region-{:04}\"", permissions.len()));
    }
}

/// Returns a typical-size token whose payload has no `jti`, which the filter rejects after
/// decoding the whole payload.
pub fn malformed_token() -> String {
    jws(concat!(
        r#"{"iss":"https://auth.example.com","sub":"alice","aud":"api.example.com","#,
        r#""sid":"4f1c2a9e-7b3d-4e8a-9c6f-2d5b8e1a3c7f","iat":1764806400,"exp":4102444800}"#
    ))
}

/// Returns the request headers that Envoy's HTTP connection manager hands the filter for a `GET /`
/// from a typical client: pseudo-headers, client headers, and the `x-forwarded-proto` and
/// `x-request-id` that Envoy adds.
pub fn request_headers(token: &str) -> Vec<(String, String)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", "/api/orders?limit=20"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "wrk/4.1.0"),
        ("accept", "application/json"),
        ("authorization", &format!("Bearer {token}")),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "7f3e2b1a-9c4d-4e5f-8a6b-1c2d3e4f5a6b"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_token_size() {
        let len = typical_token().len();
        assert!((250..=350).contains(&len), "{len}");
    }

    #[test]
    fn large_token_size() {
        let len = large_token().len();
        assert!(
            (LARGE_TOKEN_BYTES..LARGE_TOKEN_BYTES + 64).contains(&len),
            "{len}"
        );
    }

    #[test]
    fn tokens_parse_as_expected() {
        assert!(jwt_revocation_core::token::jti(&typical_token()).is_ok());
        assert!(jwt_revocation_core::token::jti(&large_token()).is_ok());
        assert!(jwt_revocation_core::token::jti(&malformed_token()).is_err());
    }
}
