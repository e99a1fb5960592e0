//! Host names: which names a request may use for a service, and how a request's authority
//! splits into host and port. `meshc` (lowering, `explain`) and `meshd` both read these, so
//! the compiler's answer and the sidecar's cannot disagree.

/// The cluster's DNS domain, as in a Kubernetes cluster with default settings.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The namespace of a service or workload that declares none, and of a sidecar serving no
/// workload (short host names resolve relative to it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One name a request may carry for a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostName {
    /// Lower case, without port.
    pub name: String,
    /// `Some(ns)` for the short name, which only callers in namespace `ns` resolve.
    pub namespace: Option<String>,
}

/// The host names a request may carry for the service `name` of `namespace`, the short name
/// first. Within the cluster domain a caller may write the name as its DNS search path
/// allows: `reviews` (callers in the service's namespace only), `reviews.default`,
/// `reviews.default.svc` and the FQDN `reviews.default.svc.cluster.local`, whether the
/// service was declared by its short name (in `namespace`) or by its FQDN (whose own
/// namespace label counts). A name outside the cluster domain (`api.example.com`) is only
/// itself.
///
/// A port never appears here: a request's `:port` is split off before the lookup.
pub fn service_hosts(name: &str, namespace: &str) -> Vec<HostName> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !name.contains('.') {
        let namespace = namespace.to_ascii_lowercase();
        return names_in_cluster(&name, &namespace);
    }
    match cluster_service(&name) {
        Some((service, namespace)) => names_in_cluster(service, namespace),
        None => vec![HostName {
            name,
            namespace: None,
        }],
    }
}

/// `service.namespace` of a name `service.namespace.svc.<cluster domain>`, else `None`.
pub fn cluster_service(name: &str) -> Option<(&str, &str)> {
    let local = name
        .strip_suffix(CLUSTER_DOMAIN)?
        .strip_suffix('.')?
        .strip_suffix(".svc")?;
    let (service, namespace) = local.split_once('.')?;
    let valid = |label: &str| !label.is_empty() && !label.contains('.');
    (valid(service) && valid(namespace)).then_some((service, namespace))
}

fn names_in_cluster(service: &str, namespace: &str) -> Vec<HostName> {
    let namespaced = format!("{service}.{namespace}");
    let absolute = |name| HostName {
        name,
        namespace: None,
    };
    vec![
        HostName {
            name: service.to_owned(),
            namespace: Some(namespace.to_owned()),
        },
        absolute(format!("{namespaced}.svc.{CLUSTER_DOMAIN}")),
        absolute(format!("{namespaced}.svc")),
        absolute(namespaced),
    ]
}

/// The FQDN a host written in `namespace` stands for, as Istio resolves a VirtualService or
/// DestinationRule host: a name without a dot is a service of that namespace; any other name
/// is already qualified (or outside the cluster) and is only lower-cased.
pub fn qualify(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.contains('.') {
        host
    } else {
        let namespace = namespace.to_ascii_lowercase();
        format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

/// Splits a request authority (`Host` header or absolute-form target) into host and port.
/// IPv6 literals keep their brackets (`[::1]:8080` is `[::1]` and 8080). When what follows the
/// last colon is not a port, the whole authority is the host (and routes nowhere).
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        // `[::1]` alone: the colon is inside the brackets.
        Some((host, _)) if host.starts_with('[') && !host.ends_with(']') => (authority, None),
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse() {
                Ok(p) => (host, Some(p)),
                Err(_) => (authority, None),
            }
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hosts: Vec<HostName>) -> Vec<String> {
        hosts.into_iter().map(|h| h.name).collect()
    }

    #[test]
    fn a_short_name_gets_every_name_of_the_cluster_search_path() {
        let hosts = service_hosts("Reviews", "default");
        assert_eq!(hosts[0].namespace.as_deref(), Some("default"));
        assert!(hosts[1..].iter().all(|h| h.namespace.is_none()));
        assert_eq!(
            names(hosts),
            [
                "reviews",
                "reviews.default.svc.cluster.local",
                "reviews.default.svc",
                "reviews.default"
            ]
        );
    }

    #[test]
    fn an_fqdn_in_the_cluster_gets_its_short_names_from_its_own_labels() {
        let hosts = service_hosts("reviews.bookinfo.svc.cluster.local", "istio-system");
        assert_eq!(hosts[0].namespace.as_deref(), Some("bookinfo"));
        assert_eq!(
            names(hosts),
            [
                "reviews",
                "reviews.bookinfo.svc.cluster.local",
                "reviews.bookinfo.svc",
                "reviews.bookinfo"
            ]
        );
        assert_eq!(
            service_hosts("reviews.default.svc.cluster.local.", "default")[0].name,
            "reviews"
        );
    }

    #[test]
    fn a_name_outside_the_cluster_domain_is_only_itself() {
        let only = |name: &str| names(service_hosts(name, "default"));
        assert_eq!(only("API.example.com"), ["api.example.com"]);
        assert_eq!(only("reviews.default"), ["reviews.default"]);
        assert_eq!(only("a.b.c.svc.cluster.local"), ["a.b.c.svc.cluster.local"]);
        assert_eq!(only("svc.cluster.local"), ["svc.cluster.local"]);
        assert!(service_hosts("api.example.com", "default")[0]
            .namespace
            .is_none());
    }

    #[test]
    fn qualifies_only_names_without_a_dot() {
        assert_eq!(
            qualify("reviews", "Bookinfo"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(qualify("reviews.other", "default"), "reviews.other");
        assert_eq!(qualify("API.example.com", "default"), "api.example.com");
    }

    #[test]
    fn splits_ports_off_names_and_ip_literals() {
        assert_eq!(split_authority("reviews:9080"), ("reviews", Some(9080)));
        assert_eq!(split_authority("reviews"), ("reviews", None));
        assert_eq!(split_authority("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("reviews:http"), ("reviews:http", None));
        assert_eq!(split_authority("reviews:70000"), ("reviews:70000", None));
    }
}
