//! The snapshot contract between `meshc` and `meshd`: validated plain data, and its file format.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod authz;
pub mod collector;
mod file;
pub mod host;
pub mod http;
mod index;
pub mod matching;
mod model;
mod validate;

pub use file::{decode, encode, DecodeError, FORMAT_VERSION, HEADER_LEN, MAGIC};
pub use index::CandidateLists;
pub use model::*;
pub use validate::InvalidSnapshot;
