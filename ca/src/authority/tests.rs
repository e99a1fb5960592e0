use std::time::Duration;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshca-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(intermediate: bool) -> InitOptions {
    InitOptions {
        trust_domain: "cluster.local".into(),
        intermediate,
        root_ttl: DEFAULT_ROOT_TTL,
    }
}

fn id(text: &str) -> SpiffeId {
    SpiffeId::parse(text).unwrap()
}

/// Every certificate in a PEM text, as DER.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

#[test]
fn issues_a_p256_leaf_with_the_spiffe_id_as_its_uri_san() {
    let dir = TempDir::new("leaf");
    let ca = Authority::init(&dir.0, &options(false)).unwrap();
    let issued = ca
        .issue(
            &id("spiffe://cluster.local/ns/default/sa/reviews"),
            DEFAULT_LEAF_TTL,
        )
        .unwrap();
    let chain = ders(&issued.chain_pem);
    assert_eq!(chain.len(), 1, "no intermediate: the leaf alone");
    let (_, leaf) = parse_x509_certificate(&chain[0]).unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = sans
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/reviews"]);
    assert!(!leaf.is_ca());
    assert_eq!(
        leaf.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let lifetime = leaf.validity().time_to_expiration().unwrap();
    assert!(lifetime <= ::time::Duration::hours(24) && lifetime > ::time::Duration::hours(23));
    // The leaf verifies against the bundle's root.
    let bundle = ders(&issued.bundle_pem);
    let (_, root) = parse_x509_certificate(&bundle[0]).unwrap();
    leaf.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(leaf.issuer(), root.subject());
}

#[test]
fn an_intermediate_signs_and_goes_into_the_chain() {
    let dir = TempDir::new("intermediate");
    let ca = Authority::init(&dir.0, &options(true)).unwrap();
    let issued = ca
        .issue(
            &id("spiffe://cluster.local/ns/a/sa/b"),
            Duration::from_secs(3600),
        )
        .unwrap();
    let chain = ders(&issued.chain_pem);
    assert_eq!(chain.len(), 2);
    let (_, leaf) = parse_x509_certificate(&chain[0]).unwrap();
    let (_, intermediate) = parse_x509_certificate(&chain[1]).unwrap();
    let bundle = ders(&issued.bundle_pem);
    let (_, root) = parse_x509_certificate(&bundle[0]).unwrap();
    assert!(intermediate.is_ca());
    leaf.verify_signature(Some(intermediate.public_key()))
        .unwrap();
    intermediate
        .verify_signature(Some(root.public_key()))
        .unwrap();
}

#[test]
fn refuses_foreign_trust_domains_bad_lifetimes_and_a_second_init() {
    let dir = TempDir::new("refusals");
    let ca = Authority::init(&dir.0, &options(false)).unwrap();
    let foreign = ca.issue(&id("spiffe://other.org/ns/a/sa/b"), DEFAULT_LEAF_TTL);
    assert!(matches!(foreign, Err(CaError::ForeignTrustDomain { .. })));
    let long = ca.issue(&id("spiffe://cluster.local/a"), MAX_LEAF_TTL * 2);
    assert!(matches!(long, Err(CaError::Lifetime(_))));
    let zero = ca.issue(&id("spiffe://cluster.local/a"), Duration::ZERO);
    assert!(matches!(zero, Err(CaError::Lifetime(_))));
    assert!(matches!(
        Authority::init(&dir.0, &options(false)),
        Err(CaError::Exists(_))
    ));
    let empty = TempDir::new("empty");
    assert!(matches!(
        Authority::open(&empty.0),
        Err(CaError::Missing(_))
    ));
    let forever = InitOptions {
        root_ttl: Duration::from_secs(3_000_000 * 86_400),
        ..options(false)
    };
    assert!(matches!(
        Authority::init(&empty.0, &forever),
        Err(CaError::Lifetime(_))
    ));
    let instant = InitOptions {
        root_ttl: Duration::ZERO,
        ..options(false)
    };
    assert!(matches!(
        Authority::init(&empty.0, &instant),
        Err(CaError::Lifetime(_))
    ));
    let short = TempDir::new("short");
    let soon = InitOptions {
        root_ttl: Duration::from_secs(30),
        ..options(false)
    };
    let expiring = Authority::init(&short.0, &soon).unwrap();
    let refused = expiring.issue(&id("spiffe://cluster.local/a"), DEFAULT_LEAF_TTL);
    assert!(
        matches!(refused, Err(CaError::SignerExpired(_))),
        "{refused:?}"
    );
    let bad_domain = InitOptions {
        trust_domain: "Bad Domain".into(),
        ..options(false)
    };
    assert!(matches!(
        Authority::init(&empty.0, &bad_domain),
        Err(CaError::Spiffe(_))
    ));
}

#[test]
fn a_root_rotates_through_a_two_root_bundle() {
    let dir = TempDir::new("rotation");
    let mut ca = Authority::init(&dir.0, &options(true)).unwrap();
    let workload = id("spiffe://cluster.local/ns/a/sa/b");
    let before = ca.issue(&workload, DEFAULT_LEAF_TTL).unwrap();
    assert_eq!(ca.add_root(DEFAULT_ROOT_TTL).unwrap(), 2);
    let after = ca.issue(&workload, DEFAULT_LEAF_TTL).unwrap();
    // Both roots are trusted while leaves from either are in use.
    let bundle = ders(&after.bundle_pem);
    assert_eq!(bundle.len(), 2);
    let root = |i: usize| parse_x509_certificate(&bundle[i]).unwrap().1;
    let intermediate = |issued: &Issued| ders(&issued.chain_pem)[1].clone();
    let old_intermediate = intermediate(&before);
    let new_intermediate = intermediate(&after);
    let (_, old_i) = parse_x509_certificate(&old_intermediate).unwrap();
    let (_, new_i) = parse_x509_certificate(&new_intermediate).unwrap();
    old_i.verify_signature(Some(root(0).public_key())).unwrap();
    new_i.verify_signature(Some(root(1).public_key())).unwrap();
    // Retiring drops the oldest root; the last one cannot go.
    assert_eq!(ca.retire_root().unwrap(), 1);
    assert_eq!(ders(&ca.bundle().unwrap()).len(), 1);
    assert!(matches!(ca.retire_root(), Err(CaError::LastRoot)));
    // Reopened, the CA keeps numbering after the highest root.
    let mut reopened = Authority::open(&dir.0).unwrap();
    assert_eq!(reopened.add_root(DEFAULT_ROOT_TTL).unwrap(), 3);
}

#[test]
fn keys_are_written_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("modes");
    let ca = Authority::init(&dir.0, &options(true)).unwrap();
    let issued = ca
        .issue(&id("spiffe://cluster.local/ns/a/sa/b"), DEFAULT_LEAF_TTL)
        .unwrap();
    let out = dir.0.join("out");
    issued.write_to(&out).unwrap();
    let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(out.join("key.pem")), 0o600);
    assert_eq!(mode(dir.0.join("roots/1.key.pem")), 0o600);
    assert_eq!(mode(dir.0.join(INTERMEDIATE_KEY)), 0o600);
    assert_eq!(mode(out.join("cert.pem")), 0o644);
    assert_eq!(
        fs::read_to_string(out.join("bundle.pem")).unwrap(),
        issued.bundle_pem
    );
}
