//! The callout's `:authority`, derived from the Envoy cluster name.
//!
//! Istio names the cluster of a service `direction|port|subset|host`, for example
//! `outbound|8080||authz.ns.svc.cluster.local` or `outbound|8080|v1|authz.ns.svc.cluster.local`;
//! the host is the last field in both. A cluster defined by hand usually carries a plain name such
//! as `authz`, which is used as the authority as it is.

use std::fmt;

/// Reasons a cluster name gives no usable `:authority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterNameError {
    Empty,
    /// Istio's SNI form, `outbound_.8080_._.host`, which names a TLS passthrough route.
    SniForm,
    /// A name with `|` that is not `direction|port|subset|host`.
    MalformedIstioName(&'static str),
    /// A character that is not allowed in an HTTP authority.
    InvalidCharacter(char),
    /// A port that is not a number from 1 to 65535.
    InvalidPort(String),
    /// An authority such as `:8080`, with a port and no host.
    MissingHost,
}

impl fmt::Display for ClusterNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the cluster name is empty"),
            Self::SniForm => f.write_str(
                "the cluster name has Istio's SNI form (outbound_.PORT_.SUBSET_.HOST); \
                 use the form outbound|PORT||HOST, or set \"authority\"",
            ),
            Self::MalformedIstioName(what) => write!(
                f,
                "the cluster name is not of Istio's form direction|port|subset|host: {what}"
            ),
            Self::InvalidPort(port) => {
                write!(f, "the port {port:?} is not a number from 1 to 65535")
            }
            Self::MissingHost => f.write_str(
                "the authority has no host before its port; expected host or host:port, with \
                 an IPv6 address in brackets",
            ),
            Self::InvalidCharacter(c) => write!(
                f,
                "the cluster name contains {c:?}, which is not allowed in an HTTP authority; \
                 set \"authority\""
            ),
        }
    }
}

/// Returns the `:authority` for a callout to `cluster`.
pub fn authority_from_cluster(cluster: &str) -> Result<&str, ClusterNameError> {
    if cluster.is_empty() {
        return Err(ClusterNameError::Empty);
    }
    if cluster.starts_with("outbound_.") || cluster.starts_with("inbound_.") {
        return Err(ClusterNameError::SniForm);
    }
    let host = if cluster.contains('|') {
        istio_host(cluster)?
    } else {
        cluster
    };
    check_authority(host)?;
    Ok(host)
}

fn istio_host(cluster: &str) -> Result<&str, ClusterNameError> {
    let fields: Vec<&str> = cluster.split('|').collect();
    let [direction, port, _subset, host] = fields[..] else {
        return Err(ClusterNameError::MalformedIstioName("expected four fields"));
    };
    if direction != "outbound" && direction != "inbound" {
        return Err(ClusterNameError::MalformedIstioName(
            "the direction must be outbound or inbound",
        ));
    }
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Err(ClusterNameError::MalformedIstioName(
            "the port must be a number from 1 to 65535",
        ));
    }
    if host.is_empty() {
        return Err(ClusterNameError::MalformedIstioName("the host is empty"));
    }
    Ok(host)
}

/// Checks that `authority` contains only characters of an RFC 3986 host and port.
pub(crate) fn check_authority(authority: &str) -> Result<(), ClusterNameError> {
    if authority.is_empty() {
        return Err(ClusterNameError::Empty);
    }
    if authority.starts_with(':') {
        return Err(ClusterNameError::MissingHost);
    }
    if let Some(c) = authority.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | ':' | '[' | ']'))
    }) {
        return Err(ClusterNameError::InvalidCharacter(c));
    }
    // A port follows the last colon, except inside an IPv6 literal such as `[::1]`.
    let port = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => Some(port),
        _ => None,
    };
    match port {
        Some(port) if !matches!(port.parse::<u16>(), Ok(p) if p > 0) => {
            Err(ClusterNameError::InvalidPort(port.to_owned()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_name_without_subset() {
        assert_eq!(
            authority_from_cluster("outbound|8080||authz.ns.svc.cluster.local"),
            Ok("authz.ns.svc.cluster.local")
        );
    }

    #[test]
    fn istio_name_with_subset() {
        assert_eq!(
            authority_from_cluster("outbound|8080|v1|authz.ns.svc.cluster.local"),
            Ok("authz.ns.svc.cluster.local")
        );
    }

    #[test]
    fn istio_inbound_name() {
        assert_eq!(authority_from_cluster("inbound|9000||authz"), Ok("authz"));
    }

    #[test]
    fn plain_name_used_as_is() {
        assert_eq!(authority_from_cluster("authz_service"), Ok("authz_service"));
        assert_eq!(authority_from_cluster("authz:8080"), Ok("authz:8080"));
    }

    #[test]
    fn sni_form_rejected() {
        assert_eq!(
            authority_from_cluster("outbound_.8080_._.authz.ns.svc.cluster.local"),
            Err(ClusterNameError::SniForm)
        );
        assert_eq!(
            authority_from_cluster("inbound_.8080_._.authz"),
            Err(ClusterNameError::SniForm)
        );
    }

    #[test]
    fn malformed_istio_names_rejected() {
        for name in [
            "outbound|8080|authz",
            "outbound|8080||",
            "outbound|port||authz",
            "outbound|0||authz",
            "outbound|70000||authz",
            "sideways|8080||authz",
            "outbound|8080||authz|extra",
        ] {
            assert!(
                matches!(
                    authority_from_cluster(name),
                    Err(ClusterNameError::MalformedIstioName(_))
                ),
                "{name} should be rejected"
            );
        }
    }

    #[test]
    fn empty_name_rejected() {
        assert_eq!(authority_from_cluster(""), Err(ClusterNameError::Empty));
    }

    #[test]
    fn authority_characters_checked() {
        assert_eq!(
            authority_from_cluster("authz service"),
            Err(ClusterNameError::InvalidCharacter(' '))
        );
        assert_eq!(
            authority_from_cluster("outbound|8080||authz/x"),
            Err(ClusterNameError::InvalidCharacter('/'))
        );
    }

    #[test]
    fn authority_ports_checked() {
        assert_eq!(check_authority("authz:8080"), Ok(()));
        assert_eq!(check_authority("[::1]:8080"), Ok(()));
        assert_eq!(check_authority(":80"), Err(ClusterNameError::MissingHost));
        assert_eq!(check_authority("::1"), Err(ClusterNameError::MissingHost));
        assert_eq!(check_authority("[::1]"), Ok(()));
        assert_eq!(
            check_authority("authz:99999"),
            Err(ClusterNameError::InvalidPort("99999".to_owned()))
        );
        assert_eq!(
            check_authority("authz:"),
            Err(ClusterNameError::InvalidPort(String::new()))
        );
    }

    #[test]
    fn error_messages_name_the_fix() {
        assert!(ClusterNameError::SniForm
            .to_string()
            .contains("outbound|PORT||HOST"));
        assert!(ClusterNameError::InvalidCharacter(' ')
            .to_string()
            .contains("\"authority\""));
    }
}
