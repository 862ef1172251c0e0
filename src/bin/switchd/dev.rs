//! A port's device: any [`vnet_ports::Port`] (a TAP switchd made or attached to, an
//! existing interface through an AF_PACKET socket, a QEMU stream or dgram peer).

use vnet_control::PortKind;
use vnet_ports::{Port, PortType};

/// The device of a port.
pub(crate) type Dev = Box<dyn Port>;

/// What `port-list` calls the kind of `dev`.
pub(crate) fn kind(dev: &dyn Port) -> PortKind {
    match dev.port_type() {
        PortType::Packet => PortKind::Netdev,
        PortType::Stream => PortKind::Stream,
        PortType::Dgram => PortKind::Dgram,
        _ => PortKind::Tap,
    }
}
