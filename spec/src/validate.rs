//! Invariants a decoded snapshot must hold before a data plane may serve it.

use crate::{HostEntry, RouteRule, Snapshot, TrafficPolicy};

/// A snapshot that decodes but breaks an invariant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSnapshot {
    /// A list that must be sorted and unique is not.
    #[error("{what} are not sorted and unique (at {name:?})")]
    Unsorted {
        /// Which list.
        what: &'static str,
        /// The first out-of-order entry.
        name: String,
    },
    /// An index points past the end of the list it names.
    #[error("{what} index {index} is out of range (len {len})")]
    IndexOutOfRange {
        /// Which reference.
        what: &'static str,
        /// The index found.
        index: u32,
        /// Length of the list it indexes.
        len: usize,
    },
    /// A trace collector URL meshd cannot post to.
    #[error("trace collector: {0}")]
    Collector(#[from] crate::collector::UrlError),
    /// An access log format meshd cannot render.
    #[error("access log format {format:?}: {error}")]
    AccessLogFormat {
        /// The format.
        format: String,
        /// What is wrong with it.
        error: crate::access_log::FormatError,
    },
    /// A rule's destination weights do not add up to 100.
    #[error("rule {rule:?} has destination weights summing to {sum}, not 100")]
    WeightSum {
        /// Rule name.
        rule: String,
        /// Their sum.
        sum: u64,
    },
    /// A rule has both destinations and a redirect, or neither.
    #[error("rule {rule:?} must have either destinations or a redirect")]
    Action {
        /// Rule name.
        rule: String,
    },
    /// A value is outside the range the data plane accepts.
    #[error("{what} is {value}, outside {range}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The accepted range.
        range: &'static str,
    },
    /// A route table's path index does not describe its rules.
    #[error(
        "the path index of the route table for service index {service} does not match its rules"
    )]
    StaleIndex {
        /// The table's service index.
        service: u32,
    },
    /// An endpoint has weight zero.
    #[error("endpoint {address} of service {service:?} has weight 0")]
    ZeroWeight {
        /// Service name.
        service: String,
        /// Endpoint address.
        address: std::net::SocketAddr,
    },
}

impl Snapshot {
    /// Checks every invariant the data plane relies on.
    pub fn validate(&self) -> Result<(), InvalidSnapshot> {
        sorted_unique("services", self.services.iter().map(|s| s.name.as_str()))?;
        workloads_sorted_unique(&self.workloads)?;
        hosts_sorted_unique(&self.hosts)?;
        for service in &self.services {
            sorted_unique("subsets", service.subsets.iter().map(|s| s.name.as_str()))?;
            for endpoint in &service.endpoints {
                if endpoint.weight == 0 {
                    return Err(InvalidSnapshot::ZeroWeight {
                        service: service.name.clone(),
                        address: endpoint.address,
                    });
                }
            }
            policy(&service.policy)?;
            for subset in &service.subsets {
                for &index in &subset.endpoints {
                    in_range("subset endpoint", index, service.endpoints.len())?;
                }
                policy(&subset.policy)?;
            }
        }
        for host in &self.hosts {
            in_range("host route table", host.route_table, self.routes.len())?;
        }
        for table in &self.routes {
            in_range("route table service", table.service, self.services.len())?;
            for rule in &table.rules {
                self.rule(rule)?;
            }
            if table.index != table.path_index() {
                return Err(InvalidSnapshot::StaleIndex {
                    service: table.service,
                });
            }
        }
        for workload in &self.workloads {
            for &service in &workload.outbound {
                in_range("workload outbound service", service, self.services.len())?;
            }
            for &service in &workload.serves {
                in_range("workload served service", service, self.services.len())?;
            }
            telemetry(&workload.telemetry)?;
        }
        telemetry(&self.telemetry)
    }

    fn destination(&self, what: &'static str, service: u32, subset: Option<u32>) -> Checked {
        in_range(what, service, self.services.len())?;
        if let Some(subset) = subset {
            let subsets = self.services[service as usize].subsets.len();
            in_range("destination subset", subset, subsets)?;
        }
        Ok(())
    }

    fn rule(&self, rule: &RouteRule) -> Checked {
        let mut sum = 0u64;
        for dest in &rule.destinations {
            self.destination("destination service", dest.service, dest.subset)?;
            sum += u64::from(dest.weight);
        }
        match (rule.destinations.is_empty(), &rule.redirect) {
            (true, Some(redirect)) => {
                if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
                    return out_of_range("redirect status", redirect.status.into(), "301..=308");
                }
            }
            (false, None) if sum != 100 => {
                return Err(InvalidSnapshot::WeightSum {
                    rule: rule.name.clone(),
                    sum,
                });
            }
            (false, None) => {}
            _ => {
                return Err(InvalidSnapshot::Action {
                    rule: rule.name.clone(),
                })
            }
        }
        if let Some(mirror) = &rule.mirror {
            self.destination("mirror service", mirror.service, mirror.subset)?;
            per_million("mirror share", mirror.per_million)?;
        }
        if let Some(fault) = &rule.fault {
            if let Some(delay) = &fault.delay {
                per_million("fault delay share", delay.per_million)?;
            }
            if let Some(abort) = &fault.abort {
                per_million("fault abort share", abort.per_million)?;
                if !(200..=599).contains(&abort.status) {
                    return out_of_range("fault abort status", abort.status.into(), "200..=599");
                }
            }
        }
        if let Some(limit) = &rule.rate_limit {
            if limit.tokens_per_fill == 0 || limit.max_tokens < limit.tokens_per_fill {
                return out_of_range(
                    "rate limit bucket size",
                    limit.max_tokens.into(),
                    "tokens per fill..",
                );
            }
            if limit.fill_interval_ms == 0 {
                return out_of_range("rate limit fill interval", 0, "1..");
            }
        }
        Ok(())
    }
}

type Checked = Result<(), InvalidSnapshot>;

fn policy(policy: &TrafficPolicy) -> Checked {
    if let Some(outlier) = &policy.outlier {
        if outlier.max_ejection_percent > 100 {
            return out_of_range(
                "max ejection percent",
                outlier.max_ejection_percent.into(),
                "0..=100",
            );
        }
        if outlier.interval_ms == 0 {
            return out_of_range("outlier detection interval", 0, "1..");
        }
    }
    Ok(())
}

/// Trace sampling within 100 %, and an access log format meshd can render.
fn telemetry(telemetry: &crate::Telemetry) -> Checked {
    per_million("trace sampling", telemetry.trace_sampling_per_million)?;
    if let Some(url) = &telemetry.trace_collector {
        crate::collector::parse(url)?;
    }
    if let Some(crate::AccessLog::Text(format)) = &telemetry.access_log {
        crate::access_log::parse(format).map_err(|error| InvalidSnapshot::AccessLogFormat {
            format: format.clone(),
            error,
        })?;
    }
    Ok(())
}

fn per_million(what: &'static str, value: u32) -> Checked {
    if value > 1_000_000 {
        return out_of_range(what, value.into(), "0..=1000000 (millionths)");
    }
    Ok(())
}

fn out_of_range(what: &'static str, value: u64, range: &'static str) -> Checked {
    Err(InvalidSnapshot::OutOfRange { what, value, range })
}

/// `hosts` sorted by name then namespace, each pair once, and a name every caller resolves
/// (no namespace) never also listed as a short name.
fn hosts_sorted_unique(hosts: &[HostEntry]) -> Result<(), InvalidSnapshot> {
    for pair in hosts.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ordered =
            (a.host.as_str(), a.namespace.as_deref()) < (b.host.as_str(), b.namespace.as_deref());
        if !ordered || (a.host == b.host && a.namespace.is_none()) {
            return Err(InvalidSnapshot::Unsorted {
                what: "hosts",
                name: b.host.clone(),
            });
        }
    }
    Ok(())
}

/// Workloads are sorted by name, then namespace; one name may be used once per namespace.
fn workloads_sorted_unique(workloads: &[crate::Workload]) -> Result<(), InvalidSnapshot> {
    for pair in workloads.windows(2) {
        let [a, b] = pair else { continue };
        if (a.name.as_str(), a.namespace.as_str()) >= (b.name.as_str(), b.namespace.as_str()) {
            return Err(InvalidSnapshot::Unsorted {
                what: "workloads",
                name: format!("{}/{}", b.namespace, b.name),
            });
        }
    }
    Ok(())
}

fn sorted_unique<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), InvalidSnapshot> {
    let mut previous: Option<&str> = None;
    for name in names {
        if previous.is_some_and(|p| p >= name) {
            return Err(InvalidSnapshot::Unsorted {
                what,
                name: name.to_owned(),
            });
        }
        previous = Some(name);
    }
    Ok(())
}

fn in_range(what: &'static str, index: u32, len: usize) -> Result<(), InvalidSnapshot> {
    if (index as usize) < len {
        Ok(())
    } else {
        Err(InvalidSnapshot::IndexOutOfRange { what, index, len })
    }
}
