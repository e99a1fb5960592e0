use crate::{PathMatch, RequestMatch, RouteRule, RouteTable};

fn rule(paths: &[Option<PathMatch>]) -> RouteRule {
    RouteRule {
        matches: paths
            .iter()
            .map(|path| RequestMatch {
                path: path.clone(),
                ..RequestMatch::default()
            })
            .collect(),
        ..RouteRule::default()
    }
}

fn table(rules: Vec<RouteRule>) -> RouteTable {
    let mut table = RouteTable {
        service: 0,
        rules,
        index: Default::default(),
    };
    table.index = table.path_index();
    table
}

/// Rules whose path conditions admit `path`, found by trying every rule.
fn brute_force(table: &RouteTable, path: &str) -> Vec<u32> {
    (0..table.rules.len() as u32)
        .filter(|&i| {
            let matches = &table.rules[i as usize].matches;
            matches.is_empty()
                || matches.iter().any(|m| match &m.path {
                    Some(PathMatch::Exact(p)) => path == p,
                    Some(PathMatch::Prefix(p)) => path.starts_with(p.as_str()),
                    Some(PathMatch::Regex(_)) | None => true,
                })
        })
        .collect()
}

fn candidates(table: &RouteTable, path: &str) -> Vec<u32> {
    table
        .index
        .candidate_lists::<16>(path)
        .expect("few enough lists")
        .collect()
}

#[test]
fn nested_prefixes_get_their_enclosing_prefix_as_parent() {
    let t = table(vec![
        rule(&[Some(PathMatch::Prefix("/a".into()))]),
        rule(&[Some(PathMatch::Prefix("/a/b".into()))]),
        rule(&[Some(PathMatch::Prefix("/a/bc".into()))]),
        rule(&[Some(PathMatch::Prefix("/a/c".into()))]),
        rule(&[Some(PathMatch::Prefix("/b".into()))]),
    ]);
    let parents: Vec<(&str, Option<u32>)> = t
        .index
        .prefixes
        .iter()
        .map(|e| (e.prefix.as_str(), e.parent))
        .collect();
    assert_eq!(
        parents,
        [
            ("/a", None),
            ("/a/b", Some(0)),
            ("/a/bc", Some(1)),
            ("/a/c", Some(0)),
            ("/b", None)
        ]
    );
    assert_eq!(candidates(&t, "/a/bz"), [0, 1]);
    assert_eq!(candidates(&t, "/a/bcd"), [0, 1, 2]);
    assert_eq!(candidates(&t, "/a/d"), [0]);
    assert_eq!(candidates(&t, "/"), Vec::<u32>::new());
}

#[test]
fn a_rule_under_several_lists_is_tried_once_and_in_order() {
    let t = table(vec![
        rule(&[Some(PathMatch::Exact("/x".into()))]),
        rule(&[
            Some(PathMatch::Prefix("/x".into())),
            Some(PathMatch::Exact("/x".into())),
            None,
        ]),
        rule(&[]),
        rule(&[Some(PathMatch::Regex("/y.*".into()))]),
    ]);
    assert_eq!(candidates(&t, "/x"), [0, 1, 2, 3]);
    assert_eq!(candidates(&t, "/q"), [1, 2, 3]);
}

#[test]
fn candidates_equal_brute_force_on_generated_tables() {
    // A fixed pseudo-random sequence (xorshift) so the test is deterministic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let alphabet = ["/", "a", "b", "ab", "/a", "/b"];
    let word = |next: &mut dyn FnMut(u64) -> u64| {
        let mut s = String::from("/");
        for _ in 0..next(4) {
            s.push_str(alphabet[next(alphabet.len() as u64) as usize]);
        }
        s
    };
    for _ in 0..200 {
        let rules = (0..next(12) + 1)
            .map(|_| {
                let paths: Vec<Option<PathMatch>> = (0..next(3))
                    .map(|_| match next(4) {
                        0 => Some(PathMatch::Exact(word(&mut next))),
                        1 | 2 => Some(PathMatch::Prefix(word(&mut next))),
                        _ => None,
                    })
                    .collect();
                rule(&paths)
            })
            .collect();
        let t = table(rules);
        for _ in 0..20 {
            let path = word(&mut next);
            assert_eq!(
                candidates(&t, &path),
                brute_force(&t, &path),
                "{path} {t:?}"
            );
        }
    }
}

#[test]
fn too_many_lists_is_none() {
    let t = table(vec![
        rule(&[Some(PathMatch::Prefix("/".into()))]),
        rule(&[Some(PathMatch::Prefix("/a".into()))]),
        rule(&[Some(PathMatch::Prefix("/ab".into()))]),
    ]);
    assert!(t.index.candidate_lists::<2>("/abc").is_none());
    assert_eq!(candidates(&t, "/abc"), [0, 1, 2]);
}
