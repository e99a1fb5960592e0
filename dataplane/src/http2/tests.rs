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
    assert_eq!(
        http1_request_head(&parts(connect), false).unwrap_err(),
        StatusCode::NOT_IMPLEMENTED
    );
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

#[test]
fn repeats_of_one_content_length_go_once() {
    let request = Request::post("https://reviews/up")
        .header("content-length", "5")
        .header("content-length", "5");
    let (head, chunked) = head_of(request, true);
    assert!(!chunked);
    assert_eq!(head.matches("content-length").count(), 1, "{head}");
}

#[test]
fn a_transfer_coding_other_than_chunked_is_not_relayed() {
    for (coding, relayed) in [
        ("chunked", true),
        ("Chunked", true),
        ("gzip", false),
        ("gzip, chunked", false),
    ] {
        let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_response(raw.as_bytes(), &mut headers, "GET")
            .unwrap()
            .unwrap();
        assert_eq!(h2_response(&head).is_some(), relayed, "{coding}");
    }
}

#[test]
fn the_idle_timer_runs_from_the_last_stream_end() {
    let idle = Duration::from_secs(60);
    let opened = Instant::now();
    let streams = Streams::new(opened);
    assert_eq!(streams.idle_deadline(idle), Some(opened + idle));
    streams.started();
    streams.started();
    assert_eq!(streams.idle_deadline(idle), None);
    let later = opened + Duration::from_secs(90);
    streams.ended(StreamEnd::Served, later);
    assert_eq!(streams.idle_deadline(idle), None, "one stream still runs");
    let last = later + Duration::from_secs(5);
    streams.ended(StreamEnd::Served, last);
    assert_eq!(streams.idle_deadline(idle), Some(last + idle));
}

#[test]
fn a_connection_resetting_most_of_its_streams_is_judged_after_enough_of_them() {
    let now = Instant::now();
    let streams = Streams::new(now);
    let end = |how| {
        streams.started();
        streams.ended(how, now);
    };
    // A few cancellations, however large their share, are a client changing its mind.
    for _ in 0..PREMATURE_RESET_WINDOW / 2 - 1 {
        end(StreamEnd::PrematureReset);
    }
    assert!(!streams.resets_too_many());
    // Mostly served: resets are fewer than half.
    for _ in 0..PREMATURE_RESET_WINDOW {
        end(StreamEnd::Served);
    }
    end(StreamEnd::PrematureReset);
    assert!(!streams.resets_too_many());
    // Resets catch up with the served streams.
    while streams.premature_resets.get() * 2 < streams.ended.get() {
        end(StreamEnd::PrematureReset);
    }
    assert!(streams.resets_too_many());
}
