//! What a request means, where `meshc explain` and `meshd` must agree: which methods are
//! idempotent (retried by default), how a query string is split and percent-decoded for
//! query-parameter matches, and the Location a redirect answers with.

/// The methods RFC 9110 defines as idempotent: a request that failed before any response
/// byte may be retried without a policy's opt-in.
pub const IDEMPOTENT_METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// Whether `method` (case-sensitive, as HTTP methods are) is idempotent.
#[inline]
pub fn is_idempotent(method: &str) -> bool {
    IDEMPOTENT_METHODS.contains(&method)
}

/// The `name=value` pairs of a query string, as written (not decoded); a pair without `=`
/// has the empty value, and empty pairs (`a=1&&b=2`) are skipped.
#[inline]
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The bytes of `raw` with `%XX` escapes decoded; a `%` not followed by two hex digits stays,
/// and `+` stays `+` (it means a space only in HTML forms, which routing does not assume).
#[inline]
pub fn percent_decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *raw.get(i)?;
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (
                raw.get(i + 1).and_then(|&c| hex(c)),
                raw.get(i + 2).and_then(|&c| hex(c)),
            ) {
                i += 3;
                return Some((hi * 16 + lo) as u8);
            }
        }
        i += 1;
        Some(b)
    })
}

/// The request parts a redirect Location is built from.
#[derive(Debug, Clone, Copy)]
pub struct RedirectSource<'r> {
    /// Host without port.
    pub host: &'r str,
    /// Port, if the request named one.
    pub port: Option<u16>,
    /// Path without the query.
    pub path: &'r str,
    /// Query without the `?`, empty when none.
    pub query: &'r str,
}

/// Writes the Location of `redirect` for a request into `out`: the redirect's scheme
/// (default `http`), host, port and path, each defaulting to the request's; the query is kept.
/// A port that is the scheme's default is left out.
pub fn write_location(redirect: &crate::Redirect, request: RedirectSource<'_>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let scheme = redirect.scheme.as_deref().unwrap_or("http");
    let (host, authority_port) = match redirect.authority.as_deref() {
        Some(authority) => crate::host::split_authority(authority),
        None => (request.host, None),
    };
    let port = match (redirect.port, authority_port) {
        (Some(p), _) => Some(p),
        (None, Some(p)) => Some(p),
        // A new host or a new scheme does not inherit the request's port.
        (None, None) if redirect.authority.is_none() && redirect.scheme.is_none() => request.port,
        (None, None) => None,
    };
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    out.extend_from_slice(host.as_bytes());
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    if let Some(port) = port.filter(|&p| p != default_port) {
        let _ = write!(out, ":{port}");
    }
    let path = redirect.path.as_deref().unwrap_or(request.path);
    if !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    if !request.query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(request.query.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> Vec<u8> {
        percent_decoded(raw.as_bytes()).collect()
    }

    #[test]
    fn decodes_escapes_and_keeps_malformed_ones_and_plus() {
        assert_eq!(decoded("a%20b%2Fc"), b"a b/c");
        assert_eq!(decoded("100%"), b"100%");
        assert_eq!(decoded("%zz%4"), b"%zz%4");
        assert_eq!(decoded("a+b"), b"a+b");
    }

    #[test]
    fn splits_pairs_without_decoding() {
        let pairs: Vec<_> = query_pairs("a=1&&flag&b=x%20y&=v").collect();
        assert_eq!(pairs, [("a", "1"), ("flag", ""), ("b", "x%20y"), ("", "v")]);
    }

    #[test]
    fn the_idempotent_list_and_the_check_agree() {
        for method in IDEMPOTENT_METHODS {
            assert!(is_idempotent(method));
        }
        for method in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!is_idempotent(method));
        }
    }

    fn location(redirect: crate::Redirect, port: Option<u16>, query: &str) -> String {
        let source = RedirectSource {
            host: "shop",
            port,
            path: "/cart",
            query,
        };
        let mut out = Vec::new();
        write_location(&redirect, source, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn redirect() -> crate::Redirect {
        crate::Redirect {
            scheme: None,
            authority: None,
            port: None,
            path: None,
            status: 301,
        }
    }

    #[test]
    fn redirect_location_keeps_what_the_redirect_leaves_unset() {
        assert_eq!(location(redirect(), None, ""), "http://shop/cart");
        assert_eq!(
            location(redirect(), Some(8080), "a=1&b"),
            "http://shop:8080/cart?a=1&b"
        );
        assert_eq!(
            location(redirect(), Some(80), ""),
            "http://shop/cart",
            "the default port is left out"
        );
        let https = crate::Redirect {
            scheme: Some("https".into()),
            ..redirect()
        };
        assert_eq!(
            location(https, Some(8080), "q=1"),
            "https://shop/cart?q=1",
            "a new scheme does not inherit the old port"
        );
        let moved = crate::Redirect {
            authority: Some("new.example".into()),
            path: Some("/basket".into()),
            port: Some(9443),
            scheme: Some("https".into()),
            status: 308,
        };
        assert_eq!(
            location(moved, Some(8080), "x=%20"),
            "https://new.example:9443/basket?x=%20"
        );
        let with_port = crate::Redirect {
            authority: Some("other:81".into()),
            ..redirect()
        };
        assert_eq!(location(with_port, None, ""), "http://other:81/cart");
    }
}
