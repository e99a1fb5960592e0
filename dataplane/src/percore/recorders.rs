//! Where a core records finished requests: Istio's metrics, the access log's buffers and the
//! span buffers, each flushed off the request path.

use std::cell::RefCell;

use crate::export::sink::{Channel, CoreLog};
use crate::metrics::CoreMetrics;

/// One core's recorders.
#[derive(Debug)]
pub struct Recorders {
    /// Istio's request metrics for the requests this core finished.
    pub metrics: RefCell<CoreMetrics>,
    /// This core's access log buffer.
    pub access_log: CoreLog,
    /// This core's span buffer (spans are made only while the route state has a collector).
    pub spans: CoreLog,
}

impl Recorders {
    /// Recorders for core `index`, writing to the given channels.
    pub fn new(index: usize, access_log: Option<Channel>, spans: Option<Channel>) -> Self {
        Self {
            metrics: RefCell::new(CoreMetrics::default()),
            access_log: CoreLog::new(index, access_log),
            spans: CoreLog::new(index, spans),
        }
    }

    /// Flushes what the buffers hold and closes them (at the end of a drain).
    pub fn close(&self) {
        self.access_log.close();
        self.spans.close();
    }
}
