//! Where networks live on disk: definitions and autostart marks under the state
//! directory, live status under the run directory.
//!
//! ```text
//! STATE_DIR/networks/NAME.xml    persistent definition (net-define)
//! STATE_DIR/autostart/NAME       autostart mark (net-autostart), empty file
//! RUN_DIR/NAME.ctl               control socket of a running network
//! RUN_DIR/NAME.xml               live definition of a running network (written by switchd)
//! RUN_DIR/NAME.log               switchd's log when started by `switchctl net-start`
//! ```
//!
//! Every write is crash-safe ([`write_atomic`]): a crash leaves either the old file or
//! the new one, never a truncated mix. Everything is owner-only: directories are made
//! 0700 ([`create_private_dir`]) and files 0600, as libvirt keeps its network
//! definitions; what they hold (guests' MACs, host names, client ids) is no one else's.
//! Definitions change under an exclusive lock ([`Store::lock_definitions`]), so two
//! `net-define`s racing cannot both pass the name and UUID checks.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory the store makes.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store writes.
pub const FILE_MODE: u32 = 0o600;

/// Makes `dir` and any missing parents, owner-only ([`DIR_MODE`]); an existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Writes `data` to `path` so that a crash at any point leaves the old contents or the
/// new ones: a temporary file in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` and makes the removal durable; a missing file is not an error.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The on-disk layout of one installation (a state dir and a run dir).
#[derive(Clone, Debug)]
pub struct Store {
    state_dir: PathBuf,
    run_dir: PathBuf,
}

impl Store {
    /// A store over these directories (created on first write).
    pub fn new(state_dir: &Path, run_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            run_dir: run_dir.to_owned(),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Path of a network's persistent definition.
    pub fn definition_path(&self, name: &str) -> PathBuf {
        self.state_dir.join("networks").join(format!("{name}.xml"))
    }

    /// Path of a network's autostart mark.
    pub fn autostart_path(&self, name: &str) -> PathBuf {
        self.state_dir.join("autostart").join(name)
    }

    /// Path of a running network's control socket.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        crate::control_socket_path(&self.run_dir, name)
    }

    /// Path of a running network's live definition.
    pub fn live_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.xml"))
    }

    /// Path of the log of a network started by `switchctl net-start`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.log"))
    }

    /// Path of the lock taken while a network starts (checks against running networks).
    pub fn start_lock_path(&self) -> PathBuf {
        self.run_dir.join(".start.lock")
    }

    /// Path of the lock held while definitions change.
    pub fn define_lock_path(&self) -> PathBuf {
        self.state_dir.join(".define.lock")
    }

    /// Takes the exclusive lock on the definitions (blocking until it is free): hold it
    /// from the checks against the other networks until the definition is saved. It is
    /// released when the returned file is dropped (or the process dies).
    pub fn lock_definitions(&self) -> io::Result<File> {
        create_private_dir(&self.state_dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(self.define_lock_path())?;
        f.lock()?;
        Ok(f)
    }

    /// Saves a persistent definition (crash-safe).
    pub fn save_definition(&self, name: &str, xml: &str) -> io::Result<()> {
        write_atomic(&self.definition_path(name), xml.as_bytes())
    }

    /// Reads a persistent definition; `None` if the network is not defined.
    pub fn read_definition(&self, name: &str) -> io::Result<Option<String>> {
        read_opt(&self.definition_path(name))
    }

    /// Removes a persistent definition and its autostart mark.
    pub fn remove_definition(&self, name: &str) -> io::Result<()> {
        remove_durable(&self.autostart_path(name))?;
        remove_durable(&self.definition_path(name))
    }

    /// Whether the network is defined (persistent).
    pub fn is_defined(&self, name: &str) -> bool {
        self.definition_path(name).is_file()
    }

    /// Names of the defined networks, sorted.
    pub fn defined_names(&self) -> io::Result<Vec<String>> {
        names_with_suffix(&self.state_dir.join("networks"), ".xml")
    }

    /// Marks or unmarks a network for autostart.
    pub fn set_autostart(&self, name: &str, on: bool) -> io::Result<()> {
        if on {
            write_atomic(&self.autostart_path(name), b"")
        } else {
            remove_durable(&self.autostart_path(name))
        }
    }

    /// Whether the network is marked for autostart.
    pub fn is_autostart(&self, name: &str) -> bool {
        self.autostart_path(name).is_file()
    }

    /// Whether a switchd answers on the network's control socket.
    pub fn is_running(&self, name: &str) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket_path(name)).is_ok()
    }

    /// Names of the running networks (a live control socket), sorted.
    pub fn running_names(&self) -> io::Result<Vec<String>> {
        Ok(names_with_suffix(&self.run_dir, ".ctl")?
            .into_iter()
            .filter(|n| self.is_running(n))
            .collect())
    }

    /// Saves the live definition of a running network.
    pub fn save_live(&self, name: &str, xml: &str) -> io::Result<()> {
        write_atomic(&self.live_path(name), xml.as_bytes())
    }

    /// Reads the live definition of a network; `None` if there is none.
    pub fn read_live(&self, name: &str) -> io::Result<Option<String>> {
        read_opt(&self.live_path(name))
    }
}

fn read_opt(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// File stems in `dir` ending in `suffix`, skipping hidden (temporary) files.
fn names_with_suffix(dir: &Path, suffix: &str) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let file_name = entry?.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(suffix) {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vnet-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn definitions_and_autostart() {
        let d = tmpdir("defs");
        let s = Store::new(&d.join("state"), &d.join("run"));
        assert_eq!(s.defined_names().unwrap(), Vec::<String>::new());
        s.save_definition("b", "<network/>").unwrap();
        s.save_definition("a", "<network/>").unwrap();
        s.save_definition("a", "<network><name>a</name></network>")
            .unwrap();
        assert_eq!(s.defined_names().unwrap(), vec!["a", "b"]);
        assert_eq!(
            s.read_definition("a").unwrap().as_deref(),
            Some("<network><name>a</name></network>")
        );
        // no temporary file left behind
        let leftovers: Vec<_> = fs::read_dir(d.join("state/networks")).unwrap().collect();
        assert_eq!(leftovers.len(), 2);
        s.set_autostart("a", true).unwrap();
        assert!(s.is_autostart("a") && !s.is_autostart("b"));
        s.remove_definition("a").unwrap();
        assert!(!s.is_autostart("a") && !s.is_defined("a"));
        assert_eq!(s.read_definition("a").unwrap(), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stale_temporary_file_is_not_a_network() {
        let d = tmpdir("tmp");
        let s = Store::new(&d.join("state"), &d.join("run"));
        s.save_definition("a", "<network/>").unwrap();
        fs::write(d.join("state/networks/.a.xml.tmp.123"), "<netw").unwrap();
        assert_eq!(s.defined_names().unwrap(), vec!["a"]);
        let _ = fs::remove_dir_all(&d);
    }
}
