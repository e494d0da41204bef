//! The HTTP machinery every upstream kind shares: a request (method, query, JSON or form
//! body, auth scheme), sent under one deadline with bounded retries and a body cap, and a
//! lister that follows pages and reuses the last parse when the bytes have not changed.

mod client;
mod collect;
mod hop_by_hop;
mod paging;
mod request;
mod retry;
mod stream;

pub use client::{Client, HttpSettings};
pub use collect::Fetched;
pub use hop_by_hop::strip_hop_by_hop;
pub use paging::{Lister, Page, PageParser};
pub use request::{endpoint, with_segment, Auth, Request};
pub use stream::Streamed;
