use super::*;

fn header(names: &[&str], max_len: Option<usize>) -> Field {
    Field::RequestHeader {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        max_len,
    }
}

#[test]
fn envoy_operators_parse_between_literals() {
    let segments = parse("[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE%\n")
        .expect("valid format");
    assert_eq!(
        segments,
        vec![
            Segment::Literal("[".into()),
            Segment::Field(Field::StartTime),
            Segment::Literal("] \"".into()),
            Segment::Field(header(&[":method"], None)),
            Segment::Literal(" ".into()),
            Segment::Field(header(&["x-envoy-original-path", ":path"], None)),
            Segment::Literal(" ".into()),
            Segment::Field(Field::Protocol),
            Segment::Literal("\" ".into()),
            Segment::Field(Field::ResponseCode),
            Segment::Literal("\n".into()),
        ]
    );
}

#[test]
fn header_length_and_upstream_service_time() {
    assert_eq!(
        parse("%REQ(User-Agent):10%"),
        Ok(vec![Segment::Field(header(&["user-agent"], Some(10)))])
    );
    assert_eq!(
        parse("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
        Ok(vec![Segment::Field(Field::UpstreamServiceTime)])
    );
}

#[test]
fn errors_name_the_operator_and_its_place() {
    let e = parse("%REQ(:PATH)% %BOGUS% x").expect_err("unknown operator");
    assert_eq!((e.offset, e.len), (13, 7));
    assert!(e.message.contains("unknown operator %BOGUS%"), "{e}");
    assert!(
        e.message.contains("RESPONSE_CODE"),
        "lists what is served: {e}"
    );

    let e = parse("100% done").expect_err("lone %");
    assert_eq!(e.offset, 3);

    for (format, needle) in [
        ("%REQ%", "names a header"),
        ("%REQ()%", "not a header name"),
        ("%REQ(a b)%", "not a header name"),
        ("%REQ(A?B?C)%", "more than one alternative"),
        ("%REQ(A):0%", "length"),
        ("%REQ(A):x%", "length"),
        ("%REQ(A%", "without closing"),
        ("%DURATION(x)%", "takes no argument"),
        (
            "%RESP(CONTENT-TYPE)%",
            "only for X-ENVOY-UPSTREAM-SERVICE-TIME",
        ),
        ("%%", "empty operator"),
        ("%START_TIME(%Y)%", "without closing"),
    ] {
        let e = parse(format).expect_err(format);
        assert!(e.message.contains(needle), "{format}: {e}");
    }
}

#[test]
fn every_listed_operator_parses() {
    for operator in OPERATORS {
        let written = operator
            .replace("HEADER?ALTERNATIVE", "X-A?X-B")
            .replace("MAX_LENGTH", "8");
        assert!(parse(&format!("%{written}%")).is_ok(), "{written}");
    }
}

#[test]
fn json_keys_are_unique() {
    let fields = json_fields();
    let mut keys: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), fields.len());
}
