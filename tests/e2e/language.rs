//! The whole chain for the route features of the language: DSL text, the real meshc, the real
//! meshd, real upstreams. Each test writes the construct as docs/dsl.md documents it.

use ringmesh_tests::*;

/// `reviews` with v1 and v2: the rules under test, then a catch-all to v1.
fn reviews_with_rules(v1: &Upstream, v2: &Upstream, rules: &str) -> String {
    reviews_config(
        v1,
        v2,
        &format!("{rules}  rule stable {{\n    to reviews/v1\n  }}\n"),
    )
}

fn method_query_and_header_forms_route(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let rules = r#"
  rule by_method { match method DELETE to reviews/v2 }
  rule by_query { match path regex "/items/[0-9]+" and query "debug" = "1" to reviews/v2 }
  rule by_prefix { match header "x-user" prefix "test-" to reviews/v2 }
  rule by_presence { match header "x-debug" present and header "x-legacy" absent to reviews/v2 }
"#;
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &reviews_with_rules(&v1, &v2, rules), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let mut upstream = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let response = client
            .request(method, "reviews", path, headers, b"")
            .unwrap();
        assert_eq!(response.status, 200, "{method} {path} {headers:?}");
        response.text()
    };
    assert_eq!(upstream("DELETE", "/", &[]), "v2");
    assert_eq!(upstream("GET", "/", &[]), "v1");
    assert_eq!(upstream("GET", "/items/42?debug=1", &[]), "v2");
    assert_eq!(upstream("GET", "/items/42?debug=0", &[]), "v1");
    assert_eq!(upstream("GET", "/items/x?debug=1", &[]), "v1");
    assert_eq!(upstream("GET", "/", &[("x-user", "test-7")]), "v2");
    assert_eq!(upstream("GET", "/", &[("x-user", "prod-7")]), "v1");
    assert_eq!(upstream("GET", "/", &[("x-debug", "")]), "v2");
    assert_eq!(
        upstream("GET", "/", &[("x-debug", "1"), ("x-legacy", "1")]),
        "v1"
    );
}

fn header_edits_reach_the_upstream_and_the_client(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let rules = r#"
  rule edited {
    match path exact "/headers"
    to reviews/v1
    request_headers { set "x-mesh" = "ringmesh" remove "x-secret" }
    response_headers { add "x-served-by" = "edge" }
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &reviews_with_rules(&v1, &v2, rules), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client
        .get(
            "reviews",
            "/headers",
            &[("x-secret", "hunter2"), ("x-mesh", "spoofed")],
        )
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = response.text().to_ascii_lowercase();
    assert!(seen.contains("x-mesh: ringmesh"), "upstream saw:\n{seen}");
    assert!(!seen.contains("spoofed"), "upstream saw:\n{seen}");
    assert!(!seen.contains("x-secret"), "upstream saw:\n{seen}");
    assert_eq!(response.header("x-served-by"), Some("edge"));
}

fn redirect_and_fault_abort_answer_without_the_upstream(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let rules = r#"
  rule moved {
    match path prefix "/old"
    redirect { scheme "https" host "new.example.com" path "/new" code 308 }
  }
  rule broken {
    match path prefix "/broken"
    to reviews/v2
    fault { abort 503 100% }
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &reviews_with_rules(&v1, &v2, rules), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let moved = client.get("reviews", "/old/page?x=1", &[]).unwrap();
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.header("location"),
        Some("https://new.example.com/new?x=1")
    );
    let broken = client.get("reviews", "/broken", &[]).unwrap();
    assert_eq!(broken.status, 503);
    assert_eq!(
        v1.requests() + v2.requests(),
        0,
        "an upstream was contacted"
    );
    assert_eq!(client.get("reviews", "/", &[]).unwrap().text(), "v1");
}

on_both_drivers!(
    method_query_and_header_forms_route,
    header_edits_reach_the_upstream_and_the_client,
    redirect_and_fault_abort_answer_without_the_upstream,
);
