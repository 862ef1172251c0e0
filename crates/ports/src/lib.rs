//! Ports of a vnet switch: where frames enter and leave.
//!
//! - [`tap::Tap`]: a Linux TAP device opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD`, so
//!   the kernel hands over (and accepts) 64 KiB TSO/GSO super-frames with partial
//!   checksums, described by a virtio-net header. Created with a given or kernel-chosen
//!   name, optionally persistent, optionally inside another network namespace.
//! - [`packet::PacketPort`]: an `AF_PACKET` socket on an existing interface (a veth, a
//!   NIC), with `PACKET_VNET_HDR` so GSO frames pass, optionally promiscuous (a bridge
//!   uplink).
//! - [`unix::StreamPort`], [`unix::DgramPort`]: QEMU `-netdev stream` and `-netdev dgram`
//!   peers on unix sockets (plain frames).
//! - [`vhost_user::VhostUserPort`]: a vhost-user frontend (QEMU `-netdev vhost-user`,
//!   DPDK's `virtio_user`) on a unix socket; frames move through the guest's own
//!   virtio rings in shared memory.
//! - [`soft`]: checksum completion and TCP/UDP segmentation in software, for ports
//!   that take plain frames only.
//! - [`Port`]: the interface all of them share (receive, send, flush, counters, what to
//!   poll for, what an error means), and [`Drain`], the read loop a driver runs on a
//!   ready port.
//! - [`writers::Writers`]: threads that write frames to TAPs off the event loop.
//! - [`capture::Capture`]: frames recorded as pcap for a reader.
//! - [`FrameBuf`]: the buffer one frame travels in, virtio-net header first, sized for the
//!   largest GSO frame. The datapath reuses one, so it does not allocate per frame.
//!
//! This is the only crate of vnet with `unsafe` code; all of it is in `sys`, one
//! system call per function, each block with a `// SAFETY:` comment.
//!
//! It does not decide where frames go (that is `vnet-switch`) and does not poll: ports
//! are non-blocking file descriptors that the caller registers with its event loop.

#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod buf;
pub mod capture;
pub mod packet;
mod port;
pub mod soft;
mod stats;
mod sys;
pub mod tap;
pub mod unix;
pub mod vhost_user;
pub mod vnet_hdr;
pub mod writers;

pub use buf::{FrameBuf, MAX_FRAME_LEN};
pub use packet::{PacketOptions, PacketPort};
pub use port::{Drain, ErrorClass, Port, PortType, Readiness, Step};
pub use stats::IoStats;
pub use tap::{NetnsRef, Tap, TapOptions};
pub use unix::{DgramPort, StreamPort};
pub use vhost_user::{VhostUserMode, VhostUserPort};
pub use vnet_hdr::{VirtioNetHdr, VNET_HDR_LEN};

/// Errors from creating or configuring a port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An interface name longer than the kernel allows.
    #[error("interface name {name:?} is too long (at most {max} bytes)")]
    IfnameTooLong {
        /// The name asked for.
        name: String,
        /// The limit (IFNAMSIZ - 1).
        max: usize,
    },
    /// An interface name with characters the kernel refuses.
    #[error("interface name {name:?} is invalid: {why}")]
    IfnameInvalid {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The network namespace does not exist.
    #[error("network namespace {name:?} not found at {path}")]
    NetnsNotFound {
        /// The namespace asked for.
        name: String,
        /// Where it was looked for.
        path: String,
    },
    /// Entering the network namespace failed.
    #[error("cannot enter network namespace {name:?}")]
    Netns {
        /// The namespace.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An interface of that name exists already (and is not a TAP we may attach to).
    #[error("interface {name:?} exists already")]
    IfnameInUse {
        /// The name.
        name: String,
    },
    /// No interface of that name exists (in the namespace asked for).
    #[error("no interface named {name:?}")]
    NoSuchInterface {
        /// The name.
        name: String,
    },
    /// Opening `/dev/net/tun` failed.
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] std::io::Error),
    /// A vhost-user port's socket or threads could not be set up.
    #[error("vhost-user socket {path}")]
    VhostUser {
        /// The socket.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A TUN/TAP or interface ioctl failed.
    #[error("{op} failed on {name:?}")]
    Ioctl {
        /// Which operation.
        op: &'static str,
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Kernel limit on interface names, NUL excluded.
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn validate_ifname(name: &str) -> Result<(), Error> {
    let invalid = |why| Error::IfnameInvalid {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(Error::IfnameTooLong {
            name: name.to_owned(),
            max: IFNAME_MAX,
        });
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are reserved"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(invalid("contains '/', ':', NUL or white space"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("123456789012345").is_ok());
        assert!(matches!(
            validate_ifname("1234567890123456"),
            Err(Error::IfnameTooLong { max: 15, .. })
        ));
        for bad in ["", ".", "..", "a/b", "a b", "a:1"] {
            assert!(
                matches!(validate_ifname(bad), Err(Error::IfnameInvalid { .. })),
                "{bad:?}"
            );
        }
    }
}
