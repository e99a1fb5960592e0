//! Invariants a decoded snapshot must hold before a data plane may serve it.

use crate::Snapshot;

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
    /// A rule's destination weights do not add up to 100.
    #[error("rule {rule:?} has destination weights summing to {sum}, not 100")]
    WeightSum {
        /// Rule name.
        rule: String,
        /// Their sum.
        sum: u64,
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
        sorted_unique("workloads", self.workloads.iter().map(|w| w.name.as_str()))?;
        sorted_unique("hosts", self.hosts.iter().map(|h| h.host.as_str()))?;
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
            for subset in &service.subsets {
                for &index in &subset.endpoints {
                    in_range("subset endpoint", index, service.endpoints.len())?;
                }
            }
        }
        for host in &self.hosts {
            in_range("host route table", host.route_table, self.routes.len())?;
        }
        for table in &self.routes {
            in_range("route table service", table.service, self.services.len())?;
            for rule in &table.rules {
                let mut sum = 0u64;
                for dest in &rule.destinations {
                    in_range("destination service", dest.service, self.services.len())?;
                    if let Some(subset) = dest.subset {
                        let subsets = self.services[dest.service as usize].subsets.len();
                        in_range("destination subset", subset, subsets)?;
                    }
                    sum += u64::from(dest.weight);
                }
                if sum != 100 {
                    return Err(InvalidSnapshot::WeightSum {
                        rule: rule.name.clone(),
                        sum,
                    });
                }
            }
        }
        for workload in &self.workloads {
            for &service in &workload.outbound {
                in_range("workload outbound service", service, self.services.len())?;
            }
        }
        Ok(())
    }
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
