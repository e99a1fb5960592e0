//! A core's security state: the TLS configurations of the workload certificate in force, the
//! handshake counts, the header edits inbound forwarding applies, and the JWTs verified lately.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::jwt::TokenCache;
use crate::routing::RouteState;
use crate::tls::{CoreTls, Identity};
use crate::usage::AuthnUsage;

/// The header inbound forwarding tells the application the mTLS caller with (Envoy's and
/// Istio's name); a caller's own is removed.
pub const FORWARDED_CLIENT_CERT: &str = "x-forwarded-client-cert";

/// One core's security state.
#[derive(Debug)]
pub struct Security {
    /// TLS configurations from the workload certificate in force (`None`: no certificate,
    /// so no mutual TLS either way).
    pub tls: RefCell<Option<Rc<CoreTls>>>,
    /// Handshakes and refusals, for admin `/certs`.
    pub authn_counts: Cell<AuthnUsage>,
    /// What inbound forwarding removes from every request: a caller's own
    /// `x-forwarded-client-cert` (meshd writes the real one).
    pub inbound_edits: spec::HeaderEdits,
    /// [`Self::inbound_edits`] plus the Authorization header whose JWT was verified.
    pub inbound_edits_bearer: spec::HeaderEdits,
    /// JWTs this core verified lately.
    pub jwt_tokens: RefCell<TokenCache>,
}

impl Default for Security {
    fn default() -> Self {
        let remove = |names: &[&str]| spec::HeaderEdits {
            remove: names.iter().map(|n| (*n).to_owned()).collect(),
            ..spec::HeaderEdits::default()
        };
        Self {
            tls: RefCell::new(None),
            authn_counts: Cell::new(AuthnUsage::default()),
            inbound_edits: remove(&[FORWARDED_CLIENT_CERT]),
            inbound_edits_bearer: remove(&[FORWARDED_CLIENT_CERT, "authorization"]),
            jwt_tokens: RefCell::new(TokenCache::default()),
        }
    }
}

impl Security {
    /// Serves new handshakes with `identity`; connections already open keep theirs.
    pub fn install_identity(&self, identity: Arc<Identity>) {
        match CoreTls::new(identity) {
            Ok(tls) => *self.tls.borrow_mut() = Some(Rc::new(tls)),
            // The control thread checked the set (Identity::load builds this very
            // configuration), so this is not expected; the previous one keeps serving.
            Err(e) => tracing::error!("certificates not installed on a core: {e}"),
        }
    }

    /// Adds to this core's TLS counts.
    pub fn count_authn(&self, count: impl FnOnce(&mut AuthnUsage)) {
        let mut counts = self.authn_counts.get();
        count(&mut counts);
        self.authn_counts.set(counts);
    }

    /// Follows a reload: forgets tokens verified with the old state's keys, and keeps only the
    /// client configurations the new state's services still need.
    pub(super) fn install(&self, routes: &RouteState) {
        self.jwt_tokens.borrow_mut().clear();
        if let Some(tls) = self.tls.borrow().as_ref() {
            tls.keep_clients(routes.groups().iter().map(|g| g.identities.as_slice()));
        }
    }
}
