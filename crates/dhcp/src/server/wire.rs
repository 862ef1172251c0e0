//! Checking and decoding a client message before the server looks at it.

use super::*;

/// Checks and decodes a client message.
pub(super) fn parse(payload: &[u8]) -> Result<Request, DropReason> {
    let Some(header) = payload.get(..HEADER_LEN) else {
        return Err(DropReason::Truncated);
    };
    if header.get(236..240) != Some(&MAGIC[..]) {
        return Err(DropReason::Malformed);
    }
    let clean = sanitize_options(header, payload.get(HEADER_LEN..).unwrap_or_default())?;
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| DropReason::Malformed)?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(DropReason::NotRequest);
    }
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(DropReason::BadHardware);
    }
    if !msg.giaddr().is_unspecified() {
        return Err(DropReason::Relayed);
    }
    let Some(Ok(mac)) = header.get(CHADDR).map(<[u8; 6]>::try_from) else {
        return Err(DropReason::Truncated);
    };
    let kind = match msg.opts().msg_type() {
        None => return Err(DropReason::NoMessageType),
        Some(
            t @ (MessageType::Discover
            | MessageType::Request
            | MessageType::Decline
            | MessageType::Release
            | MessageType::Inform),
        ) => t,
        Some(_) => return Err(DropReason::UnexpectedMessageType),
    };
    let opts = msg.opts();
    let client_id = match opts.get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    };
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => nonzero(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let hostname = match opts.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
        _ => None,
    };
    Ok(Request {
        msg,
        kind,
        mac,
        client_id,
        requested,
        server_id,
        hostname,
    })
}

/// The options the server reads. Only these reach the decoder: dhcproto 0.15 has
/// `debug_assert!`s and unchecked subtractions on the lengths of some others (rapid
/// commit, client FQDN, bulk leasequery), which hostile input could trip.
pub(super) const READ_OPTIONS: [u8; 7] = [12, 50, 53, 54, 55, 57, 61];

/// Walks the options area and returns the message with only [`READ_OPTIONS`] kept
/// (in order, so RFC 3396 split options still concatenate), ended by End. Every option
/// must fit in the message (RFC 2132 §2); a message may end without the End option
/// (some clients omit it).
pub(super) fn sanitize_options(header: &[u8], mut opts: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut out = Vec::with_capacity(header.len() + opts.len() + 1);
    out.extend_from_slice(header);
    loop {
        match opts {
            [] | [255, ..] => break,
            [0, rest @ ..] => opts = rest,
            [code, len, rest @ ..] => {
                let n = usize::from(*len);
                let (Some(value), Some(tail)) = (rest.get(..n), rest.get(n..)) else {
                    return Err(DropReason::Truncated);
                };
                if READ_OPTIONS.contains(code) {
                    out.extend_from_slice(&[*code, *len]);
                    out.extend_from_slice(value);
                }
                opts = tail;
            }
            [_] => return Err(DropReason::Truncated),
        }
    }
    out.push(255);
    Ok(out)
}

/// A client's host name as dnsmasq keeps it: the first label, if it is a legal one
/// (1–63 of `[A-Za-z0-9-_]`, not starting with `-`).
pub(crate) fn sanitize_hostname(name: &str) -> Option<String> {
    let label = name.split('.').next()?.trim_end_matches('\0');
    let legal = !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    legal.then(|| label.to_owned())
}
