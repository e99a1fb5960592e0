use std::collections::BTreeMap;

use super::*;
use crate::*;

fn sample() -> Snapshot {
    let labels = |v: &str| BTreeMap::from([("version".to_owned(), v.to_owned())]);
    let mut snapshot = Snapshot {
        services: vec![Service {
            identities: Default::default(),
            addresses: Vec::new(),
            policy: Default::default(),
            name: "reviews".into(),
            namespace: "default".into(),
            ports: vec![ServicePort {
                number: 9080,
                protocol: Protocol::Http,
            }],
            endpoints: vec![
                Endpoint {
                    address: "127.0.0.1:9081".parse().unwrap(),
                    labels: labels("v1"),
                    weight: 1,
                },
                Endpoint {
                    address: "127.0.0.1:9082".parse().unwrap(),
                    labels: labels("v2"),
                    weight: 1,
                },
            ],
            subsets: vec![
                Subset {
                    policy: Default::default(),
                    name: "v1".into(),
                    selector: labels("v1"),
                    endpoints: vec![0],
                },
                Subset {
                    policy: Default::default(),
                    name: "v2".into(),
                    selector: labels("v2"),
                    endpoints: vec![1],
                },
            ],
        }],
        routes: vec![RouteTable {
            index: Default::default(),
            service: 0,
            rules: vec![RouteRule {
                timeout_ms: Default::default(),
                retries: Default::default(),
                fault: Default::default(),
                headers: Default::default(),
                rewrite: Default::default(),
                redirect: Default::default(),
                mirror: Default::default(),
                rate_limit: Default::default(),
                name: "split".into(),
                matches: vec![RequestMatch {
                    method: Default::default(),
                    query: Default::default(),
                    path: Some(PathMatch::Prefix("/".into())),
                    headers: vec![HeaderMatch {
                        name: "x-canary".into(),
                        value: crate::ValueMatch::Exact("1".into()),
                    }],
                }],
                destinations: vec![
                    WeightedDestination {
                        service: 0,
                        subset: Some(0),
                        weight: 90,
                    },
                    WeightedDestination {
                        service: 0,
                        subset: Some(1),
                        weight: 10,
                    },
                ],
                source: SourceLocation {
                    file: "mesh.mesh".into(),
                    line: 3,
                    column: 5,
                },
            }],
        }],
        hosts: vec![HostEntry {
            host: "reviews".into(),
            namespace: Some("default".into()),
            route_table: 0,
        }],
        workloads: vec![],
        unserved: Vec::new(),
        telemetry: Default::default(),
    };
    snapshot.index_paths();
    snapshot
}

#[test]
fn round_trips_a_snapshot() {
    let bytes = encode(&sample());
    let (decoded, hash) = decode(&bytes).unwrap();
    assert_eq!(decoded, sample());
    assert_eq!(hash.len(), 64);
}

#[test]
fn encoding_is_deterministic() {
    assert_eq!(encode(&sample()), encode(&sample()));
}

#[test]
fn rejects_truncated_header() {
    let bytes = encode(&sample());
    assert_eq!(
        decode(&bytes[..20]),
        Err(DecodeError::TruncatedHeader { len: 20 })
    );
    assert_eq!(
        decode(&bytes[..3]),
        Err(DecodeError::TruncatedHeader { len: 3 })
    );
}

#[test]
fn rejects_truncated_payload() {
    let bytes = encode(&sample());
    let cut = bytes.len() - 7;
    let expected = (bytes.len() - HEADER_LEN) as u64;
    assert_eq!(
        decode(&bytes[..cut]),
        Err(DecodeError::TruncatedPayload {
            expected,
            actual: expected - 7
        })
    );
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = encode(&sample());
    bytes.extend_from_slice(b"xx");
    assert_eq!(decode(&bytes), Err(DecodeError::TrailingBytes { extra: 2 }));
}

#[test]
fn rejects_corrupted_payload_by_hash() {
    let mut bytes = encode(&sample());
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::HashMismatch { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("corrupted snapshot: content hash mismatch"));
}

#[test]
fn rejects_foreign_file() {
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\n\r\n and more bytes to pass the header length"),
        Err(DecodeError::BadMagic)
    );
}

#[test]
fn rejects_newer_version_with_upgrade_hint() {
    let mut bytes = encode(&sample());
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::NewerVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    assert!(err.to_string().contains("upgrade meshd"));
}

#[test]
fn rejects_older_version() {
    let mut bytes = encode(&sample());
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::OlderVersion {
            found: 0,
            supported: FORMAT_VERSION
        })
    );
}

#[test]
fn rejects_payload_that_breaks_an_invariant() {
    let mut snapshot = sample();
    snapshot.routes[0].rules[0].destinations[1].weight = 20;
    let err = decode(&encode(&snapshot)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Invalid(InvalidSnapshot::WeightSum {
            rule: "split".into(),
            sum: 110
        })
    );
}

#[test]
fn rejects_out_of_range_subset_index() {
    let mut snapshot = sample();
    snapshot.routes[0].rules[0].destinations[0].subset = Some(7);
    assert_eq!(
        snapshot.validate(),
        Err(InvalidSnapshot::IndexOutOfRange {
            what: "destination subset",
            index: 7,
            len: 2
        })
    );
}

#[test]
fn serializes_to_readable_json() {
    let json = serde_json::to_string(&sample()).unwrap();
    assert!(json.contains("\"address\":\"127.0.0.1:9081\""), "{json}");
}

#[test]
fn one_workload_name_is_unique_per_namespace_and_found_by_namespace() {
    let workload = |name: &str, namespace: &str| Workload {
        name: name.into(),
        namespace: namespace.into(),
        identity: None,
        inbound: Vec::new(),
        outbound: Vec::new(),
        serves: Vec::new(),
        authorization: Vec::new(),
        jwt: Vec::new(),
        telemetry: Telemetry::default(),
        labels: Default::default(),
        outbound_traffic: Default::default(),
    };
    let mut snapshot = Snapshot {
        workloads: vec![
            workload("curl", "foo"),
            workload("httpbin", "bar"),
            workload("httpbin", "foo"),
        ],
        ..Snapshot::default()
    };
    snapshot.validate().expect("one name in two namespaces");
    assert_eq!(
        snapshot.workload("curl").map(|w| &*w.namespace),
        Some("foo")
    );
    assert_eq!(
        snapshot.find_workload("httpbin").err(),
        Some(WorkloadLookupError::Ambiguous {
            name: "httpbin".into(),
            namespaces: vec!["bar".into(), "foo".into()],
        })
    );
    let unknown = snapshot
        .find_workload("baz/httpbin")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        unknown.as_deref(),
        Some("unknown workload `baz/httpbin`; the snapshot has: curl, bar/httpbin, foo/httpbin")
    );
    let found = snapshot.workload("foo/httpbin").expect("qualified");
    assert_eq!(found.namespace, "foo");
    assert_eq!(snapshot.workload_query(found), "foo/httpbin");
    assert_eq!(snapshot.workload_query(&snapshot.workloads[0]), "curl");
    assert!(snapshot.workload("baz/httpbin").is_none());
    assert!(snapshot.workload("nginx").is_none());

    snapshot.workloads.push(workload("httpbin", "foo"));
    assert!(matches!(
        snapshot.validate(),
        Err(InvalidSnapshot::Unsorted {
            what: "workloads",
            ..
        })
    ));
}
