//! wharf's embedded resolver, Docker's 127.0.0.11 for wharf's sandboxes.
//!
//! It owns the name table ([`Table`]: which sandbox has which names and addresses on each
//! network), query answering ([`answer()`]), upstream forwarding and the serving of each
//! sandbox's sockets ([`Resolver`]). It opens no namespace itself: the daemon hands it
//! sockets already bound at [`LISTEN`] inside each sandbox's namespace, and an [`Opener`]
//! for sockets there, and it serves them all on the daemon's runtime. The wire format is
//! hickory-proto's; nothing here parses DNS by hand.

pub mod answer;
mod forward;
mod listen;
mod server;
pub mod table;

pub use answer::{answer, answer_into, Reply};
pub use forward::{Opener, Transport, Upstreams};
pub use server::{Resolver, Sockets, LISTEN};
pub use table::{Addresses, Entry, Origin, Table};
