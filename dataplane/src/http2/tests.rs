use super::*;

fn parts(request: http::request::Builder) -> http::request::Parts {
    request.body(()).unwrap().into_parts().0
}

fn head_of(request: http::request::Builder, has_body: bool) -> (String, bool) {
    let (head, chunked) = http1_request_head(&parts(request), has_body).unwrap();
    (String::from_utf8(head).unwrap(), chunked)
}

#[test]
fn the_authority_becomes_host_and_cookie_crumbs_are_joined() {
    let request = Request::get("https://reviews:9080/a/b?c=d")
        .header("cookie", "a=1")
        .header("x-trace", "t")
        .header("cookie", "b=2");
    let (head, chunked) = head_of(request, false);
    assert_eq!(
        head,
        "GET /a/b?c=d HTTP/1.1\r\nhost: reviews:9080\r\nx-trace: t\r\ncookie: a=1; b=2\r\n\r\n"
    );
    assert!(!chunked);
}

#[test]
fn a_body_without_a_length_goes_chunked_and_one_with_a_length_keeps_it() {
    let (head, chunked) = head_of(Request::post("https://reviews/up"), true);
    assert!(chunked);
    assert!(
        head.ends_with("transfer-encoding: chunked\r\n\r\n"),
        "{head}"
    );
    let sized = Request::post("https://reviews/up").header("content-length", "5");
    let (head, chunked) = head_of(sized, true);
    assert!(!chunked);
    assert!(head.contains("content-length: 5\r\n") && !head.contains("transfer-encoding"));
}

#[test]
fn connection_specific_headers_and_expect_stay_behind() {
    let request = Request::put("https://reviews/")
        .header("te", "trailers")
        .header("expect", "100-continue")
        .header("content-length", "0");
    let (head, _) = head_of(request, false);
    assert_eq!(
        head,
        "PUT / HTTP/1.1\r\nhost: reviews\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn connect_is_not_bridged() {
    let connect = Request::connect("reviews:443");
    assert!(http1_request_head(&parts(connect), false).is_none());
}

#[test]
fn a_response_head_loses_its_connection_headers() {
    let raw = b"HTTP/1.1 201 Created\r\nConnection: close\r\nX-App: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    let response = h2_response(&head).unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-app"]);
}
