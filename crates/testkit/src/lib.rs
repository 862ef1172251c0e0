//! Test harness for vnet's kernel-facing tests: network namespaces, veth pairs, child
//! processes and temporary directories behind RAII guards, so everything a test makes is
//! removed even when the test fails or panics.
//!
//! Names carry a per-process, per-call unique suffix ([`unique`]), so tests run in
//! parallel, and stay within the kernel's 15-byte interface-name limit where they name
//! interfaces. Everything shells out to the real tools (`ip`, `kill`): the tests drive
//! what a user would drive.
//!
//! Tests that need root call [`require_root`] first: without the privilege they fail
//! with a message that says so, never pass by doing nothing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root (namespaces and TAPs need it).
pub fn require_root() {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert!(
        uid == 0,
        "this test creates network namespaces and TAP devices and must run as root \
         (the README's test command and CI do); uid is {uid}"
    );
}

/// A short unique token for names: process id and a counter, in hex (at most 9 bytes).
pub fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() & 0xfffff, n & 0xfff)
}

/// Runs a command and returns its output; panics with the command line if it cannot run.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS…`, which must succeed.
pub fn ip(args: &[&str]) -> String {
    run_ok(Command::new("ip").args(args))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace, deleted (with every process still in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `<prefix>-<unique>` with `lo` up, IPv6 off (quiet links) and a
    /// private `/etc/resolv.conf`.
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique());
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        // `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc: a DHCP client that
        // rewrites resolv.conf then touches this copy, never the machine's own.
        let etc = Path::new("/etc/netns").join(&ns.name);
        let _ = std::fs::create_dir_all(&etc);
        let _ = std::fs::write(etc.join("resolv.conf"), "# vnet test namespace\n");
        ns.run_ok("ip", &["link", "set", "lo", "up"]);
        for key in ["all", "default"] {
            ns.run_ok(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
            );
        }
        ns
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `prog args…` inside the namespace.
    pub fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]).args(args);
        c
    }

    /// Runs `prog args…` inside the namespace and returns its output.
    pub fn run(&self, prog: &str, args: &[&str]) -> Output {
        run(&mut self.cmd(prog, args))
    }

    /// Runs `prog args…` inside the namespace; it must succeed. Returns stdout.
    pub fn run_ok(&self, prog: &str, args: &[&str]) -> String {
        run_ok(&mut self.cmd(prog, args))
    }

    /// Starts `prog args…` inside the namespace as a guarded child.
    pub fn spawn(&self, prog: &str, args: &[&str]) -> ChildGuard {
        ChildGuard::spawn(self.cmd(prog, args))
    }

    /// Waits up to `timeout` for a TCP socket listening on `port` in the namespace (a
    /// server just spawned may not have bound yet); true once there is one.
    pub fn wait_listening(&self, port: u16, timeout: Duration) -> bool {
        let filter = format!("sport = :{port}");
        wait_for(timeout, || {
            !self
                .run("ss", &["-Hltn", &filter])
                .stdout
                .trim_ascii()
                .is_empty()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}

/// A child process, stopped (SIGTERM, then SIGKILL after 2 s) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed; stdout and stderr as the command has them set.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self { child: Some(child) }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| unreachable!("child taken only in drop/stop"))
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child_mut().try_wait(), Ok(None))
    }

    /// Sends `signal` (a name such as `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.id().to_string()])
            .status();
    }

    /// Stops it with SIGTERM and waits up to `timeout`; returns its exit status, or
    /// `None` if it had to be killed.
    pub fn stop(mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let mut child = self.child.take()?;
        let mut status = None;
        wait_for(timeout, || match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                true
            }
            Ok(None) => false,
            Err(_) => true,
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Waits for it to exit by itself within `timeout`; returns its output, or `None`
    /// (and kills it) on timeout. Its stdout and stderr must be piped to be captured.
    pub fn wait_output(mut self, timeout: Duration) -> Option<Output> {
        let mut child = self.child.take()?;
        let done = wait_for(timeout, || !matches!(child.try_wait(), Ok(None)));
        if !done {
            let _ = child.kill();
        }
        let out = child.wait_with_output().ok()?;
        done.then_some(out)
    }

    /// Reads stderr lines until one contains `needle` (the child's stderr must be
    /// piped); returns false if stderr closes first.
    pub fn wait_stderr(&mut self, needle: &str) -> bool {
        let Some(err) = self.child_mut().stderr.take() else {
            return false;
        };
        let mut reader = BufReader::new(err);
        let mut line = String::new();
        let found = loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break false,
                Ok(_) if line.contains(needle) => break true,
                Ok(_) => {}
            }
        };
        self.child_mut().stderr = Some(reader.into_inner());
        found
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exited = wait_for(Duration::from_secs(2), || {
                !matches!(child.try_wait(), Ok(None))
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A veth pair `a`/`b`, each end optionally in a namespace; deleted when dropped
/// (deleting one end removes both).
#[derive(Debug)]
pub struct Veth {
    a: String,
    b: String,
    a_ns: Option<String>,
}

impl Veth {
    /// Creates the pair `<prefix>a<unique>` / `<prefix>b<unique>` and moves the ends.
    pub fn new(prefix: &str, a_ns: Option<&Netns>, b_ns: Option<&Netns>) -> Self {
        let u = unique();
        let (a, b) = (format!("{prefix}a{u}"), format!("{prefix}b{u}"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        let mut veth = Self { a, b, a_ns: None };
        if let Some(ns) = b_ns {
            ip(&["link", "set", &veth.b, "netns", ns.name()]);
        }
        if let Some(ns) = a_ns {
            ip(&["link", "set", &veth.a, "netns", ns.name()]);
            veth.a_ns = Some(ns.name().to_owned());
        }
        veth
    }

    /// Name of end `a`.
    pub fn a(&self) -> &str {
        &self.a
    }

    /// Name of end `b`.
    pub fn b(&self) -> &str {
        &self.b
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let mut c = Command::new("ip");
        if let Some(ns) = &self.a_ns {
            c.args(["-n", ns]);
        }
        let _ = c
            .args(["link", "del", &self.a])
            .stderr(Stdio::null())
            .status();
    }
}

/// A temporary directory, removed with its contents when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/<prefix>-<unique>`.
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_fit_interface_names() {
        let (a, b) = (unique(), unique());
        assert_ne!(a, b);
        assert!(format!("vt{a}").len() <= 15);
    }

    #[test]
    fn wait_for_times_out() {
        assert!(!wait_for(Duration::from_millis(50), || false));
        assert!(wait_for(Duration::from_millis(50), || true));
    }
}
