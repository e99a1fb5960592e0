//! Istio's TCP metrics for relayed connections: `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total` (from the client) and
//! `istio_tcp_sent_bytes_total` (to the client). A connection keeps the index of its series,
//! so counting its bytes while it lives costs no lookup.

use rustc_hash::FxHashMap;

use super::{Interned, Reporter};

/// A relayed connection, as metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub reporter: Reporter,
    /// The service the connection went to, by its snapshot name; `None` when it had none.
    pub service: Option<&'a str>,
    /// The other side's SPIFFE ID from mutual TLS.
    pub peer: Option<&'a str>,
    /// Envoy response flags, `-` without any (`UF`: the upstream could not be reached).
    pub flags: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    reporter: Reporter,
    service: Option<u32>,
    peer: Option<u32>,
    flags: &'static str,
}

/// One series' counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpSeries {
    pub opened: u64,
    pub closed: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

impl TcpSeries {
    pub(super) fn add(&mut self, other: &Self) {
        self.opened += other.opened;
        self.closed += other.closed;
        self.received_bytes += other.received_bytes;
        self.sent_bytes += other.sent_bytes;
    }
}

/// What a TCP series is told apart by, spelled out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpLabels {
    pub reporter: Reporter,
    pub service: Option<String>,
    pub peer: Option<String>,
    pub flags: &'static str,
}

/// One core's TCP series.
#[derive(Debug, Default)]
pub(super) struct CoreTcp {
    series: Vec<(Key, TcpSeries)>,
    index: FxHashMap<Key, usize>,
}

impl CoreTcp {
    /// Counts a connection opened; its series is at the index returned.
    pub(super) fn open(&mut self, strings: &mut Interned, connection: &Connection<'_>) -> usize {
        let key = Key {
            reporter: connection.reporter,
            service: connection.service.map(|s| strings.intern(s)),
            peer: connection.peer.map(|p| strings.intern(p)),
            flags: connection.flags,
        };
        let index = *self.index.entry(key).or_insert_with(|| {
            self.series.push((key, TcpSeries::default()));
            self.series.len() - 1
        });
        self.series[index].1.opened += 1;
        index
    }

    pub(super) fn series_mut(&mut self, index: usize) -> Option<&mut TcpSeries> {
        self.series.get_mut(index).map(|(_, series)| series)
    }

    /// The series with their label values spelled out, for summing across cores.
    pub(super) fn snapshot(&self, strings: &Interned) -> Vec<(TcpLabels, TcpSeries)> {
        let series = self.series.iter().map(|(key, series)| {
            let labels = TcpLabels {
                reporter: key.reporter,
                service: strings.text(key.service),
                peer: strings.text(key.peer),
                flags: key.flags,
            };
            (labels, series.clone())
        });
        series.collect()
    }
}
