//! The lease database: an append-only, crash-safe text log of grants and removals.
//!
//! This module does file I/O and is kept apart from the sans-IO [`Server`](crate::Server):
//! the driver feeds it the server's `Lease*` events and loads it at start-up.
//!
//! # Format
//!
//! UTF-8 text, one record per line, each line ending in `\n`:
//!
//! ```text
//! # vnet leases v1
//! grant 1767225600 52:54:00:12:34:56 192.168.122.91 vm1 -
//! grant never 52:54:00:aa:bb:cc 192.168.122.5 - 01525400aabbcc
//! remove 52:54:00:12:34:56 192.168.122.91
//! ```
//!
//! - The first line is the header `# vnet leases v1`.
//! - `grant <expires> <mac> <ip> <hostname> <client-id>` records a lease granted or
//!   renewed: `<expires>` is the end of the lease in seconds since the Unix epoch, or
//!   `never`; `<mac>` is lowercase `xx:xx:xx:xx:xx:xx`; `<hostname>` is `-` for none,
//!   with bytes outside `!`..`~` and `%` written as `%XX` (and a name that is just `-`
//!   as `%2D`); `<client-id>` is the option 61 bytes in lowercase hex, or `-`.
//!   A grant replaces any earlier lease of the same address and any other lease of
//!   the same client (same client identifier, else same MAC without one).
//! - `remove <mac> <ip>` ends the lease of `<ip>` if `<mac>` holds it.
//! - `grant6 <expires> <duid> <iaid> <ip6> <hostname>` records a DHCPv6 lease: the
//!   client's DUID in lowercase hex, the IA's id in decimal, the IPv6 address; it
//!   replaces any earlier lease of the address and any other of the same DUID and IA.
//! - `remove6 <duid> <iaid> <ip6>` ends that DHCPv6 lease if the DUID and IA hold it.
//! - Blank lines and other lines starting with `#` are ignored.
//!
//! Replaying the records in order gives the leases. Expired leases are returned too:
//! the server drops them (and remembers their addresses for their clients).
//!
//! # Crash safety
//!
//! Each record is appended with one `write` and made durable with `fdatasync` before
//! [`LeaseDb::grant`]/[`LeaseDb::remove`] return. A crash (`kill -9`, power loss) can
//! only leave the last line unfinished, without its `\n`: [`LeaseDb::open`] ignores such
//! a torn record and cuts it off before appending. A failed append is cut off the same
//! way at once. Compaction writes a snapshot to `<file>.tmp`, syncs it, renames it over
//! the log and syncs the directory, so the file is always either the old log or the
//! new snapshot. Any other line that does not parse is an error naming the file and line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::event::{Lease, Mac};
use crate::v6::Lease6;

/// The first line of a lease database.
pub const HEADER: &str = "# vnet leases v1";

/// An error of the lease database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A file operation failed.
    #[error("{}: cannot {op}", path.display())]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// What was being done: "open", "read", "append to", ...
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line (other than a torn last one) does not parse.
    #[error("{}: line {line}: {reason}", path.display())]
    Parse {
        /// The database file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// An open lease database. See the [module documentation](self) for the format.
///
/// Bounds: the log is compacted when it holds more than twice as many records as live
/// leases plus 64, so its size follows the lease table's.
#[derive(Debug)]
pub struct LeaseDb {
    path: PathBuf,
    file: File,
    /// The file's length after the last complete record.
    len: u64,
    /// The leases the log holds (the replay of its records).
    live: BTreeMap<Ipv4Addr, Lease>,
    /// The DHCPv6 leases the log holds.
    live6: BTreeMap<Ipv6Addr, Lease6>,
    /// The number of records in the log.
    records: usize,
}

impl LeaseDb {
    /// Opens (creating) the database at `path`; returns the leases it holds, by address.
    /// A torn last record (a crash mid-write) is ignored; any other bad line is an error
    /// naming the file and line.
    pub fn open(path: &Path) -> Result<(Self, Vec<Lease>), DbError> {
        let io_err = |op| {
            move |source| DbError::Io {
                path: path.to_owned(),
                op,
                source,
            }
        };
        // A snapshot that was never renamed into place is garbage.
        let _ = fs::remove_file(tmp_path(path));
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read")(e)),
        };
        // Everything after the last newline is a torn record.
        let good_len = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let good = data.get(..good_len).unwrap_or_default();
        if good.is_empty() {
            // New, or a crash before the header was complete: start afresh.
            let mut db = Self {
                path: path.to_owned(),
                file: File::create(path).map_err(io_err("create"))?,
                len: 0,
                live: BTreeMap::new(),
                live6: BTreeMap::new(),
                records: 0,
            };
            db.append(&format!("{HEADER}\n"))?;
            sync_dir(path)?;
            return Ok((db, Vec::new()));
        }
        let text = std::str::from_utf8(good).map_err(|e| {
            let line = good
                .get(..e.valid_up_to())
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
                + 1;
            DbError::Parse {
                path: path.to_owned(),
                line,
                reason: "not UTF-8".into(),
            }
        })?;
        let mut live = BTreeMap::new();
        let mut live6 = BTreeMap::new();
        let mut records = 0;
        for (i, line) in text.lines().enumerate() {
            let parse_err = |reason: String| DbError::Parse {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            if i == 0 {
                if line != HEADER {
                    return Err(parse_err(format!(
                        "not a lease database: expected '{HEADER}'"
                    )));
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_record(line).map_err(parse_err)? {
                Record::Grant(lease) => apply_grant(&mut live, lease),
                Record::Remove(mac, ip) => apply_remove(&mut live, mac, ip),
                Record::Grant6(lease) => apply_grant6(&mut live6, lease),
                Record::Remove6(duid, iaid, ip) => {
                    if live6
                        .get(&ip)
                        .is_some_and(|l| l.duid == duid && l.iaid == iaid)
                    {
                        live6.remove(&ip);
                    }
                }
            }
            records += 1;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err("open"))?;
        if good_len < data.len() {
            file.set_len(good_len as u64).map_err(io_err("truncate"))?;
            file.sync_data().map_err(io_err("sync"))?;
        }
        let leases = live.values().cloned().collect();
        Ok((
            Self {
                path: path.to_owned(),
                file,
                len: good_len as u64,
                live,
                live6,
                records,
            },
            leases,
        ))
    }

    /// Records a grant (or renewal) durably: returns after fsync.
    pub fn grant(&mut self, lease: &Lease) -> Result<(), DbError> {
        self.append(&grant_line(lease))?;
        apply_grant(&mut self.live, lease.clone());
        self.records += 1;
        self.maybe_compact()
    }

    /// Records a release/expiry durably: returns after fsync. Does nothing if `mac` does
    /// not hold `ip` in the database.
    pub fn remove(&mut self, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), DbError> {
        if self.live.get(&ip).is_none_or(|l| l.mac != mac) {
            return Ok(());
        }
        self.append(&format!("remove {} {ip}\n", Mac(mac)))?;
        apply_remove(&mut self.live, mac, ip);
        self.records += 1;
        self.maybe_compact()
    }

    /// Records a DHCPv6 grant (or renewal) durably: returns after fsync.
    pub fn grant6(&mut self, lease: &Lease6) -> Result<(), DbError> {
        self.append(&grant6_line(lease))?;
        apply_grant6(&mut self.live6, lease.clone());
        self.records += 1;
        self.maybe_compact()
    }

    /// Records the end of a DHCPv6 lease durably. Does nothing if the DUID and IA do
    /// not hold `ip` in the database.
    pub fn remove6(&mut self, duid: &[u8], iaid: u32, ip: Ipv6Addr) -> Result<(), DbError> {
        if self
            .live6
            .get(&ip)
            .is_none_or(|l| l.duid != duid || l.iaid != iaid)
        {
            return Ok(());
        }
        self.append(&format!("remove6 {} {iaid} {ip}\n", hex(duid)))?;
        self.live6.remove(&ip);
        self.records += 1;
        self.maybe_compact()
    }

    /// The DHCPv6 leases the database holds, by address.
    pub fn leases6(&self) -> impl Iterator<Item = &Lease6> {
        self.live6.values()
    }

    /// Rewrites the file as a snapshot of `leases` (temp file, fsync, rename, fsync
    /// dir). [`grant`](Self::grant) and [`remove`](Self::remove) call it themselves
    /// when the log grows past [`compaction_due`](Self::compaction_due).
    pub fn compact(&mut self, leases: &[Lease]) -> Result<(), DbError> {
        let tmp = tmp_path(&self.path);
        let io_err = |op| {
            let path = tmp.clone();
            move |source| DbError::Io { path, op, source }
        };
        let mut live = BTreeMap::new();
        for l in leases {
            apply_grant(&mut live, l.clone());
        }
        let mut text = format!("{HEADER}\n");
        for l in live.values() {
            text.push_str(&grant_line(l));
        }
        // the DHCPv6 leases are kept as they are
        for l in self.live6.values() {
            text.push_str(&grant6_line(l));
        }
        let mut f = File::create(&tmp).map_err(io_err("create"))?;
        f.write_all(text.as_bytes()).map_err(io_err("write"))?;
        f.sync_all().map_err(io_err("sync"))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io_err("rename"))?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| DbError::Io {
                path: self.path.clone(),
                op: "open",
                source,
            })?;
        self.len = text.len() as u64;
        self.records = live.len() + self.live6.len();
        self.live = live;
        Ok(())
    }

    /// The leases the database holds, by address.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.live.values()
    }

    /// The number of records in the log (the header not counted).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether the log holds more than twice as many records as live leases plus 64.
    pub fn compaction_due(&self) -> bool {
        let live = self.live.len().saturating_add(self.live6.len());
        self.records > live.saturating_mul(2).saturating_add(64)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn maybe_compact(&mut self) -> Result<(), DbError> {
        if self.compaction_due() {
            let leases: Vec<Lease> = self.live.values().cloned().collect();
            self.compact(&leases)?;
        }
        Ok(())
    }

    /// Appends one complete record with a single write, then syncs. On failure the
    /// file is cut back to the last complete record.
    fn append(&mut self, line: &str) -> Result<(), DbError> {
        let result = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            let _ = self.file.set_len(self.len);
            return Err(DbError::Io {
                path: self.path.clone(),
                op: "append to",
                source,
            });
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

/// A parsed record.
enum Record {
    Grant(Lease),
    Remove([u8; 6], Ipv4Addr),
    Grant6(Lease6),
    Remove6(Vec<u8>, u32, Ipv6Addr),
}

fn parse_expiry(s: &str) -> Result<Option<SystemTime>, String> {
    match s {
        "never" => Ok(None),
        s => {
            let secs: u64 = s.parse().map_err(|_| format!("bad expiry '{s}'"))?;
            SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(secs))
                .map(Some)
                .ok_or_else(|| format!("expiry '{s}' out of range"))
        }
    }
}

fn parse_ip6(s: &str) -> Result<Ipv6Addr, String> {
    s.parse().map_err(|_| format!("bad address '{s}'"))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn apply_grant6(live: &mut BTreeMap<Ipv6Addr, Lease6>, lease: Lease6) {
    live.retain(|ip, l| *ip != lease.ip && (l.duid != lease.duid || l.iaid != lease.iaid));
    live.insert(lease.ip, lease);
}

fn grant6_line(l: &Lease6) -> String {
    let expires = expiry_field(l.expires);
    let hostname = l.hostname.as_deref().map_or_else(|| "-".to_owned(), escape);
    format!(
        "grant6 {expires} {} {} {} {hostname}\n",
        hex(&l.duid),
        l.iaid,
        l.ip
    )
}

fn parse_record(line: &str) -> Result<Record, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["grant", expires, mac, ip, hostname, client_id] => {
            let expires = parse_expiry(expires)?;
            Ok(Record::Grant(Lease {
                mac: parse_mac(mac)?,
                client_id: match *client_id {
                    "-" => None,
                    s => Some(parse_hex(s)?),
                },
                ip: parse_ip(ip)?,
                hostname: match *hostname {
                    "-" => None,
                    s => Some(unescape(s)?),
                },
                expires,
            }))
        }
        ["remove", mac, ip] => Ok(Record::Remove(parse_mac(mac)?, parse_ip(ip)?)),
        ["grant6", expires, duid, iaid, ip, hostname] => Ok(Record::Grant6(Lease6 {
            ip: parse_ip6(ip)?,
            duid: parse_hex(duid)?,
            iaid: iaid.parse().map_err(|_| format!("bad IAID '{iaid}'"))?,
            hostname: match *hostname {
                "-" => None,
                s => Some(unescape(s)?),
            },
            expires: parse_expiry(expires)?,
        })),
        ["remove6", duid, iaid, ip] => Ok(Record::Remove6(
            parse_hex(duid)?,
            iaid.parse().map_err(|_| format!("bad IAID '{iaid}'"))?,
            parse_ip6(ip)?,
        )),
        [kind, ..] if ["grant", "remove", "grant6", "remove6"].contains(kind) => {
            Err(format!("wrong number of fields for '{kind}'"))
        }
        _ => Err("unknown record".into()),
    }
}

fn apply_grant(live: &mut BTreeMap<Ipv4Addr, Lease>, lease: Lease) {
    let key = lease.key();
    live.retain(|ip, l| *ip != lease.ip && l.key() != key);
    live.insert(lease.ip, lease);
}

fn apply_remove(live: &mut BTreeMap<Ipv4Addr, Lease>, mac: [u8; 6], ip: Ipv4Addr) {
    if live.get(&ip).is_some_and(|l| l.mac == mac) {
        live.remove(&ip);
    }
}

/// An expiry as a record writes it: seconds since the Unix epoch, or `never`.
fn expiry_field(t: Option<SystemTime>) -> String {
    match t {
        None => "never".to_owned(),
        Some(t) => t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string(),
    }
}

fn grant_line(l: &Lease) -> String {
    let expires = expiry_field(l.expires);
    let hostname = l.hostname.as_deref().map_or_else(|| "-".to_owned(), escape);
    let client_id = match l.client_id.as_deref() {
        None | Some([]) => "-".to_owned(),
        Some(id) => id.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
    };
    format!(
        "grant {expires} {} {} {hostname} {client_id}\n",
        Mac(l.mac),
        l.ip
    )
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts
            .next()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| format!("bad MAC '{s}'"))?;
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC '{s}'"))?;
    }
    if parts.next().is_some() {
        return Err(format!("bad MAC '{s}'"));
    }
    Ok(mac)
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("bad address '{s}'"))
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("bad client id '{s}'"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad client id '{s}'"))
        })
        .collect()
}

fn escape(s: &str) -> String {
    if s == "-" {
        return "%2D".into();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in host name '{s}'"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("host name '{s}' is not UTF-8"))
}

/// `<file>.tmp` beside `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a create or rename of `path` durable.
fn sync_dir(path: &Path) -> Result<(), DbError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| DbError::Io {
            path: dir.to_owned(),
            op: "sync",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!("vnet-dhcp-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn lease(last: u8, expires: Option<u64>) -> Lease {
        Lease {
            mac: [0x52, 0x54, 0, 0x12, 0x34, last],
            client_id: None,
            ip: Ipv4Addr::new(192, 168, 122, last),
            hostname: None,
            expires: expires.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    #[test]
    fn dhcpv6_leases_share_the_log_and_survive_reopen_and_compaction() {
        let dir = TempDir::new("v6");
        let path = dir.0.join("default.leases");
        let (mut db, _) = LeaseDb::open(&path).unwrap();
        let l6 = |n: u8, iaid: u32| Lease6 {
            ip: format!("fd00::1:{n}").parse().unwrap(),
            duid: vec![
                0, 1, 0, 1, 0x32, 0xa5, 0xd0, 0x44, 0x52, 0x54, 0, 0x12, 0x34, n,
            ],
            iaid,
            hostname: (n == 1).then(|| "peter".into()),
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
        };
        db.grant(&lease(10, None)).unwrap();
        db.grant6(&l6(1, 7)).unwrap();
        db.grant6(&l6(2, 7)).unwrap();
        db.remove6(&l6(2, 7).duid, 8, l6(2, 7).ip).unwrap(); // another IA: no record
        db.remove6(&l6(2, 7).duid, 7, l6(2, 7).ip).unwrap();
        drop(db);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("grant6 1767225600 0001000132a5d044525400123401 7 fd00::1:1 peter\n"),
            "{text}"
        );
        let (mut db, v4) = LeaseDb::open(&path).unwrap();
        assert_eq!(v4, vec![lease(10, None)]);
        assert_eq!(db.leases6().cloned().collect::<Vec<_>>(), vec![l6(1, 7)]);
        // a compaction of the IPv4 leases keeps the IPv6 ones
        db.compact(&[]).unwrap();
        drop(db);
        let (db, v4) = LeaseDb::open(&path).unwrap();
        assert!(v4.is_empty());
        assert_eq!(db.leases6().count(), 1);
        assert_eq!(db.records(), 1);
    }

    #[test]
    fn grant_remove_reopen() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("default.leases");
        let (mut db, leases) = LeaseDb::open(&path).unwrap();
        assert!(leases.is_empty());
        let a = Lease {
            hostname: Some("vm one %".into()),
            client_id: Some(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 10]),
            ..lease(10, Some(1_767_225_600))
        };
        let b = Lease {
            hostname: Some("-".into()),
            ..lease(11, None)
        };
        let c = lease(12, Some(1_767_229_200));
        db.grant(&a).unwrap();
        db.grant(&b).unwrap();
        db.grant(&c).unwrap();
        db.remove(c.mac, c.ip).unwrap();
        db.remove(b.mac, a.ip).unwrap(); // Not b's address: no record.
        drop(db);

        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# vnet leases v1\n\
             grant 1767225600 52:54:00:12:34:0a 192.168.122.10 vm%20one%20%25 0152540012340a\n\
             grant never 52:54:00:12:34:0b 192.168.122.11 %2D -\n\
             grant 1767229200 52:54:00:12:34:0c 192.168.122.12 - -\n\
             remove 52:54:00:12:34:0c 192.168.122.12\n"
        );
        let (db, leases) = LeaseDb::open(&path).unwrap();
        assert_eq!(leases, vec![a.clone(), b]);
        assert_eq!(db.records(), 4);

        // A renewal to another address of the same client replaces the old lease.
        let (mut db, _) = LeaseDb::open(&path).unwrap();
        let moved = Lease {
            ip: Ipv4Addr::new(192, 168, 122, 20),
            ..a.clone()
        };
        db.grant(&moved).unwrap();
        drop(db);
        let (_, leases) = LeaseDb::open(&path).unwrap();
        assert_eq!(
            leases.iter().map(|l| l.ip.octets()[3]).collect::<Vec<_>>(),
            vec![11, 20]
        );
    }

    #[test]
    fn torn_last_record_is_ignored_and_cut_off() {
        let dir = TempDir::new("torn");
        let path = dir.0.join("n.leases");
        let (mut db, _) = LeaseDb::open(&path).unwrap();
        db.grant(&lease(10, None)).unwrap();
        drop(db);
        // A crash in the middle of appending the next record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"grant 17672256").unwrap();
        drop(f);
        let (mut db, leases) = LeaseDb::open(&path).unwrap();
        assert_eq!(leases, vec![lease(10, None)]);
        db.grant(&lease(11, None)).unwrap();
        drop(db);
        let (_, leases) = LeaseDb::open(&path).unwrap();
        assert_eq!(leases, vec![lease(10, None), lease(11, None)]);
        assert!(!fs::read_to_string(&path).unwrap().contains("17672256"));

        // A crash while the header itself was being written.
        fs::write(&path, "# vnet lea").unwrap();
        let (_, leases) = LeaseDb::open(&path).unwrap();
        assert!(leases.is_empty());
        assert_eq!(fs::read_to_string(&path).unwrap(), "# vnet leases v1\n");
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_it() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join("n.leases");
        fs::write(
            &path,
            "# vnet leases v1\n\
             grant never 52:54:00:12:34:0a 192.168.122.10 - -\n\
             grant never 52:54:00:12:34:0b 192.168.122.300 - -\n\
             remove 52:54:00:12:34:0a 192.168.122.10\n",
        )
        .unwrap();
        let err = LeaseDb::open(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: line 3: bad address '192.168.122.300'", path.display())
        );
        fs::write(&path, "hello\n").unwrap();
        let err = LeaseDb::open(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("line 1: not a lease database: expected '# vnet leases v1'"),
            "{err}"
        );
        fs::write(&path, "# vnet leases v1\nfrobnicate\ngrant never\n").unwrap();
        let err = LeaseDb::open(&path).unwrap_err().to_string();
        assert!(err.ends_with("line 2: unknown record"), "{err}");
    }

    #[test]
    fn compaction_keeps_the_live_leases() {
        let dir = TempDir::new("compact");
        let path = dir.0.join("n.leases");
        let (mut db, _) = LeaseDb::open(&path).unwrap();
        // Renew the same two leases until the log is compacted on its own.
        for round in 0..40u64 {
            db.grant(&lease(10, Some(1000 + round))).unwrap();
            db.grant(&lease(11, Some(2000 + round))).unwrap();
        }
        assert!(db.records() <= 2 * 2 + 64, "{}", db.records());
        assert!(!db.compaction_due());
        drop(db);
        let (mut db, leases) = LeaseDb::open(&path).unwrap();
        assert_eq!(leases, vec![lease(10, Some(1039)), lease(11, Some(2039))]);

        // An explicit snapshot.
        db.compact(&[lease(12, None)]).unwrap();
        assert_eq!(db.records(), 1);
        assert!(!tmp_path(&path).exists());
        db.remove(lease(12, None).mac, lease(12, None).ip).unwrap();
        drop(db);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# vnet leases v1\n\
             grant never 52:54:00:12:34:0c 192.168.122.12 - -\n\
             remove 52:54:00:12:34:0c 192.168.122.12\n"
        );
        let (_, leases) = LeaseDb::open(&path).unwrap();
        assert!(leases.is_empty());
    }

    const CRASH_ENV: &str = "VNET_DHCP_CRASH_CHILD_DB";
    const SLOTS: u64 = 40;

    fn slot_lease(i: u64) -> Lease {
        let s = u8::try_from(i % SLOTS).unwrap();
        Lease {
            hostname: Some(format!("vm{s}")),
            ..lease(s, Some(1_000_000 + i))
        }
    }

    /// The child of [`kill_9_keeps_every_returned_grant`]: grants (renewing 40 leases
    /// round-robin, so the log is compacted every few dozen records) until killed,
    /// printing each grant once it returned. Does nothing when run on its own.
    #[test]
    fn crash_child() {
        let Some(path) = std::env::var_os(CRASH_ENV) else {
            return;
        };
        let (mut db, leases) = LeaseDb::open(Path::new(&path)).unwrap();
        let start = leases
            .iter()
            .filter_map(|l| l.expires)
            .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() - 1_000_000 + 1)
            .max()
            .unwrap_or(0);
        let mut out = io::stdout().lock();
        for i in start.. {
            db.grant(&slot_lease(i)).unwrap();
            writeln!(out, "granted {i}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn kill_9_keeps_every_returned_grant() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let dir = TempDir::new("kill9");
        let path = dir.0.join("n.leases");
        for round in 0..4u64 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "db::tests::crash_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut last = None;
            // Let it run for a varying number of grants, then SIGKILL it mid-flight.
            let stop_after = 150 + round * 97;
            let mut seen = 0;
            for line in lines.by_ref() {
                if let Some(n) = line.unwrap().strip_prefix("granted ") {
                    last = Some(n.parse::<u64>().unwrap());
                    seen += 1;
                    if seen >= stop_after {
                        break;
                    }
                }
            }
            child.kill().unwrap(); // SIGKILL.
                                   // Grants that returned after we stopped reading count too.
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("granted ") {
                    last = Some(n.parse().unwrap());
                }
            }
            child.wait().unwrap();
            let last = last.expect("the child granted something");
            let (_, leases) = LeaseDb::open(&path).unwrap();
            for i in last.saturating_sub(SLOTS - 1)..=last {
                let want = slot_lease(i);
                let got = leases.iter().find(|l| l.ip == want.ip).expect("lease kept");
                assert!(got.expires >= want.expires, "round {round}: grant {i} lost");
            }
        }
    }

    #[test]
    fn escapes_round_trip() {
        for s in ["vm1", "-", "a b", "100%", "été", "x\ny"] {
            let e = escape(s);
            assert!(!e.contains([' ', '\n']) && e != "-", "{e}");
            assert_eq!(unescape(&e).unwrap(), s);
        }
        assert!(unescape("%zz").is_err());
        assert!(unescape("%4").is_err());
        assert_eq!(parse_hex("01ff").unwrap(), vec![1, 255]);
        assert!(parse_hex("0").is_err());
        assert!(parse_mac("52:54:00:12:34").is_err());
        assert!(parse_mac("52:54:00:12:34:56:78").is_err());
    }
}
