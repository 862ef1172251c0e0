//! Why a control request failed: what `switchctl` prints after `error:`.

/// The failure of a control request; its `Display` is the response's error text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No port of the network has that name.
    #[error("no port named {name:?} in network {network:?}")]
    NoSuchPort {
        /// The name asked for.
        name: String,
        /// The network asked.
        network: String,
    },
    /// Another port has that name.
    #[error("port name {0:?} is in use")]
    PortNameInUse(String),
    /// The request needs the network's gateway, and the network has none.
    #[error("this network has no gateway (bridge mode)")]
    NoGateway,
    /// The definition refused the change.
    #[error(transparent)]
    Config(#[from] vnet_config::Error),
    /// A port could not be made or attached (the message carries the causes).
    #[error("{0}")]
    Port(String),
    /// The live definition could not be saved.
    #[error("cannot save the live definition: {0}")]
    SaveLive(#[source] std::io::Error),
    /// The request's arguments are wrong or do not go together.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ControlError {
    fn from(s: String) -> Self {
        Self::Invalid(s)
    }
}

impl From<&str> for ControlError {
    fn from(s: &str) -> Self {
        Self::Invalid(s.to_owned())
    }
}

impl From<vnet_ports::Error> for ControlError {
    /// The error and its cause, `: `-separated (the response carries text).
    fn from(e: vnet_ports::Error) -> Self {
        let mut s = e.to_string();
        if let Some(cause) = std::error::Error::source(&e) {
            s.push_str(&format!(": {cause}"));
        }
        Self::Port(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_clients_saw_before_the_type() {
        let e = ControlError::NoSuchPort {
            name: "vm1".into(),
            network: "default".into(),
        };
        assert_eq!(e.to_string(), r#"no port named "vm1" in network "default""#);
        assert_eq!(
            ControlError::PortNameInUse("vm1".into()).to_string(),
            r#"port name "vm1" is in use"#
        );
        assert_eq!(
            ControlError::from("a port is either --secure or --trusted").to_string(),
            "a port is either --secure or --trusted"
        );
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(ControlError::SaveLive(io)
            .to_string()
            .starts_with("cannot save the live definition: "));
    }
}
