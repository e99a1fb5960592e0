//! What a request means, where `meshc explain` and `meshd` must agree: which methods are
//! idempotent (retried by default), and how a query string is split and percent-decoded for
//! query-parameter matches.

/// The methods RFC 9110 defines as idempotent: a request that failed before any response
/// byte may be retried without a policy's opt-in.
pub const IDEMPOTENT_METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// Whether `method` (case-sensitive, as HTTP methods are) is idempotent.
#[inline]
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
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
}
