//! Transient store faults: an HTTP proxy in front of the S3 server answers
//! `503 Slow Down` to 5 % of requests. object_store's retries carry the build
//! through; should one give up, the build must fail cleanly: every table is
//! absent or a complete build's content, never half published.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tally::generate::Rng;

use crate::common::*;
use crate::revenue::reference_project;
use crate::s3::{bucket_with_raw_sample, read_delta_in, server, tally_env, write_profile};

struct Proxy {
    endpoint: String,
    requests: Arc<AtomicUsize>,
    faults: Arc<AtomicUsize>,
}

/// One request per connection: read it, then either fail it or relay it to
/// `upstream` and its whole answer back.
fn proxy(upstream: &str, rate: f64) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let (requests, faults) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let rng = Arc::new(Mutex::new(Rng::new(55)));
    let (r, f) = (requests.clone(), faults.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, rng, r, f) = (upstream.clone(), rng.clone(), r.clone(), f.clone());
            std::thread::spawn(move || {
                let _ = serve(client, &upstream, rate, &rng, &r, &f);
            });
        }
    });
    Proxy { endpoint, requests, faults }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    rate: f64,
    rng: &Mutex<Rng>,
    requests: &AtomicUsize,
    faults: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    requests.fetch_add(1, Ordering::SeqCst);
    if rng.lock().unwrap().chance(rate) {
        faults.fetch_add(1, Ordering::SeqCst);
        client.write_all(b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    client.write_all(&answer)
}

const GOVERNED: [&str; 6] = [
    "customer_mrr_monthly",
    "arr_waterfall_monthly",
    "retention_monthly",
    "pipeline_coverage_quarterly",
    "funnel_conversion_monthly",
    "unit_economics_quarterly",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_of_store_calls_fail() {
    let Some(server) = server() else { return };
    let bucket = format!("tally-faults-{}", std::process::id());
    let (store, raw) = bucket_with_raw_sample(&server.endpoint, &bucket).await;
    let local = reference_project();
    tally_env(local.path(), &["build", "-q", "--vars", &format!("{{raw_root: '{}'}}", raw.display())])
        .assert_code(0);

    let faulty = proxy(&server.endpoint, 0.05);
    let project = reference_project();
    let d = project.path();
    write_profile(d, &bucket, &faulty.endpoint);
    let run = tally_env(d, &["build", "-q", "--vars", &format!("{{raw_root: 's3://{bucket}/raw'}}")]);
    let (requests, faults) = (faulty.requests.load(Ordering::SeqCst), faulty.faults.load(Ordering::SeqCst));
    eprintln!("{requests} store requests, {faults} answered 503; build exit {}", run.code);
    assert!(faults >= 5, "the proxy must have failed some calls: {faults} of {requests}");
    assert!(run.code == 0 || run.code == 1, "{}\n{}", run.stdout, run.stderr);
    // Complete or absent, never half published (read past the proxy).
    for table in GOVERNED {
        let on_s3 = read_delta_in(&store, &format!("warehouse/{table}")).await;
        let whole =
            on_s3.is_empty() || on_s3 == rows(&read_delta(&local.path().join("warehouse").join(table)));
        assert!(whole, "{table} is half published");
        if run.code == 0 {
            assert!(!on_s3.is_empty(), "{table}: the build succeeded but did not publish");
        }
    }
}
