//! Workloads a guest runs against a server in a wan namespace, for the NAT tests of
//! both families (an address with a `:` is IPv6).

use std::time::Duration;

use vnet_testkit::{wait_for, ChildGuard, Netns};

fn family(addr: &str) -> &'static str {
    if addr.contains(':') {
        "socket.AF_INET6"
    } else {
        "socket.AF_INET"
    }
}

/// Runs Python `code` in `ns`.
pub fn py(ns: &Netns, code: &str) -> std::process::Output {
    ns.run("python3", &["-c", code])
}

/// Waits until a TCP server answers on `addr:port` from `ns`.
pub fn wait_port(ns: &Netns, addr: &str, port: u16) {
    let probe = format!(
        "import socket\ns=socket.socket({})\ns.settimeout(0.2)\ns.connect(('{addr}',{port}))",
        family(addr)
    );
    assert!(
        wait_for(Duration::from_secs(5), || py(ns, &probe).status.success()),
        "server on {addr} port {port} did not start"
    );
}

/// `iperf3` from `guest` to a server it starts in `wan` on `addr:port`, both ways;
/// asserts each moved data and prints the rates.
pub fn iperf_both_ways(guest: &Netns, wan: &Netns, addr: &str, port: u16) {
    let p = port.to_string();
    let _server = wan.spawn("iperf3", &["-s", "-B", addr, "-p", &p]);
    wait_port(wan, addr, port);
    for reverse in [false, true] {
        let mut a = vec!["-c", addr, "-p", &p, "-t", "2", "-J"];
        if reverse {
            a.push("-R");
        }
        let out = guest.run("iperf3", &a);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(
            bps > 0.0,
            "iperf3 to {addr} reverse={reverse}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        eprintln!(
            "iperf3 through NAT to {addr}, reverse={reverse}: {:.2} Gbit/s",
            bps / 1e9
        );
    }
}

/// A UDP server in `wan` on `addr:port` that answers each datagram with it in capitals
/// followed by the sender's address.
pub fn udp_echo(wan: &Netns, addr: &str, port: u16) -> ChildGuard {
    let s = wan.spawn(
        "python3",
        &[
            "-c",
            &format!(
                "import socket\ns=socket.socket({},socket.SOCK_DGRAM)\ns.bind(('{addr}',{port}))\n\
                 while True:\n    d,a=s.recvfrom(2048)\n    s.sendto(d.upper()+a[0].encode(),a)\n",
                family(addr)
            ),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    s
}

/// What the [`udp_echo`] server at `addr:port` answers `guest`'s `msg` (from `bind`,
/// if given).
pub fn udp_ask(guest: &Netns, addr: &str, port: u16, bind: Option<&str>, msg: &str) -> String {
    let bind = bind.map_or_else(String::new, |b| format!("s.bind(('{b}',0))\n"));
    let out = py(
        guest,
        &format!(
            "import socket\ns=socket.socket({},socket.SOCK_DGRAM)\n{bind}s.settimeout(3)\n\
             s.sendto(b'{msg}',('{addr}',{port}))\nprint(s.recvfrom(2048)[0].decode())",
            family(addr)
        ),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `n` concurrent TCP connections from `guest` to an echo server it starts in `wan`
/// on `addr:port`; how many got their bytes back.
pub fn concurrent_echo(guest: &Netns, wan: &Netns, addr: &str, port: u16, n: usize) -> String {
    let _server = wan.spawn(
        "python3",
        &[
            "-c",
            &format!(
                "import asyncio\n\
                 async def h(r,w):\n    d=await r.read(100)\n    w.write(d)\n    await w.drain()\n    w.close()\n\
                 async def m():\n    s=await asyncio.start_server(h,'{addr}',{port},backlog=1024)\n    await s.serve_forever()\n\
                 asyncio.run(m())\n"
            ),
        ],
    );
    wait_port(wan, addr, port);
    let out = py(
        guest,
        &format!(
            "import asyncio\n\
             async def c(i):\n    r,w=await asyncio.open_connection('{addr}',{port})\n    w.write(b'x%d'%i)\n    await w.drain()\n    d=await r.read(100)\n    w.close()\n    return d==b'x%d'%i\n\
             async def m():\n    return await asyncio.gather(*[c(i) for i in range({n})])\n\
             print(sum(asyncio.run(asyncio.wait_for(m(),60))))\n"
        ),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        if out.stderr.is_empty() {
            String::new()
        } else {
            format!(" ({})", String::from_utf8_lossy(&out.stderr).trim())
        }
    )
}

/// A 100 MB file of random bytes served over HTTP from `wan` on `addr:8000` (files in
/// `dir`) and fetched by `guest` with curl: returns (the sha256 the guest computed, the
/// file's, curl's stderr, the server's log, which names each client address).
pub fn big_download(
    dir: &std::path::Path,
    guest: &Netns,
    wan: &Netns,
    addr: &str,
) -> (String, String, String, String) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    let file = www.join("big.bin");
    let st = std::process::Command::new("head")
        .args(["-c", "100M", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).expect("big.bin"))
        .status()
        .expect("head");
    assert!(st.success());
    let log = dir.join("http.log");
    let mut http = wan.cmd(
        "python3",
        &["-m", "http.server", "8000", "--bind", addr, "--directory"],
    );
    http.arg(&www)
        .stderr(std::fs::File::create(&log).expect("log"));
    let _server = ChildGuard::spawn(http);
    wait_port(wan, addr, 8000);
    let url = if addr.contains(':') {
        format!("http://[{addr}]:8000/big.bin")
    } else {
        format!("http://{addr}:8000/big.bin")
    };
    let out = guest.run(
        "sh",
        &[
            "-c",
            &format!("curl -sS -g --max-time 120 '{url}' | sha256sum"),
        ],
    );
    let want = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("sha256sum");
    let first = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    (
        first(&out.stdout),
        first(&want.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}
