//! Unit tests for URL, rate, duration and header parsing.

use super::*;

fn target(url: &str) -> Target {
    url.parse().expect("valid url")
}

#[test]
fn parses_host_port_path_and_query() {
    let t = target("http://127.0.0.1:8080/a/b?x=1&y=2#frag");
    assert_eq!(t.host, "127.0.0.1");
    assert_eq!(t.port, 8080);
    assert_eq!(t.authority, "127.0.0.1:8080");
    assert_eq!(t.path_and_query, "/a/b?x=1&y=2");
    assert_eq!(t.to_string(), "http://127.0.0.1:8080/a/b?x=1&y=2");
}

#[test]
fn defaults_port_and_path() {
    let t = target("HTTP://example.test");
    assert_eq!(
        (t.host.as_str(), t.port, t.path_and_query.as_str()),
        ("example.test", 80, "/")
    );
    assert_eq!(target("http://h:1?q").path_and_query, "/?q");
}

#[test]
fn parses_bracketed_ipv6() {
    let t = target("http://[::1]:9000/x");
    assert_eq!(
        (t.host.as_str(), t.port, t.authority.as_str()),
        ("::1", 9000, "[::1]:9000")
    );
    assert_eq!(target("http://[::1]/").port, 80);
}

#[test]
fn rejects_other_schemes_and_malformed_urls() {
    assert_eq!(
        "https://x/".parse::<Target>(),
        Err(ParseError::Scheme {
            url: "https://x/".into()
        })
    );
    assert!(matches!(
        "localhost:80".parse::<Target>(),
        Err(ParseError::Scheme { .. })
    ));
    for (url, reason) in [
        ("http://", "missing host"),
        ("http://:80/", "missing host"),
        ("http://h:0/", "bad port"),
        ("http://h:99999/", "bad port"),
        ("http://h:x/", "bad port"),
        ("http://u@h/", "user info is not supported"),
        ("http://h/a b", "contains spaces or control characters"),
        ("http://[::1/", "unclosed `[` in host"),
    ] {
        assert_eq!(
            url.parse::<Target>(),
            Err(ParseError::Url {
                url: url.into(),
                reason
            }),
            "{url}"
        );
    }
}

#[test]
fn parses_durations_with_units() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
}

#[test]
fn rejects_durations_without_a_known_unit() {
    let err = |input: &str, reason| ParseError::Duration {
        input: input.into(),
        reason,
    };
    assert_eq!(
        parse_duration("10"),
        Err(err("10", "missing unit (ms, s, m)"))
    );
    assert_eq!(
        parse_duration("10d"),
        Err(err("10d", "unknown unit; use us, ms, s, m or h"))
    );
    assert_eq!(
        parse_duration("s"),
        Err(err("s", "expected a number followed by a unit (ms, s, m)"))
    );
    assert_eq!(parse_duration("1.2.3s"), Err(err("1.2.3s", "bad number")));
}

#[test]
fn parses_rates() {
    assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
    assert_eq!("1000".parse::<Rate>(), Ok(Rate::PerSecond(1000.0)));
    assert_eq!("0.5".parse::<Rate>(), Ok(Rate::PerSecond(0.5)));
    for bad in ["0", "-1", "inf", "NaN", "fast"] {
        assert_eq!(
            bad.parse::<Rate>(),
            Err(ParseError::Rate { input: bad.into() }),
            "{bad}"
        );
    }
}

#[test]
fn parses_headers() {
    assert_eq!(parse_header("x-a:  b c "), Ok(("x-a".into(), "b c".into())));
    assert!(parse_header("novalue").is_err());
    assert!(parse_header("bad name: v").is_err());
    assert!(parse_header(": v").is_err());
}
