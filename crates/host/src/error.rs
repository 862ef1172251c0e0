//! Why the host side of a network could not be opened.

use std::io;

/// A failure to open part of a network's host side. Its `Display` says what was being
/// done; the cause, when there is one, is its [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed while doing `what`.
    #[error("{what}")]
    Io {
        /// What was being done ("opening the lease database /var/lib/...").
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A port (an uplink interface) could not be opened.
    #[error("{what}")]
    Port {
        /// Which uplink of which network.
        what: String,
        /// The failure.
        #[source]
        source: vnet_ports::Error,
    },
    /// The lease database could not be opened.
    #[error("{what}")]
    Leases {
        /// Which database.
        what: String,
        /// The failure.
        #[source]
        source: vnet_dhcp::DbError,
    },
    /// The definition asks for something this host cannot give (no default route to
    /// take the uplink from, an uplink without an address, a mode without a gateway).
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(what: String, source: io::Error) -> Self {
        Self::Io { what, source }
    }
}
