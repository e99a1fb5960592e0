//! JWT request authentication on B's inbound, with keys and signatures made by the openssl
//! command line (an RS256 and an ES256 issuer): a valid token's principal and claims decide
//! authorization, a bad one is 401 with the reason and never reaches the application, and a
//! changed JWKS file takes effect without a snapshot change.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

const RSA_ISSUER: &str = "https://rsa.example";
const EC_ISSUER: &str = "https://ec.example";

/// The JWKS paths are relative: meshd reads them beside the snapshot.
const POLICIES: &str = r#"
authentication users {
  workloads reviews
  jwt { issuer "https://rsa.example" audiences "reviews" jwks "rsa.jwks" }
  jwt { issuer "https://ec.example" jwks "ec.jwks" }
}
authorization require-user {
  workloads reviews
  rule { from { request_principals "https://rsa.example/*" } }
  rule { when "request.auth.claims[groups]" = "admins" }
}
"#;

/// A signing key made and used by `openssl`.
struct OpensslKey {
    pem: PathBuf,
    rsa: bool,
    kid: String,
}

impl OpensslKey {
    fn generate(dir: &Path, kid: &str, rsa: bool) -> Self {
        let pem = dir.join(format!("{kid}.pem"));
        let pem_text = pem.to_str().unwrap();
        let args: &[&str] = if rsa {
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]
        } else {
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"]
        };
        openssl(&[args, &["-out", pem_text]].concat(), b"");
        Self {
            pem,
            rsa,
            kid: kid.to_owned(),
        }
    }

    fn jwk(&self) -> Value {
        let pem = self.pem.to_str().unwrap();
        if self.rsa {
            let text = String::from_utf8(openssl(&["rsa", "-in", pem, "-noout", "-modulus"], b""))
                .unwrap();
            let hex = text.trim().strip_prefix("Modulus=").unwrap();
            let n: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            json!({ "kty": "RSA", "kid": self.kid, "alg": "RS256", "e": "AQAB",
                    "n": BASE64URL.encode(n) })
        } else {
            let spki = openssl(&["ec", "-in", pem, "-pubout", "-outform", "DER"], b"");
            // The SubjectPublicKeyInfo ends with the uncompressed point 04 || x || y.
            let point = &spki[spki.len() - 65..];
            assert_eq!(point[0], 4);
            json!({ "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                    "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..]) })
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let alg = if self.rsa { "RS256" } else { "ES256" };
        let header = json!({ "alg": alg, "kid": self.kid, "typ": "JWT" });
        let signed = format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        );
        let pem = self.pem.to_str().unwrap();
        let der = openssl(&["dgst", "-sha256", "-sign", pem], signed.as_bytes());
        let signature = if self.rsa {
            der
        } else {
            ecdsa_der_to_jws(&der)
        };
        format!("{signed}.{}", BASE64URL.encode(signature))
    }
}

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// openssl writes ECDSA signatures as DER `SEQUENCE { r INTEGER, s INTEGER }`; JWS wants
/// r and s as 32 big-endian bytes each.
fn ecdsa_der_to_jws(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut at = 2;
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(issuer: &str, sub: &str, extra: Value) -> Value {
    let mut claims = json!({ "iss": issuer, "sub": sub, "exp": unix_now() + 600 });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn write_jwks(scratch: &Scratch, name: &str, keys: &[&OpensslKey]) {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    // Written whole and renamed over, as a key distributor would, so no reader sees half.
    let tmp = scratch.write(&format!("{name}.tmp"), json!({ "keys": keys }).to_string());
    std::fs::rename(tmp, scratch.path().join(name)).unwrap();
}

/// The pair with both issuers' keys made and their JWKS files in place before B starts.
fn start(driver: &str) -> (Pair, OpensslKey, OpensslKey) {
    let (pair, (rsa, ec)) = Pair::start_prepared(driver, "strict", POLICIES, |scratch| {
        let rsa = OpensslKey::generate(scratch.path(), "rsa-1", true);
        let ec = OpensslKey::generate(scratch.path(), "ec-1", false);
        write_jwks(scratch, "rsa.jwks", &[&rsa]);
        write_jwks(scratch, "ec.jwks", &[&ec]);
        (rsa, ec)
    });
    (pair, rsa, ec)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn jwt_counts(pair: &Pair) -> Value {
    admin_json(pair.b.admin, "/certs")["jwt"].clone()
}

fn tokens_decide_authorization_and_bad_ones_get_401(driver: &str) {
    let (pair, rsa, ec) = start(driver);
    let aud = json!({ "aud": ["reviews"] });

    // No token: authentication passes it, and authorization wants a user.
    let anonymous = pair.call("/headers", &[]);
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());
    assert!(anonymous
        .text()
        .contains("no ALLOW policy matches: require-user ("));

    // RS256 from the first issuer: its principal matches; the token is not forwarded.
    let alice = rsa.sign(&claims(RSA_ISSUER, "alice", aud.clone()));
    let ok = pair.call("/headers", &[("authorization", &bearer(&alice))]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = ok.text().to_ascii_lowercase();
    assert!(!seen.contains("authorization:"), "{seen}");
    assert!(seen.contains("x-forwarded-client-cert: by="), "{seen}");
    // The same token again comes from the core's cache: still 200.
    let again = pair.call("/", &[("authorization", &bearer(&alice))]);
    assert_eq!(again.status, 200, "{}", again.text());

    // ES256 from the second issuer: a claim decides.
    let admin = ec.sign(&claims(
        EC_ISSUER,
        "bob",
        json!({ "groups": ["dev", "admins"] }),
    ));
    let by_claim = pair.call("/", &[("authorization", &bearer(&admin))]);
    assert_eq!(by_claim.status, 200, "{}", by_claim.text());
    let guest = ec.sign(&claims(EC_ISSUER, "carol", json!({ "groups": ["guests"] })));
    assert_eq!(
        pair.call("/", &[("authorization", &bearer(&guest))]).status,
        403
    );
    // In the access_token query parameter, Istio's other default place.
    let by_query = pair.call(&format!("/?access_token={admin}"), &[]);
    assert_eq!(by_query.status, 200, "{}", by_query.text());

    let served = pair.upstream.requests();
    let mut expired = claims(RSA_ISSUER, "alice", aud.clone());
    expired["exp"] = json!(unix_now() - 3600);
    let forger = OpensslKey::generate(pair.scratch.path(), "rsa-1-forged", true);
    let refused = [
        (rsa.sign(&expired), "the token has expired"),
        (
            rsa.sign(&claims(RSA_ISSUER, "alice", json!({ "aud": "billing" }))),
            "the token's audiences are not allowed",
        ),
        (
            OpensslKey {
                kid: "rsa-1".into(),
                ..forger
            }
            .sign(&claims(RSA_ISSUER, "mallory", aud.clone())),
            "the token's signature does not verify",
        ),
        (
            ec.sign(&claims("https://other.example", "eve", json!({}))),
            "the token's issuer \"https://other.example\" is not configured for this workload",
        ),
        ("not-a-jwt".to_owned(), "the token is malformed"),
    ];
    for (token, reason) in &refused {
        let response = pair.call("/", &[("authorization", &bearer(token))]);
        assert_eq!(response.status, 401, "{reason}: {}", response.text());
        assert_eq!(response.header("x-ringmesh-flag"), Some("JWT"));
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        let body = response.text();
        assert!(
            body.starts_with(&format!("JWT verification failed: {reason}")),
            "{body}"
        );
    }
    // A forged token beside a good one: only one could be verified, and the application
    // might read the other.
    let beside = pair.call(
        "/?access_token=forged.by.someone",
        &[("authorization", &bearer(&alice))],
    );
    assert_eq!(beside.status, 401, "{}", beside.text());
    assert!(
        beside.text().contains("more than one token"),
        "{}",
        beside.text()
    );
    // Also when the parameter's name is percent-encoded: the application decodes it.
    let encoded = pair.call(
        "/?access%5Ftoken=forged.by.someone",
        &[("authorization", &bearer(&alice))],
    );
    assert_eq!(encoded.status, 401, "{}", encoded.text());
    // A good token without `sub` authenticates but names no request principal, so a
    // principal pattern of its issuer does not match it.
    let mut subless = claims(RSA_ISSUER, "", aud);
    subless.as_object_mut().unwrap().remove("sub");
    let nobody = pair.call("/", &[("authorization", &bearer(&rsa.sign(&subless)))]);
    assert_eq!(nobody.status, 403, "{}", nobody.text());
    assert_eq!(
        pair.upstream.requests(),
        served,
        "a refused token reached the app"
    );

    let counts = jwt_counts(&pair);
    assert_eq!(counts["rejected"], refused.len() + 2, "{counts}");
    assert_eq!(counts["verified"], 6, "{counts}");
    assert_eq!(counts["issuers"].as_array().unwrap().len(), 2, "{counts}");
    assert_eq!(counts["issuers"][0]["issuer"], RSA_ISSUER, "{counts}");
}

on_both_drivers!(tokens_decide_authorization_and_bad_ones_get_401);

#[test]
fn a_changed_jwks_file_rotates_keys_and_a_bad_one_is_refused() {
    let (pair, rsa, _ec) = start("uring");
    let aud = json!({ "aud": "reviews" });
    let old = rsa.sign(&claims(RSA_ISSUER, "alice", aud.clone()));
    assert_eq!(
        pair.call("/", &[("authorization", &bearer(&old))]).status,
        200
    );

    // The issuer rotates: the JWKS now holds only the new key. No snapshot change.
    let next = OpensslKey::generate(pair.scratch.path(), "rsa-2", true);
    write_jwks(&pair.scratch, "rsa.jwks", &[&next]);
    let new = next.sign(&claims(RSA_ISSUER, "alice", aud));
    wait_until(|| pair.call("/", &[("authorization", &bearer(&new))]).status == 200);
    // The old token was cached as verified; the reload cleared that with the old keys.
    let stale = pair.call("/", &[("authorization", &bearer(&old))]);
    assert_eq!(stale.status, 401, "{}", stale.text());
    assert!(stale.text().contains("has no key for the token's kid"));

    // A JWKS that no longer parses is refused with the reason; the keys in force stay.
    std::fs::write(pair.scratch.path().join("rsa.jwks"), "{\"keys\": [").unwrap();
    let log = pair.scratch.path().join("b.log");
    wait_until(|| {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("rsa.jwks for issuer \"https://rsa.example\": not JSON")
    });
    assert_eq!(
        pair.call("/", &[("authorization", &bearer(&new))]).status,
        200
    );
}

#[test]
fn a_missing_jwks_file_stops_meshd_at_start_naming_it() {
    let scratch = Scratch::new();
    let upstream = Upstream::start("reviews-app").unwrap();
    let config = config_with("127.0.0.1:9", &upstream, "permissive", "", POLICIES);
    let snapshot = compile_as(&scratch, "b", &config);
    let output = Command::new(harness::binary("meshd").unwrap())
        .arg("--snapshot")
        .arg(&snapshot)
        .args(["--workload", "reviews", "--outbound", "127.0.0.1:0"])
        .args(["--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "JWKS {} for issuer \"{RSA_ISSUER}\": ",
            scratch.path().join("rsa.jwks").display()
        )),
        "{stderr}"
    );
}
