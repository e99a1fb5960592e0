//! SPIFFE IDs (`spiffe://trust-domain/path`), checked as the SPIFFE ID standard says.

use std::fmt;

/// Longest SPIFFE ID accepted, in bytes (the standard's limit for URIs in X.509 SVIDs).
const MAX_LEN: usize = 2048;

/// A SPIFFE ID that names a workload: a trust domain and a non-empty path.
///
/// Invariant: the trust domain is lowercase letters, digits, `.`, `-` and `_`; every path
/// segment is non-empty, is not `.` or `..`, and holds only letters, digits, `.`, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    domain_len: usize,
}

/// Why a string is not a workload SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    /// It does not start with `spiffe://`.
    #[error("{0:?} does not start with spiffe://")]
    Scheme(String),
    /// The trust domain is empty or holds a character other than `a-z 0-9 . - _`.
    #[error(
        "{0:?}: the trust domain must be non-empty lowercase letters, digits, '.', '-' or '_'"
    )]
    TrustDomain(String),
    /// There is no path: the ID names a trust domain, not a workload.
    #[error("{0:?} has no path: a workload ID looks like spiffe://cluster.local/ns/NS/sa/SA")]
    NoPath(String),
    /// A path segment is empty, `.` or `..`, or holds a character other than `A-Z a-z 0-9 . - _`.
    #[error(
        "{0:?}: path segments must be non-empty letters, digits, '.', '-' or '_', not '.' or '..'"
    )]
    Path(String),
    /// Longer than 2048 bytes.
    #[error("SPIFFE ID longer than {MAX_LEN} bytes")]
    TooLong,
}

impl SpiffeId {
    /// Parses and checks a workload SPIFFE ID.
    pub fn parse(text: &str) -> Result<Self, SpiffeError> {
        if text.len() > MAX_LEN {
            return Err(SpiffeError::TooLong);
        }
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeError::Scheme(text.to_owned()))?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !domain_is_valid(domain) {
            return Err(SpiffeError::TrustDomain(text.to_owned()));
        }
        if path.is_empty() {
            return Err(SpiffeError::NoPath(text.to_owned()));
        }
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        };
        if !path.split('/').all(segment_ok) {
            return Err(SpiffeError::Path(text.to_owned()));
        }
        Ok(Self {
            uri: text.to_owned(),
            domain_len: domain.len(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len().."spiffe://".len() + self.domain_len]
    }

    /// The whole ID as a URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Checks a trust domain name on its own (as `meshca init` takes it).
pub fn check_trust_domain(domain: &str) -> Result<(), SpiffeError> {
    if domain_is_valid(domain) {
        Ok(())
    } else {
        Err(SpiffeError::TrustDomain(domain.to_owned()))
    }
}

/// Longest trust domain, in bytes (the SPIFFE standard's limit, that of a DNS name).
const MAX_DOMAIN_LEN: usize = 255;

fn domain_is_valid(domain: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c);
    !domain.is_empty() && domain.len() <= MAX_DOMAIN_LEN && domain.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_istio_style_workload_ids() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
    }

    #[test]
    fn refuses_what_the_standard_forbids() {
        let bad = |s: &str| SpiffeId::parse(s).unwrap_err();
        assert_eq!(
            bad("https://cluster.local/a"),
            SpiffeError::Scheme("https://cluster.local/a".into())
        );
        assert!(matches!(
            bad("spiffe://Cluster.local/a"),
            SpiffeError::TrustDomain(_)
        ));
        assert!(matches!(bad("spiffe:///a"), SpiffeError::TrustDomain(_)));
        assert!(matches!(
            bad("spiffe://cluster.local"),
            SpiffeError::NoPath(_)
        ));
        assert!(matches!(
            bad("spiffe://cluster.local/"),
            SpiffeError::NoPath(_)
        ));
        assert!(matches!(
            bad("spiffe://cluster.local/ns//sa"),
            SpiffeError::Path(_)
        ));
        assert!(matches!(
            bad("spiffe://cluster.local/ns/../sa"),
            SpiffeError::Path(_)
        ));
        assert!(matches!(
            bad("spiffe://cluster.local/a?b"),
            SpiffeError::Path(_)
        ));
        assert!(matches!(
            bad("spiffe://cluster.local/a/"),
            SpiffeError::Path(_)
        ));
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert_eq!(bad(&long), SpiffeError::TooLong);
        assert!(check_trust_domain("cluster.local").is_ok());
        assert!(check_trust_domain(&"a".repeat(256)).is_err());
        assert!(check_trust_domain("a/b").is_err());
    }
}
