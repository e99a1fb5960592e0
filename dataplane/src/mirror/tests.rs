use super::*;

fn shadowed(forwarded: &str) -> (String, usize) {
    let mut out = Vec::new();
    let head_len = shadow_head(forwarded.as_bytes(), &mut out);
    (String::from_utf8(out).unwrap(), head_len)
}

#[test]
fn share_selection_follows_the_draw() {
    assert!(!selected(0, 0));
    assert!(!selected(0, 999_999));
    assert!(selected(1_000_000, 0));
    assert!(selected(1_000_000, 999_999));
    assert!(selected(250_000, 0));
    assert!(selected(250_000, 249_999));
    assert!(!selected(250_000, 250_000));
    let picked = (0..1_000_000).filter(|&d| selected(10_000, d)).count();
    assert_eq!(picked, 10_000);
}

#[test]
fn shadow_host_keeps_the_port() {
    let host = |h: &str| {
        let mut out = Vec::new();
        shadow_host(h.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(host("reviews"), "reviews-shadow");
    assert_eq!(host("reviews:9080"), "reviews-shadow:9080");
    assert_eq!(host("[::1]:80"), "[::1]-shadow:80");
    assert_eq!(host("[::1]"), "[::1]-shadow");
    assert_eq!(host(""), "-shadow");
}

#[test]
fn shadow_head_rewrites_only_the_host_header() {
    let head = "GET /a HTTP/1.1\r\nx-host: keep\r\nHost:  reviews:9080 \r\naccept: */*\r\n\r\n";
    let (out, head_len) = shadowed(head);
    assert_eq!(
        out,
        "GET /a HTTP/1.1\r\nx-host: keep\r\nHost:  reviews-shadow:9080 \r\naccept: */*\r\n\r\n"
    );
    assert_eq!(head_len, out.len());
}

#[test]
fn shadow_head_keeps_a_coalesced_body_after_the_head() {
    let forwarded = "POST /p HTTP/1.1\r\nhost: web\r\ncontent-length: 14\r\n\r\nhost: not-me\r\n";
    let (out, head_len) = shadowed(forwarded);
    assert_eq!(
        out,
        "POST /p HTTP/1.1\r\nhost: web-shadow\r\ncontent-length: 14\r\n\r\nhost: not-me\r\n"
    );
    assert_eq!(&out[head_len..], "host: not-me\r\n");
}

#[test]
fn shadow_head_without_a_host_is_copied_as_is() {
    let head = "GET / HTTP/1.0\r\naccept: */*\r\n\r\n";
    assert_eq!(shadowed(head), (head.to_owned(), head.len()));
}
