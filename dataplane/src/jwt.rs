//! JWT request authentication, Istio's RequestAuthentication: an inbound request's bearer
//! token is checked against the workload's issuers (the signature by a key from the issuer's
//! JWKS file, `iss`, `aud`, and `exp`/`nbf` with [`CLOCK_SKEW_SECS`] of tolerance) and what it
//! says feeds authorization. A request without a token passes without a request principal,
//! so policies decide whether one is required; a token that fails any check is a 401.

use std::fmt;
use std::hash::{BuildHasher as _, BuildHasherDefault};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustc_hash::FxHasher;
use serde_json::{Map, Value};
use spec::authz::JwtFacts;
use spec::JwtRule;

use crate::http1::RequestHead;
use spec::http::percent_decoded;

/// How far `exp` and `nbf` may be off the local clock (Envoy's default).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Base64url as JWTs and JWKs write it: no padding, though padding is tolerated.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A workload's JWT rules with their issuers' keys loaded; empty when it has none.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verifier {
    issuers: Vec<Issuer>,
}

/// One rule: tokens of `issuer`, for one of `audiences`, signed by one of `keys`.
#[derive(Debug, PartialEq, Eq)]
struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    jwks_file: PathBuf,
    keys: Vec<Key>,
}

/// A public key from a JWKS.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    kid: Option<String>,
    /// The key's `alg`, when the JWKS pins one.
    alg: Option<Alg>,
    material: Material,
}

#[derive(Debug, PartialEq, Eq)]
enum Material {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec { p384: bool, point: Vec<u8> },
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
}

/// The signature algorithms accepted, by their JWS names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    fn rsa(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Self::Es256 | Self::Es384 | Self::EdDsa => return None,
        })
    }
}

impl Key {
    /// Whether a signature made with `alg` may be checked with this key.
    fn fits(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|pinned| pinned == alg)
            && match &self.material {
                Material::Rsa { .. } => alg.rsa().is_some(),
                Material::Ec { p384, .. } => alg == if *p384 { Alg::Es384 } else { Alg::Es256 },
                Material::Ed25519(_) => alg == Alg::EdDsa,
            }
    }

    fn verifies(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => alg.rsa().is_some_and(|params| {
                let key = RsaPublicKeyComponents { n, e };
                key.verify(params, message, signature).is_ok()
            }),
            Material::Ec { p384, point } => {
                let algorithm = if *p384 {
                    &signature::ECDSA_P384_SHA384_FIXED
                } else {
                    &signature::ECDSA_P256_SHA256_FIXED
                };
                let key = UnparsedPublicKey::new(algorithm, point);
                key.verify(message, signature).is_ok()
            }
            Material::Ed25519(public) => UnparsedPublicKey::new(&signature::ED25519, public)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// Why a token was refused; the 401's body says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not three base64url sections of JSON, or a required claim of the wrong type.
    Malformed(&'static str),
    /// The header names an algorithm this meshd does not verify (or `none`).
    UnsupportedAlg(String),
    /// No rule of the workload names the token's `iss`.
    UnknownIssuer(String),
    /// `exp` is past, beyond the clock skew.
    Expired,
    /// `nbf` is ahead, beyond the clock skew.
    NotYetValid,
    /// The token's `aud` names none of the rule's audiences.
    Audience,
    /// The issuer's JWKS has no key for the token's `kid` and `alg`.
    NoKey,
    /// No matching key verifies the signature.
    BadSignature,
    /// The request carries more than one token: which one speaks for it would be ambiguous.
    SeveralTokens,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "the token is malformed: {what}"),
            Self::UnsupportedAlg(alg) => write!(
                f,
                "the token's algorithm {alg:?} is not accepted (RS256/384/512, PS256/384/512, \
                 ES256/384 and EdDSA are)"
            ),
            Self::UnknownIssuer(iss) => {
                write!(
                    f,
                    "the token's issuer {iss:?} is not configured for this workload"
                )
            }
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet (nbf)"),
            Self::Audience => f.write_str("the token's audiences are not allowed"),
            Self::NoKey => f.write_str("the issuer's JWKS has no key for the token's kid and alg"),
            Self::BadSignature => f.write_str("the token's signature does not verify"),
            Self::SeveralTokens => f.write_str(
                "the request carries more than one token (Authorization: Bearer headers, \
                 access_token parameters); send exactly one",
            ),
        }
    }
}

/// A JWKS file that cannot serve: the snapshot that names it is refused.
#[derive(Debug, thiserror::Error)]
#[error("JWKS {} for issuer {issuer:?}: {reason}", path.display())]
pub struct LoadError {
    path: PathBuf,
    issuer: String,
    reason: String,
}

impl Verifier {
    /// Loads every rule's JWKS file; a relative path is resolved against `base` (the snapshot
    /// file's directory). Keys of a type this meshd does not verify are skipped; a file without
    /// one usable key is an error.
    pub fn load(rules: &[JwtRule], base: &Path) -> Result<Self, LoadError> {
        let mut issuers = Vec::with_capacity(rules.len());
        for rule in rules {
            let jwks_file = base.join(&rule.jwks_file);
            let error = |reason: String| LoadError {
                path: jwks_file.clone(),
                issuer: rule.issuer.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&jwks_file).map_err(|e| error(e.to_string()))?;
            let keys = parse_jwks(&text).map_err(error)?;
            issuers.push(Issuer {
                issuer: rule.issuer.clone(),
                audiences: rule.audiences.clone(),
                jwks_file,
                keys,
            });
        }
        Ok(Self { issuers })
    }

    /// Whether the workload authenticates no request by JWT.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// `(issuer, JWKS file, key count)` per rule, for admin.
    pub fn summary(&self) -> impl Iterator<Item = (&str, &Path, usize)> {
        self.issuers
            .iter()
            .map(|i| (i.issuer.as_str(), i.jwks_file.as_path(), i.keys.len()))
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch) and returns what it says.
    pub fn verify(&self, token: &str, now: u64) -> Result<JwtFacts, Rejection> {
        self.verify_timed(token, now).map(|(facts, _)| facts)
    }

    /// [`Self::verify`], also returning the token's validity window for a cache.
    fn verify_timed(&self, token: &str, now: u64) -> Result<(JwtFacts, Window), Rejection> {
        let mut sections = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            sections.next(),
            sections.next(),
            sections.next(),
            sections.next(),
        ) else {
            return Err(Rejection::Malformed(
                "a JWT is three base64url sections separated by two dots",
            ));
        };
        let header = decode_json(header, "the header is not base64url-encoded JSON")?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Rejection::Malformed("the header has no string `alg`"))?;
        let alg =
            Alg::parse(alg_name).ok_or_else(|| Rejection::UnsupportedAlg(alg_name.to_owned()))?;
        // RFC 7515 §4.1.11: extensions listed as critical must be understood, and this
        // verifier understands none.
        if header.contains_key("crit") {
            return Err(Rejection::Malformed(
                "the header lists `crit` extensions, which are not supported",
            ));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let claims = decode_json(payload, "the payload is not base64url-encoded JSON")?;
        let signature = BASE64URL
            .decode(signature)
            .map_err(|_| Rejection::Malformed("the signature is not base64url"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(Rejection::Malformed("the payload has no string `iss`"))?;
        let mut rules = self.issuers.iter().filter(|i| i.issuer == iss).peekable();
        if rules.peek().is_none() {
            return Err(Rejection::UnknownIssuer(iss.to_owned()));
        }
        let window = Window::of(&claims)?;
        window.check(now)?;
        let audiences = string_or_list(claims.get("aud")).ok_or(Rejection::Malformed(
            "`aud` is neither a string nor strings",
        ))?;
        let sub = match claims.get("sub") {
            None => None,
            Some(Value::String(sub)) => Some(sub.as_str()),
            Some(_) => return Err(Rejection::Malformed("`sub` is not a string")),
        };
        // The signature covers the first two sections as sent.
        let signed = token.rsplit_once('.').map_or("", |(signed, _)| signed);

        let mut first_failure = None;
        for rule in rules {
            match rule.accepts(&audiences, alg, kid, signed.as_bytes(), &signature) {
                Ok(()) => return Ok((facts(iss, sub, audiences, &claims), window)),
                // Another rule for the same issuer may still accept; report the first failure.
                Err(rejection) => {
                    first_failure.get_or_insert(rejection);
                }
            }
        }
        Err(first_failure.unwrap_or(Rejection::BadSignature))
    }
}

impl Issuer {
    fn accepts(
        &self,
        audiences: &[&str],
        alg: Alg,
        kid: Option<&str>,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), Rejection> {
        if !self.audiences.is_empty()
            && !audiences
                .iter()
                .any(|a| self.audiences.iter().any(|b| b == a))
        {
            return Err(Rejection::Audience);
        }
        let mut candidates = self
            .keys
            .iter()
            // A key without a kid may have signed any token, as in Envoy's jwt_verify_lib.
            .filter(|k| {
                k.fits(alg) && (kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(Rejection::NoKey);
        }
        if candidates.any(|k| k.verifies(alg, signed, signature)) {
            Ok(())
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

/// A token a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bearer<'b> {
    /// The compact JWT.
    pub token: &'b str,
    /// Whether it came in the Authorization header, which forwarding then drops (as Istio
    /// does unless `forwardOriginalToken`).
    pub in_header: bool,
}

/// The token a request carries, in `Authorization: Bearer TOKEN` or an `access_token` query
/// parameter (Istio's two default locations); [`Rejection::SeveralTokens`] when it carries
/// more than one, as only one would be verified and the application might read another.
///
/// Parameter names count after percent-decoding, as applications decode them. Beside a token,
/// a parameter that some framework would read as `access_token` (another case, `.` for `_`,
/// a `[...]` suffix...) is a second token; alone it is left to the application, as no
/// principal comes from it. A value is taken as written: one with escapes is no compact JWT
/// and fails verification.
pub fn token<'b>(head: &RequestHead<'b, '_>) -> Result<Option<Bearer<'b>>, Rejection> {
    let mut found = None;
    let mut count = 0;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case("authorization") {
            if let Some(token) = bearer_token(h.value) {
                count += 1;
                found.get_or_insert(Bearer {
                    token,
                    in_header: true,
                });
            }
        }
    }
    for pair in head.query.split(['&', ';']) {
        let (name, token) = pair.split_once('=').unwrap_or((pair, ""));
        match ParamName::of(name) {
            ParamName::AccessToken => {
                count += 1;
                found.get_or_insert(Bearer {
                    token,
                    in_header: false,
                });
            }
            ParamName::LikeAccessToken => count += 1,
            ParamName::Other => {}
        }
    }
    if count > 1 {
        return Err(Rejection::SeveralTokens);
    }
    Ok(found)
}

/// The token of an `Authorization: Bearer TOKEN` value (space or tab after the scheme); a value
/// that is not UTF-8 gives an empty token, which fails verification rather than reaching the
/// application unseen.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer")
        || !rest.first().is_some_and(|&b| b == b' ' || b == b'\t')
    {
        return None;
    }
    Some(std::str::from_utf8(rest).map_or("", str::trim_start))
}

/// What a query parameter's name means for token lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamName {
    /// `access_token`, percent-decoded: the token Istio reads.
    AccessToken,
    /// A name an application framework may still read as `access_token`: in another case
    /// (ASP.NET), with ` `, `.` or `+` for `_` and leading spaces (PHP), or with a `[...]`
    /// suffix (PHP, Rack, qs).
    LikeAccessToken,
    Other,
}

impl ParamName {
    fn of(raw: &str) -> Self {
        const NAME: &[u8] = b"access_token";
        let (mut len, mut exact, mut leading) = (0, true, true);
        for b in percent_decoded(raw.as_bytes()) {
            if leading && b == b' ' {
                exact = false;
                continue;
            }
            leading = false;
            if b == b'[' {
                exact = false;
                break;
            }
            let folded = match b {
                b' ' | b'.' | b'+' => b'_',
                b => b.to_ascii_lowercase(),
            };
            if NAME.get(len) != Some(&folded) {
                return Self::Other;
            }
            exact &= NAME[len] == b;
            len += 1;
        }
        match (len == NAME.len(), exact) {
            (false, _) => Self::Other,
            (true, true) => Self::AccessToken,
            (true, false) => Self::LikeAccessToken,
        }
    }
}

fn decode_json(section: &str, what: &'static str) -> Result<Map<String, Value>, Rejection> {
    let bytes = BASE64URL
        .decode(section)
        .map_err(|_| Rejection::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed(what)),
    }
}

/// A token's `exp` and `nbf` (NumericDate: seconds, possibly fractional), each optional.
#[derive(Clone, Copy, Debug)]
struct Window {
    expires: Option<f64>,
    not_before: Option<f64>,
}

impl Window {
    fn of(claims: &Map<String, Value>) -> Result<Self, Rejection> {
        let date = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or(Rejection::Malformed("`exp` and `nbf` must be numbers")),
        };
        Ok(Self {
            expires: date("exp")?,
            not_before: date("nbf")?,
        })
    }

    fn check(self, now: u64) -> Result<(), Rejection> {
        let (now, skew) = (now as f64, CLOCK_SKEW_SECS as f64);
        if self.expires.is_some_and(|exp| now > exp + skew) {
            return Err(Rejection::Expired);
        }
        if self.not_before.is_some_and(|nbf| now + skew < nbf) {
            return Err(Rejection::NotYetValid);
        }
        Ok(())
    }
}

/// A core's recently verified tokens: clients send the same token on request after request,
/// and a cache hit (a hash and a compare) replaces a signature check of tens of microseconds.
/// Only successes are kept, each with its validity window, which is checked again on a hit;
/// the cache must be cleared whenever the keys change (a new route state).
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Vec<Cached>,
    /// The slot the next insertion overwrites once the cache is full.
    hand: usize,
}

#[derive(Debug)]
struct Cached {
    hash: u64,
    token: Box<str>,
    facts: Rc<JwtFacts>,
    window: Window,
}

impl TokenCache {
    /// Tokens kept per core.
    pub const CAPACITY: usize = 64;

    /// Verifies `token` by `verifier` at `now`, from the cache when it holds the token.
    pub fn verify(
        &mut self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<Rc<JwtFacts>, Rejection> {
        let hash = BuildHasherDefault::<FxHasher>::default().hash_one(token);
        if let Some(hit) = self
            .entries
            .iter()
            .find(|e| e.hash == hash && &*e.token == token)
        {
            hit.window.check(now)?;
            return Ok(hit.facts.clone());
        }
        let (facts, window) = verifier.verify_timed(token, now)?;
        let facts = Rc::new(facts);
        let entry = Cached {
            hash,
            token: token.into(),
            facts: facts.clone(),
            window,
        };
        if self.entries.len() < Self::CAPACITY {
            self.entries.push(entry);
        } else {
            self.entries[self.hand] = entry;
            self.hand = (self.hand + 1) % Self::CAPACITY;
        }
        Ok(facts)
    }

    /// Forgets every token (the keys they were checked with are gone).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.hand = 0;
    }
}

/// A claim that is a string or a list of strings, as its values; `None` for another type.
fn string_or_list(value: Option<&Value>) -> Option<Vec<&str>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        Some(_) => None,
    }
}

/// What a verified token contributes to authorization: `iss/sub` (none without `sub`),
/// audiences, `azp`, and every string or string-list claim by its path (nested objects give
/// `[a][b]` paths).
fn facts(
    iss: &str,
    sub: Option<&str>,
    audiences: Vec<&str>,
    claims: &Map<String, Value>,
) -> JwtFacts {
    let mut flat = Vec::new();
    flatten(&mut Vec::new(), claims, &mut flat);
    JwtFacts {
        principal: sub.map(|sub| format!("{iss}/{sub}")),
        audiences: audiences.into_iter().map(str::to_owned).collect(),
        presenter: claims.get("azp").and_then(Value::as_str).map(str::to_owned),
        claims: flat,
    }
}

type Claims = Vec<(Vec<String>, Vec<String>)>;

fn flatten(path: &mut Vec<String>, object: &Map<String, Value>, out: &mut Claims) {
    for (name, value) in object {
        path.push(name.clone());
        match value {
            Value::String(s) => out.push((path.clone(), vec![s.clone()])),
            Value::Array(items) => {
                let strings: Vec<String> = items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                out.push((path.clone(), strings));
            }
            Value::Object(inner) => flatten(path, inner, out),
            _ => {}
        }
        path.pop();
    }
}

/// Parses a JWKS (`{"keys": [...]}`, or one bare JWK) into the keys this meshd can verify
/// with; a key with `use` other than `sig`, or of another type, is skipped.
fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let entries = match &value {
        Value::Object(map) if map.contains_key("keys") => match map.get("keys") {
            Some(Value::Array(keys)) => keys.as_slice(),
            _ => return Err("`keys` must be an array".to_owned()),
        },
        Value::Object(map) if map.contains_key("kty") => std::slice::from_ref(&value),
        _ => return Err("expected a JWKS object with `keys` (or a single JWK)".to_owned()),
    };
    let mut keys = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match parse_jwk(entry) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(reason) => skipped.push(format!("key {i}: {reason}")),
        }
    }
    if keys.is_empty() {
        let why = if skipped.is_empty() {
            "no signing key of type RSA, EC (P-256, P-384) or OKP (Ed25519)".to_owned()
        } else {
            skipped.join("; ")
        };
        return Err(format!("no usable key: {why}"));
    }
    Ok(keys)
}

/// One JWK: `Ok(None)` for a key that is not for signatures.
fn parse_jwk(entry: &Value) -> Result<Option<Key>, String> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("no string `{name}`"))?;
        BASE64URL
            .decode(text)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match field("alg") {
        None => None,
        Some(name) => Some(Alg::parse(name).ok_or_else(|| format!("unsupported alg {name:?}"))?),
    };
    let material = match field("kty") {
        Some("RSA") => Material::Rsa {
            n: strip_leading_zeros(bytes("n")?),
            e: strip_leading_zeros(bytes("e")?),
        },
        Some("EC") => {
            let (p384, len) = match field("crv") {
                Some("P-256") => (false, 32),
                Some("P-384") => (true, 48),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != len || y.len() != len {
                return Err(format!("`x` and `y` must be {len} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::Ec { p384, point }
        }
        Some("OKP") if field("crv") == Some("Ed25519") => Material::Ed25519(bytes("x")?),
        other => return Err(format!("unsupported key type {other:?}")),
    };
    Ok(Some(Key {
        kid: field("kid").map(str::to_owned),
        alg,
        material,
    }))
}

/// JWK integers are unsigned big-endian and should carry no leading zero bytes; some
/// encoders add one, which ring would read as a longer modulus.
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros.min(bytes.len().saturating_sub(1)));
    bytes
}

#[cfg(test)]
mod tests;
