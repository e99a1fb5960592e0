use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::json;

use super::*;
use crate::http1::head::{parse_request, MAX_HEADERS};

const ISSUER: &str = "https://auth.example.com";
const NOW: u64 = 1_800_000_000;

/// An ES256 signer and its JWK.
struct Signer {
    pair: EcdsaKeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self { pair, kid }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
            "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..]),
        })
    }

    fn sign(&self, header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", BASE64URL.encode(signature.as_ref()))
    }

    fn token(&self, claims: Value) -> String {
        self.sign(
            json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

fn verifier(audiences: &[&str], keys: Vec<Value>) -> Verifier {
    let jwks = json!({ "keys": keys }).to_string();
    Verifier {
        issuers: vec![Issuer {
            issuer: ISSUER.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            jwks_file: PathBuf::from("jwks.json"),
            keys: parse_jwks(&jwks).unwrap(),
        }],
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "alice", "aud": ["reviews", "ratings"], "azp": "web",
        "exp": NOW + 300, "nbf": NOW - 10,
        "groups": ["dev", "ops"], "team": {"name": "core", "level": 3},
    })
}

#[test]
fn an_es256_token_verifies_and_yields_its_facts() {
    let signer = Signer::new("k1");
    let facts = verifier(&["reviews"], vec![signer.jwk()])
        .verify(&signer.token(claims()), NOW)
        .unwrap();
    assert_eq!(
        facts.principal.as_deref(),
        Some("https://auth.example.com/alice")
    );
    assert_eq!(facts.audiences, ["reviews", "ratings"]);
    assert_eq!(facts.presenter.as_deref(), Some("web"));
    let claim = |path: &[&str]| {
        facts
            .claims
            .iter()
            .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(claim(&["groups"]).unwrap(), ["dev", "ops"]);
    assert_eq!(claim(&["team", "name"]).unwrap(), ["core"]);
    assert_eq!(claim(&["team", "level"]), None, "only strings count");
}

#[test]
fn an_ed25519_token_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "x": BASE64URL.encode(pair.public_key().as_ref())
    });
    let signed = format!(
        "{}.{}",
        BASE64URL.encode(json!({"alg": "EdDSA"}).to_string()),
        BASE64URL.encode(claims().to_string())
    );
    let token = format!(
        "{signed}.{}",
        BASE64URL.encode(pair.sign(signed.as_bytes()).as_ref())
    );
    assert!(verifier(&[], vec![jwk]).verify(&token, NOW).is_ok());
}

#[test]
fn expiry_and_not_before_allow_the_clock_skew_and_no_more() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let with = |name: &str, at: u64| {
        let mut c = claims();
        c[name] = json!(at);
        signer.token(c)
    };
    let skew = CLOCK_SKEW_SECS;
    assert!(v.verify(&with("exp", NOW - skew), NOW).is_ok());
    assert_eq!(
        v.verify(&with("exp", NOW - skew - 1), NOW),
        Err(Rejection::Expired)
    );
    assert!(v.verify(&with("nbf", NOW + skew), NOW).is_ok());
    assert_eq!(
        v.verify(&with("nbf", NOW + skew + 1), NOW),
        Err(Rejection::NotYetValid)
    );
    let mut fractional = claims();
    fractional["exp"] = json!((NOW - skew) as f64 - 0.5);
    assert_eq!(
        v.verify(&signer.token(fractional), NOW),
        Err(Rejection::Expired)
    );
}

#[test]
fn audiences_must_overlap_unless_the_rule_lists_none() {
    let signer = Signer::new("k1");
    let token = signer.token(claims());
    assert_eq!(
        verifier(&["billing"], vec![signer.jwk()]).verify(&token, NOW),
        Err(Rejection::Audience)
    );
    assert!(verifier(&["ratings"], vec![signer.jwk()])
        .verify(&token, NOW)
        .is_ok());
    let mut single = claims();
    single["aud"] = json!("ratings");
    assert!(verifier(&["ratings"], vec![signer.jwk()])
        .verify(&signer.token(single), NOW)
        .is_ok());
    let mut none = claims();
    none.as_object_mut().unwrap().remove("aud");
    let token = signer.token(none);
    assert!(verifier(&[], vec![signer.jwk()])
        .verify(&token, NOW)
        .is_ok());
    assert_eq!(
        verifier(&["ratings"], vec![signer.jwk()]).verify(&token, NOW),
        Err(Rejection::Audience)
    );
}

#[test]
fn forged_tampered_and_foreign_tokens_are_refused() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let token = signer.token(claims());

    // Another key with the same kid: the signature does not verify.
    let forger = Signer::new("k1");
    assert_eq!(
        v.verify(&forger.token(claims()), NOW),
        Err(Rejection::BadSignature)
    );
    // The payload changed after signing.
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut elevated = claims();
    elevated["sub"] = json!("admin");
    let tampered = format!(
        "{head}.{}.{signature}",
        BASE64URL.encode(elevated.to_string())
    );
    assert_eq!(v.verify(&tampered, NOW), Err(Rejection::BadSignature));
    // A kid the JWKS does not hold.
    let other = Signer::new("k2");
    assert_eq!(v.verify(&other.token(claims()), NOW), Err(Rejection::NoKey));
    // Another issuer.
    let mut foreign = claims();
    foreign["iss"] = json!("https://evil.example.com");
    assert_eq!(
        v.verify(&signer.token(foreign), NOW),
        Err(Rejection::UnknownIssuer("https://evil.example.com".into()))
    );
    // `none` and HMAC (which would take the public key as a shared secret) are never accepted.
    for alg in ["none", "HS256"] {
        let unsigned = format!(
            "{}.{}.",
            BASE64URL.encode(json!({ "alg": alg }).to_string()),
            BASE64URL.encode(claims().to_string())
        );
        assert_eq!(
            v.verify(&unsigned, NOW),
            Err(Rejection::UnsupportedAlg(alg.into()))
        );
    }
    // An ES256 token against a key pinned to another algorithm.
    let mut pinned = signer.jwk();
    pinned["alg"] = json!("ES384");
    assert_eq!(
        verifier(&[], vec![pinned]).verify(&token, NOW),
        Err(Rejection::NoKey)
    );
}

#[test]
fn malformed_tokens_say_what_is_wrong() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    for bad in ["abc", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.sig"] {
        assert!(
            matches!(v.verify(bad, NOW), Err(Rejection::Malformed(_))),
            "{bad}: {:?}",
            v.verify(bad, NOW)
        );
    }
    let mut no_iss = claims();
    no_iss.as_object_mut().unwrap().remove("iss");
    let err = v.verify(&signer.token(no_iss), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the token is malformed: the payload has no string `iss`"
    );
}

#[test]
fn jwks_parsing_keeps_signing_keys_and_explains_an_unusable_file() {
    let signer = Signer::new("k1");
    let mut encryption = signer.jwk();
    encryption["use"] = json!("enc");
    let secret = json!({"kty": "oct", "k": "c2VjcmV0"});
    let jwks = json!({ "keys": [encryption, signer.jwk()] }).to_string();
    assert_eq!(parse_jwks(&jwks).unwrap().len(), 1);
    // A bare JWK is a one-key set.
    assert_eq!(parse_jwks(&signer.jwk().to_string()).unwrap().len(), 1);

    let err = parse_jwks(&json!({ "keys": [secret] }).to_string()).unwrap_err();
    assert!(
        err.contains("no usable key: key 0: unsupported key type Some(\"oct\")"),
        "{err}"
    );
    let mut short = signer.jwk();
    short["x"] = json!("AAAA");
    let err = parse_jwks(&json!({ "keys": [short] }).to_string()).unwrap_err();
    assert!(err.contains("must be 32 bytes each"), "{err}");
    assert!(parse_jwks("{}").unwrap_err().contains("expected a JWKS"));
    assert!(parse_jwks("not json").unwrap_err().starts_with("not JSON"));
}

#[test]
fn rsa_integers_lose_leading_zero_bytes() {
    assert_eq!(strip_leading_zeros(vec![0, 0, 1, 2]), [1, 2]);
    assert_eq!(strip_leading_zeros(vec![0]), [0]);
    assert_eq!(strip_leading_zeros(vec![1, 0]), [1, 0]);
}

#[test]
fn loading_resolves_relative_paths_and_names_a_missing_file() {
    let dir = std::env::temp_dir().join(format!("meshd-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let signer = Signer::new("k1");
    let jwks = json!({ "keys": [signer.jwk()] }).to_string();
    std::fs::write(dir.join("jwks.json"), jwks).unwrap();
    let rule = |file: &str| JwtRule {
        issuer: ISSUER.to_owned(),
        audiences: Vec::new(),
        jwks_file: file.to_owned(),
        source: spec::SourceLocation {
            file: "a.mesh".into(),
            line: 1,
            column: 1,
        },
    };
    let loaded = Verifier::load(&[rule("jwks.json")], &dir).unwrap();
    assert!(loaded.verify(&signer.token(claims()), NOW).is_ok());
    let summary: Vec<_> = loaded.summary().collect();
    assert_eq!(summary, [(ISSUER, dir.join("jwks.json").as_path(), 1)]);

    let err = Verifier::load(&[rule("missing.json")], &dir).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "JWKS {} for issuer \"{ISSUER}\": ",
            dir.join("missing.json").display()
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_token_comes_from_a_bearer_header_or_the_access_token_parameter() {
    let find = |raw: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        token(&head).map(|b| b.map(|b| (b.token.to_owned(), b.in_header)))
    };
    let bearer = find(b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: bearer  abc.def.ghi\r\n\r\n");
    assert_eq!(bearer, Ok(Some(("abc.def.ghi".into(), true))));
    let tab = find(b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Bearer\tabc.def.ghi\r\n\r\n");
    assert_eq!(tab, Ok(Some(("abc.def.ghi".into(), true))));
    let basic = find(b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Basic dXNlcg==\r\n\r\n");
    assert_eq!(basic, Ok(None));
    let query = find(b"GET /p?x=1&access_token=abc.def.ghi HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_eq!(query, Ok(Some(("abc.def.ghi".into(), false))));
    assert_eq!(find(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"), Ok(None));
}

#[test]
fn a_request_with_more_than_one_token_is_refused() {
    let find = |raw: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        token(&head).map(|b| b.map(|b| b.token.to_owned()))
    };
    // Only one would be verified, and the application might read the other.
    for raw in [
        &b"GET /?access_token=forged HTTP/1.1\r\nhost: a\r\nauthorization: Bearer good\r\n\r\n"[..],
        b"GET /?access_token=good&access_token=forged HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Bearer good\r\nauthorization: Bearer forged\r\n\r\n",
        // Applications decode parameter names: these are access_token too.
        b"GET /?access%5Ftoken=forged HTTP/1.1\r\nhost: a\r\nauthorization: Bearer good\r\n\r\n",
        b"GET /?%61ccess_token=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET /?access_token HTTP/1.1\r\nhost: a\r\nauthorization: Bearer good\r\n\r\n",
        // Frameworks fold case, map ` ` `.` `+` to `_`, drop leading spaces and `[...]`,
        // and some split on `;`.
        b"GET /?ACCESS_TOKEN=forged HTTP/1.1\r\nhost: a\r\nauthorization: Bearer good\r\n\r\n",
        b"GET /?access.token=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET /?access+token=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET /?%20access_token=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET /?access_token[]=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET /?x=1;access_token=forged&access_token=good HTTP/1.1\r\nhost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Bearer \xff\r\nauthorization: Bearer good\r\n\r\n",
    ] {
        assert_eq!(find(raw), Err(Rejection::SeveralTokens), "{}", String::from_utf8_lossy(raw));
    }
    // Another scheme beside a bearer token is not a second token.
    let basic_and_query =
        b"GET /?access_token=t HTTP/1.1\r\nhost: a\r\nauthorization: Basic dXNlcg==\r\n\r\n";
    assert_eq!(find(basic_and_query), Ok(Some("t".into())));
    // A lookalike alone is the application's: no principal comes from it.
    let alone = b"GET /?Access.Token=t HTTP/1.1\r\nhost: a\r\n\r\n";
    assert_eq!(find(alone), Ok(None));
    // Names that only start like it are other parameters.
    let other = b"GET /?access_tokens=x&access_token=t HTTP/1.1\r\nhost: a\r\n\r\n";
    assert_eq!(find(other), Ok(Some("t".into())));
}

#[test]
fn a_token_without_sub_has_no_request_principal_and_a_non_string_sub_is_malformed() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let mut anonymous = claims();
    anonymous.as_object_mut().unwrap().remove("sub");
    let facts = v.verify(&signer.token(anonymous), NOW).unwrap();
    assert_eq!(facts.principal, None);
    assert!(!facts.audiences.is_empty(), "the token still authenticates");
    let mut numbered = claims();
    numbered["sub"] = json!(42);
    assert_eq!(
        v.verify(&signer.token(numbered), NOW),
        Err(Rejection::Malformed("`sub` is not a string"))
    );
}

#[test]
fn critical_header_extensions_are_refused() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let header = json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": NOW + 300});
    let err = v.verify(&signer.sign(header, claims()), NOW).unwrap_err();
    assert!(matches!(err, Rejection::Malformed(_)), "{err}");
    assert!(err.to_string().contains("crit"), "{err}");
}

#[test]
fn a_key_without_kid_may_have_signed_a_token_with_one() {
    let signer = Signer::new("k1");
    let mut anonymous_key = signer.jwk();
    anonymous_key.as_object_mut().unwrap().remove("kid");
    let v = verifier(&[], vec![anonymous_key]);
    assert!(v.verify(&signer.token(claims()), NOW).is_ok());
    // Its signature is still checked.
    let forger = Signer::new("k1");
    assert_eq!(
        v.verify(&forger.token(claims()), NOW),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn the_cache_answers_a_repeated_token_and_still_checks_its_expiry() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let mut c = claims();
    c["exp"] = json!(NOW + 10);
    let token = signer.token(c);
    let mut cache = TokenCache::default();
    let first = cache.verify(&v, &token, NOW).unwrap();
    // A verifier without the key would refuse: the answer comes from the cache.
    let keyless = verifier(&[], vec![Signer::new("k1").jwk()]);
    let again = cache.verify(&keyless, &token, NOW).unwrap();
    assert!(Rc::ptr_eq(&first, &again));
    assert_eq!(
        cache.verify(&v, &token, NOW + 11 + CLOCK_SKEW_SECS),
        Err(Rejection::Expired)
    );
    cache.clear();
    assert_eq!(
        cache.verify(&keyless, &token, NOW),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn the_cache_keeps_its_capacity_by_replacing_the_oldest() {
    let signer = Signer::new("k1");
    let v = verifier(&[], vec![signer.jwk()]);
    let mut cache = TokenCache::default();
    let tokens: Vec<String> = (0..TokenCache::CAPACITY + 1)
        .map(|i| {
            let mut c = claims();
            c["sub"] = json!(format!("user{i}"));
            signer.token(c)
        })
        .collect();
    for token in &tokens {
        cache.verify(&v, token, NOW).unwrap();
    }
    assert_eq!(cache.entries.len(), TokenCache::CAPACITY);
    assert!(cache.entries.iter().all(|e| *e.token != *tokens[0]));
    assert!(cache
        .entries
        .iter()
        .any(|e| *e.token == *tokens[TokenCache::CAPACITY]));
}
