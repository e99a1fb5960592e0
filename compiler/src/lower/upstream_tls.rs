//! Istio DestinationRule `tls.mode` on a service. `DISABLE` has callers use plaintext (no
//! server identity to check); `ISTIO_MUTUAL` is what the mesh does anyway for a server with an
//! identity, and is refused where no server has one (never a silent fall back to plaintext).

use spec::{Service, TlsMode, Workload};

use super::{In, Lowerer};
use crate::ast;
use crate::diag::Code;

impl Lowerer<'_> {
    /// Applies the `tls` of each service's policy, once `security` has listed the identities
    /// its servers present. `declared` and `services` are in the same (index) order.
    pub(super) fn upstream_tls(
        &mut self,
        declared: &[In<'_, ast::Service>],
        services: &mut [Service],
        workloads: &[Workload],
    ) {
        for (index, &(file, decl)) in declared.iter().enumerate() {
            let Some(policy) = decl.policies.first() else {
                continue;
            };
            let Some(tls) = policy.tls else {
                continue;
            };
            let file = policy.file.unwrap_or(file);
            let service = &mut services[index];
            if tls.mutual {
                if service.identities.is_empty() {
                    let message = format!(
                        "`tls.mode: ISTIO_MUTUAL` for `{}`, but none of its servers presents an \
                         identity (no workload with a service account serves it, or its inbound \
                         ports are all DISABLE): callers could only use plaintext",
                        service.name
                    );
                    let help = "declare the workloads that serve it (a WorkloadEntry or Pod with \
                                a service account), or write DISABLE to call it in plaintext";
                    self.report(
                        Code::IstioMutualWithoutIdentity,
                        file,
                        tls.span,
                        message,
                        help,
                    );
                }
                continue;
            }
            service.identities.clear();
            let strict = workloads.iter().any(|w| {
                w.serves.binary_search(&(index as u32)).is_ok()
                    && w.inbound.iter().any(|p| p.tls == TlsMode::Strict)
            });
            if strict {
                let message = format!(
                    "`tls.mode: DISABLE` for `{}`, whose server requires mutual TLS (STRICT): \
                     its sidecar refuses every plaintext call",
                    service.name
                );
                let help = "remove the DestinationRule's `tls` (the mesh then uses ISTIO_MUTUAL), \
                            or make the server PERMISSIVE";
                self.report(Code::IstioNotExpressible, file, tls.span, message, help);
            }
        }
    }
}
