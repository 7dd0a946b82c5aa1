//! Load test of `darec serve` (issue 14), loopback only and bounded: starts the real
//! binary on 127.0.0.1 with a trained run, then for each concurrency level runs that many
//! client threads, each on one keep-alive connection, asking `GET /recommend?user=..&k=20`
//! for random users of the run, for a fixed time (and at most a fixed number of requests).
//! Reports requests per second, p50/p99/max latency and errors per level; beside it, the
//! bare scoring and top-20 of one user measured in this process on the same run, so the
//! HTTP overhead shows as a ratio; and the server's peak memory.
//!
//! `cargo run --release --example load_test -- [run dir] [seconds per level]`
//! (default runs/quickstart-ml-1m-lightgcn, 4 s). Server and clients share the machine's
//! cores.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One keep-alive HTTP/1.1 GET; returns the status.
fn get(stream: &mut BufReader<TcpStream>, path: &str) -> anyhow::Result<u16> {
    stream
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status: u16 = line.get(9..12).unwrap_or("0").parse()?;
    let mut len = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(status)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = args
        .first()
        .cloned()
        .unwrap_or_else(|| "runs/quickstart-ml-1m-lightgcn".into());
    let secs: f64 = args.get(1).map_or(Ok(4.0), |s| s.parse())?;
    let max_requests_per_level = 200_000usize;

    // the bare work of one request, in this process
    darec::threads::configure(1)?;
    let rec = darec::serve::Recommender::load(std::path::Path::new(&run), Default::default())?;
    let (users, _) = rec.ids();
    let users: Vec<String> = users.to_vec();
    let mut rng = darec::rng::Rng::new(1);
    let mut bare = Vec::new();
    for _ in 0..3000 {
        let u = &users[rng.uniform_usize(users.len())];
        let t = Instant::now();
        let r = rec.recommend(u, 20, false)?;
        bare.push(t.elapsed().as_secs_f64());
        assert_eq!(r.len(), 20);
    }
    bare.sort_by(f64::total_cmp);
    let bare_p50 = percentile(&bare, 0.5);
    println!(
        "bare recommend (score {} items, drop seen, top-20) in-process: p50 {:.1} us, p99 {:.1} us",
        rec.n_items(),
        bare_p50 * 1e6,
        percentile(&bare, 0.99) * 1e6
    );
    drop(rec);

    let exe = std::env::var("DAREC_BIN").unwrap_or_else(|_| "target/release/darec".into());
    let mut child = std::process::Command::new(&exe)
        .args([
            "--log",
            "warn",
            "serve",
            "--run",
            &run,
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("no address in `{line}`"))?
        .parse()?;
    println!("server: {}", line.trim());
    let rss_loaded = peak_rss_mib(child.id());

    println!("\n| clients | requests | req/s | p50 ms | p99 ms | max ms | errors | p50 / bare |\n|---|---|---|---|---|---|---|---|");
    for clients in [1usize, 2, 4, 8, 16, 32] {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let per_client = max_requests_per_level / clients;
        let t0 = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let users = users.clone();
                std::thread::spawn(move || -> (Vec<f64>, usize) {
                    let mut rng = darec::rng::Rng::new(100 + c as u64);
                    let mut lat = Vec::new();
                    let mut errors = 0;
                    let Ok(s) = TcpStream::connect(addr) else {
                        return (lat, 1);
                    };
                    s.set_nodelay(true).ok();
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let mut s = BufReader::new(s);
                    while Instant::now() < deadline && lat.len() < per_client {
                        let u = &users[rng.uniform_usize(users.len())];
                        let t = Instant::now();
                        match get(&mut s, &format!("/recommend?user={u}&k=20")) {
                            Ok(200) => lat.push(t.elapsed().as_secs_f64()),
                            _ => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.join().expect("client thread");
            lat.extend(l);
            errors += e;
        }
        let wall = t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let p50 = percentile(&lat, 0.5);
        println!(
            "| {clients} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {errors} | {:.1}x |",
            lat.len(),
            lat.len() as f64 / wall,
            p50 * 1e3,
            percentile(&lat, 0.99) * 1e3,
            lat.last().copied().unwrap_or(f64::NAN) * 1e3,
            p50 / bare_p50
        );
    }
    println!(
        "\nserver peak memory: {:.0} MiB after loading, {:.0} MiB after the load",
        rss_loaded.unwrap_or(f64::NAN),
        peak_rss_mib(child.id()).unwrap_or(f64::NAN)
    );
    // SAFETY: signals our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait()?;
    println!("server stopped on SIGTERM: {status}");
    Ok(())
}
