//! What observing a request takes from its head, once it is routed: its request id (made when
//! it has none), this hop's span when the request is sampled (its id replacing the caller's in
//! the forwarded head), the fields the access log reads, and whether it is a gRPC call (and
//! its deadline).

use crate::grpc;
use crate::http1::RequestHead;
use crate::trace::{self, SpanContext, REQUEST_ID};

use super::outcome::Outcome;
use super::plan::{Action, Plan};

/// A sampled request's span, as far as its head tells. Boxed in the [`Outcome`]: only sampled
/// requests carry one.
#[derive(Debug)]
pub(crate) struct Traced {
    pub(super) context: SpanContext,
    /// Istio's span name: the destination service's FQDN and port, then `/*`.
    pub(super) name: String,
    pub(super) method: String,
    /// Authority and path as the client sent them.
    pub(super) url: String,
    pub(super) request_id: String,
}

/// Observes the head of a routed request; `forwarded` holds the head to forward when the plan
/// forwards it. `http2`: the request is a stream of an HTTP/2 connection.
pub(super) fn observe_head(
    head: &RequestHead<'_, '_>,
    plan: &Plan,
    forwarded: &mut Vec<u8>,
    outcome: &mut Outcome,
    http2: bool,
) {
    let forwards = matches!(plan.action, Action::Forward(..));
    // gRPC needs HTTP/2, so an HTTP/1.1 client's request is never a call.
    outcome.grpc = http2
        && head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .is_some_and(|h| grpc::is_grpc(h.value));
    if outcome.grpc {
        outcome.grpc_timeout = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("grpc-timeout"))
            .and_then(|h| grpc::timeout(h.value));
    }
    let sent = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(REQUEST_ID))
        .map(|h| h.value);
    let generated = sent.is_none().then(trace::new_request_id);
    if let (Some(id), true) = (&generated, forwards) {
        trace::add_header(forwarded, REQUEST_ID, id);
    }
    let logged = plan.routes.access_log.as_ref();
    let incoming = if plan.routes.tracing.is_some() || logged.is_some() {
        trace::incoming(head.headers)
    } else {
        None
    };
    if plan.routes.tracing.is_some() {
        let sampling = plan.routes.trace_sampling_per_million;
        if let Some(context) = trace::sample(incoming, sampling) {
            if forwards {
                trace::rewrite_headers(forwarded, &context);
            }
            let request_id = sent
                .or(generated.as_ref().map(|g| &g[..]))
                .unwrap_or_default();
            outcome.trace = Some(Box::new(Traced {
                context,
                name: span_name(head, plan),
                method: head.method.to_owned(),
                url: [authority(head), head.path].concat(),
                request_id: String::from_utf8_lossy(request_id).into_owned(),
            }));
        }
    }
    if let Some(format) = logged {
        let generated = generated.as_ref().map(|g| &g[..]);
        outcome.request.capture(head, format, http2, generated);
        outcome.incoming_trace = incoming.map(|i| i.trace_id);
    }
}

/// The Host header as sent, or the host of an absolute-form target.
fn authority<'h>(head: &'h RequestHead<'_, '_>) -> &'h str {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .unwrap_or(head.host)
}

/// `reviews.default.svc.cluster.local:9080/*` for a request to a known service (its port as
/// the request named it, else the service's first), else the request's authority.
fn span_name(head: &RequestHead<'_, '_>, plan: &Plan) -> String {
    let snapshot = &plan.routes.snapshot;
    let Some(service) = plan.service.and_then(|s| snapshot.services.get(s as usize)) else {
        return [authority(head), "/*"].concat();
    };
    let mut name = spec::host::qualify(&service.name, &service.namespace);
    if let Some(port) = head.port.or(service.ports.first().map(|p| p.number)) {
        name.push(':');
        name.push_str(itoa::Buffer::new().format(port));
    }
    name.push_str("/*");
    name
}
