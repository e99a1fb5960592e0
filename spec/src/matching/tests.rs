use super::*;
use crate::{HeaderMatch, QueryMatch};

/// A stand-in for a regex engine: matches any of the listed whole values.
struct OneOf(Vec<String>);

impl Pattern for OneOf {
    fn is_match(&self, value: &[u8]) -> bool {
        self.0.iter().any(|v| v.as_bytes() == value)
    }
}

#[derive(Default)]
struct Req {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

impl Request for Req {
    fn path(&self) -> &str {
        self.path
    }
    fn method(&self) -> &str {
        self.method
    }
    fn query(&self) -> &str {
        self.query
    }
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (*n, v.as_bytes()))
    }
}

fn get(path: &'static str) -> Req {
    Req {
        method: "GET",
        path,
        ..Req::default()
    }
}

fn compiled(m: RequestMatch) -> Conditions<OneOf> {
    Conditions::compile(&m, |pattern, _| {
        Ok::<_, ()>(OneOf(pattern.split('|').map(str::to_owned).collect()))
    })
    .expect("compiles")
}

fn path(p: PathMatch) -> Conditions<OneOf> {
    compiled(RequestMatch {
        path: Some(p),
        ..RequestMatch::default()
    })
}

#[test]
fn path_conditions_report_what_they_covered() {
    let prefix = path(PathMatch::Prefix("/api".into()));
    assert_eq!(prefix.holds(&get("/api/x")), Some(4));
    assert_eq!(prefix.holds(&get("/ap")), None);
    let exact = path(PathMatch::Exact("/a".into()));
    assert_eq!(exact.holds(&get("/a")), Some(2));
    assert_eq!(exact.holds(&get("/a/")), None);
    let regex = path(PathMatch::Regex("/users/1|/users/2".into()));
    assert_eq!(regex.holds(&get("/users/2")), Some(8), "the whole path");
    assert_eq!(regex.holds(&get("/users/3")), None);
}

#[test]
fn without_a_path_condition_or_any_alternative_the_leading_slash_is_covered() {
    let by_method = compiled(RequestMatch {
        method: Some(ValueMatch::Exact("GET".into())),
        ..RequestMatch::default()
    });
    assert_eq!(by_method.holds(&get("/a/b")), Some(1));
    assert_eq!(rule_holds::<OneOf>(&[], &get("/a/b")), Some(1));
    assert_eq!(rule_holds::<OneOf>(&[], &get("*")), Some(0));
}

#[test]
fn a_rule_holds_by_its_first_holding_alternative() {
    let alternatives = [
        path(PathMatch::Prefix("/a".into())),
        path(PathMatch::Prefix("/".into())),
    ];
    assert_eq!(rule_holds(&alternatives, &get("/a/b")), Some(2));
    assert_eq!(rule_holds(&alternatives, &get("/b")), Some(1));
}

#[test]
fn headers_compare_names_without_case_and_any_value_counts() {
    let header = |value: ValueMatch| {
        compiled(RequestMatch {
            headers: vec![HeaderMatch {
                name: "end-user".into(),
                value,
            }],
            ..RequestMatch::default()
        })
    };
    let with = |headers: Vec<(&'static str, &'static str)>| Req {
        headers,
        ..get("/")
    };
    let jason = header(ValueMatch::Exact("jason".into()));
    assert!(jason.holds(&with(vec![("End-User", "jason")])).is_some());
    assert!(jason
        .holds(&with(vec![("end-user", "x"), ("end-user", "jason")]))
        .is_some());
    assert!(jason.holds(&with(vec![("end-user", "jasonx")])).is_none());
    let prefix = header(ValueMatch::Prefix("ja".into()));
    assert!(prefix.holds(&with(vec![("end-user", "jane")])).is_some());
    let regex = header(ValueMatch::Regex("a|b".into()));
    assert!(regex.holds(&with(vec![("end-user", "b")])).is_some());
    assert!(regex.holds(&with(vec![("end-user", "ab")])).is_none());
    let present = header(ValueMatch::Present);
    assert!(present.holds(&with(vec![("end-user", "")])).is_some());
    assert!(present.holds(&with(vec![])).is_none());
    let absent = header(ValueMatch::Absent);
    assert!(absent.holds(&with(vec![])).is_some());
    assert!(absent.holds(&with(vec![("end-user", "")])).is_none());
}

#[test]
fn methods_are_case_sensitive() {
    let post = compiled(RequestMatch {
        method: Some(ValueMatch::Exact("POST".into())),
        ..RequestMatch::default()
    });
    let with = |method| Req { method, ..get("/") };
    assert!(post.holds(&with("POST")).is_some());
    assert!(post.holds(&with("post")).is_none());
}

#[test]
fn query_parameters_compare_percent_decoded() {
    let param = |name: &str, value: ValueMatch| {
        compiled(RequestMatch {
            query: vec![QueryMatch {
                name: name.into(),
                value,
            }],
            ..RequestMatch::default()
        })
    };
    let with = |query| Req { query, ..get("/") };
    let user = param("user", ValueMatch::Exact("jane doe".into()));
    assert!(user.holds(&with("us%65r=jane%20doe")).is_some());
    assert!(user.holds(&with("user=jane+doe")).is_none(), "+ stays +");
    assert!(user.holds(&with("user=x&user=jane%20doe")).is_some());
    let debug = param("debug", ValueMatch::Present);
    assert!(debug.holds(&with("debug")).is_some());
    assert!(debug.holds(&with("")).is_none());
    let skip = param("skip", ValueMatch::Absent);
    assert!(skip.holds(&with("a=1")).is_some());
    assert!(skip.holds(&with("skip=")).is_none());
}

#[test]
fn a_long_escaped_value_is_decoded_whole() {
    let long: &'static str = Box::leak(format!("v={}%41", "a".repeat(STACK_DECODE_BYTES)).into());
    let want = format!("{}A", "a".repeat(STACK_DECODE_BYTES));
    let m = compiled(RequestMatch {
        query: vec![QueryMatch {
            name: "v".into(),
            value: ValueMatch::Exact(want),
        }],
        ..RequestMatch::default()
    });
    assert!(m
        .holds(&Req {
            query: long,
            ..get("/")
        })
        .is_some());
}

#[test]
fn every_condition_must_hold() {
    let m = compiled(RequestMatch {
        path: Some(PathMatch::Prefix("/api".into())),
        method: Some(ValueMatch::Exact("POST".into())),
        headers: vec![HeaderMatch {
            name: "x-a".into(),
            value: ValueMatch::Present,
        }],
        query: vec![QueryMatch {
            name: "v".into(),
            value: ValueMatch::Exact("2".into()),
        }],
    });
    let request = |method, path, query, headers: Vec<_>| Req {
        method,
        path,
        query,
        headers,
    };
    let h = || vec![("x-a", "1")];
    assert_eq!(m.holds(&request("POST", "/api", "v=2", h())), Some(4));
    assert!(m.holds(&request("GET", "/api", "v=2", h())).is_none());
    assert!(m.holds(&request("POST", "/x", "v=2", h())).is_none());
    assert!(m.holds(&request("POST", "/api", "v=3", h())).is_none());
    assert!(m.holds(&request("POST", "/api", "v=2", vec![])).is_none());
}

#[test]
fn a_regex_that_does_not_compile_is_the_compilers_error() {
    let m = RequestMatch {
        headers: vec![HeaderMatch {
            name: "x-a".into(),
            value: ValueMatch::Regex("(".into()),
        }],
        ..RequestMatch::default()
    };
    let error = Conditions::<OneOf>::compile(&m, |p, what| Err(format!("{what}: {p}")));
    assert_eq!(error.err().as_deref(), Some("header \"x-a\": ("));
}
