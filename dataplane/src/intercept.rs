//! Transparent capture: `meshd iptables` installs the rules that send a network namespace's
//! TCP through meshd (as istio-iptables does), meshd marks the sockets it opens so its own
//! connections are not captured again, and reads where a captured connection was headed.

pub mod command;
pub mod install;
pub mod rules;
pub mod socket;

pub use rules::{Capture, Family, Marks};
