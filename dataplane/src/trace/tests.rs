use super::*;

fn header<'a>(name: &'a str, value: &'a str) -> Header<'a> {
    Header {
        name,
        value: value.as_bytes(),
    }
}

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;

#[test]
fn w3c_traceparent_is_read_with_its_sampled_flag() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        incoming(&[header("TraceParent", parent)]),
        Some(Incoming {
            trace_id: TRACE,
            parent: Some(0x00f0_67aa_0ba9_02b7),
            sampled: Some(true),
        })
    );
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_eq!(
        incoming(&[header("traceparent", unsampled)]).and_then(|i| i.sampled),
        Some(false)
    );
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f-00f067aa0ba902b7-01",
        "garbage",
    ] {
        assert_eq!(incoming(&[header("traceparent", bad)]), None, "{bad}");
    }
}

#[test]
fn b3_multi_and_single_headers_are_read() {
    let multi = [
        header("X-B3-TraceId", "a3ce929d0e0e4736"),
        header("X-B3-SpanId", "00f067aa0ba902b7"),
        header("X-B3-Sampled", "1"),
    ];
    assert_eq!(
        incoming(&multi),
        Some(Incoming {
            trace_id: 0xa3ce_929d_0e0e_4736,
            parent: Some(0x00f0_67aa_0ba9_02b7),
            sampled: Some(true),
        })
    );
    let undecided = [header("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736")];
    assert_eq!(incoming(&undecided).and_then(|i| i.sampled), None);
    let single = [header(
        "b3",
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    )];
    assert_eq!(
        incoming(&single),
        Some(Incoming {
            trace_id: TRACE,
            parent: Some(0x00f0_67aa_0ba9_02b7),
            sampled: Some(false),
        })
    );
    assert_eq!(incoming(&[header("b3", "0")]), None);
}

#[test]
fn the_callers_decision_wins_over_the_sampling_rate() {
    let decided = |sampled| Incoming {
        trace_id: TRACE,
        parent: Some(7),
        sampled: Some(sampled),
    };
    let span = sample(Some(decided(true)), 0).expect("sampled by the caller");
    assert_eq!((span.trace_id, span.parent), (TRACE, Some(7)));
    assert_ne!(span.span_id, 0);
    assert_eq!(sample(Some(decided(false)), 1_000_000), None);
    assert_eq!(sample(None, 0), None);
    let started = sample(None, 1_000_000).expect("every request sampled");
    assert_eq!(started.parent, None);
    assert_ne!(started.trace_id, 0);
}

#[test]
fn forwarded_heads_carry_this_hops_span_as_the_parent() {
    let mut head = b"GET / HTTP/1.1\r\nhost: reviews\r\nTraceparent: 00-x-y-01\r\nx-a: 1\r\nb3: 1-2\r\nX-B3-Sampled: 0\r\n\r\n".to_vec();
    let span = SpanContext {
        trace_id: TRACE,
        span_id: 0xabc,
        parent: Some(0x00f0_67aa_0ba9_02b7),
    };
    rewrite_headers(&mut head, &span);
    assert_eq!(
        String::from_utf8(head).expect("ASCII"),
        "GET / HTTP/1.1\r\nhost: reviews\r\nx-a: 1\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01\r\n\
         x-b3-traceid: 4bf92f3577b34da6a3ce929d0e0e4736\r\nx-b3-spanid: 0000000000000abc\r\n\
         x-b3-parentspanid: 00f067aa0ba902b7\r\nx-b3-sampled: 1\r\n\r\n"
    );
}

#[test]
fn request_ids_are_version_4_uuids() {
    let id = new_request_id();
    let text = std::str::from_utf8(&id).expect("ASCII");
    let groups: Vec<&str> = text.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(groups[2].starts_with('4'), "{text}");
    assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{text}");
    assert_ne!(new_request_id(), id);
}

#[test]
fn spans_render_for_zipkin_and_otlp() {
    let span = Span {
        context: SpanContext {
            trace_id: TRACE,
            span_id: 0xabc,
            parent: Some(0xdef),
        },
        kind: Kind::Client,
        name: "reviews.default.svc.cluster.local:9080/*",
        start: std::time::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_123),
        duration: Duration::from_micros(2_500),
        local_service: "productpage",
        method: "GET",
        url: "reviews:9080/r/1",
        status: 503,
        flags: "UF",
        request_id: "rid",
        upstream_cluster: Some("reviews/v1"),
        peer: None,
    };
    let mut out = Vec::new();
    render(Protocol::Zipkin, &span, &mut out);
    assert_eq!(out.pop(), Some(b','));
    let zipkin: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(zipkin["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(zipkin["id"], "0000000000000abc");
    assert_eq!(zipkin["parentId"], "0000000000000def");
    assert_eq!(zipkin["kind"], "CLIENT");
    assert_eq!(zipkin["timestamp"], 1_700_000_000_000_123u64);
    assert_eq!(zipkin["duration"], 2_500);
    assert_eq!(zipkin["localEndpoint"]["serviceName"], "productpage");
    assert_eq!(zipkin["tags"]["http.status_code"], "503");
    assert_eq!(zipkin["tags"]["error"], "true");

    let mut out = Vec::new();
    render(Protocol::Otlp, &span, &mut out);
    assert_eq!(out.pop(), Some(b','));
    let otlp: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(otlp["spanId"], "0000000000000abc");
    assert_eq!(otlp["parentSpanId"], "0000000000000def");
    assert_eq!(otlp["kind"], 3);
    assert_eq!(otlp["startTimeUnixNano"], "1700000000000123000");
    assert_eq!(otlp["endTimeUnixNano"], "1700000000002623000");
    assert_eq!(otlp["status"]["code"], 2);
}

/// The trace id alone, as the access log reads it: W3C first, then B3 multi, then single.
#[test]
fn trace_ids_come_from_w3c_or_b3() {
    let id = |headers: &[Header<'_>]| incoming(headers).map(|i| i.trace_id);
    let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        id(&[
            header("traceparent", w3c),
            header("x-b3-traceid", "a3ce929d0e0e4736")
        ]),
        Some(TRACE)
    );
    assert_eq!(
        id(&[header("x-b3-traceid", "a3ce929d0e0e4736")]),
        Some(0xa3ce_929d_0e0e_4736)
    );
    let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
    assert_eq!(
        id(&[header("b3", single)]),
        Some(0x80f1_98ee_5634_3ba8_64fe_8b2a_57d3_eff7)
    );
    assert_eq!(
        id(&[header("traceparent", "garbage"), header("b3", "xyz-1")]),
        None
    );
}
