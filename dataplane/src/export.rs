//! Lines handed off the cores: each core renders into its own buffers ([`sink`]), and a thread
//! writes full buffers to their destination ([`writer`]): a file or stdout for access logs, a
//! trace collector for spans. Nothing on the request path waits for the destination.

pub mod collector;
pub mod sink;
pub mod writer;
