//! The reference project with its sources and warehouse on an S3-compatible
//! server (moto, installed and started by `.ci/run`; see README). The tables
//! are read back from the bucket without tally (log JSON + parquet crate) and
//! must equal a local build's; no output of the run contains the secret; of
//! concurrent lease takers on the bucket exactly one wins.
//!
//! Server: `TALLY_S3_ENDPOINT`, else `target/s3-venv/bin/moto_server` started
//! here. Without either the test says so and passes, unless
//! `TALLY_REQUIRE_S3=1` (as in CI), where that is a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tally::storage::{StorageOptions, store_for};
use url::Url;

use crate::common::*;
use crate::revenue::reference_project;

const KEY_ID: &str = "AKIATALLYTESTKEY0001";
const SECRET: &str = "tally-test-secret-Zq8uP3vX";

pub struct Server {
    pub endpoint: String,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn server() -> Option<Server> {
    if let Ok(endpoint) = std::env::var("TALLY_S3_ENDPOINT") {
        return Some(Server { endpoint, child: None });
    }
    let moto = repo_root().join("target/s3-venv/bin/moto_server");
    if !moto.exists() {
        assert!(
            std::env::var("TALLY_REQUIRE_S3").is_err(),
            "TALLY_REQUIRE_S3 is set but there is no S3 server: {} is missing",
            moto.display()
        );
        eprintln!(
            "SKIPPED s3 test: no S3 server (set TALLY_S3_ENDPOINT, or run .ci/run which installs moto)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned from here on: a server that never answers is killed by the panic.
    let server = Server { endpoint: format!("http://127.0.0.1:{port}"), child: Some(child) };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("moto_server did not start on {}", server.endpoint);
}

/// moto does not check auth: a bare PUT creates a bucket.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

pub fn options(endpoint: &str) -> StorageOptions {
    StorageOptions(BTreeMap::from([
        ("aws_endpoint".to_string(), endpoint.to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
        ("aws_allow_http".to_string(), "true".to_string()),
        ("aws_access_key_id".to_string(), KEY_ID.to_string()),
        ("aws_secret_access_key".to_string(), SECRET.to_string()),
    ]))
}

/// All rows of the Delta table at `prefix` in `store`, replaying its log.
pub async fn read_delta_in(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let log: Vec<_> =
        store.list(Some(&StorePath::from(format!("{prefix}/_delta_log")))).try_collect().await.unwrap();
    let mut commits: Vec<String> =
        log.iter().map(|m| m.location.to_string()).filter(|p| p.ends_with(".json")).collect();
    commits.sort();
    let mut texts = Vec::new();
    for c in commits {
        let bytes = store.get(&StorePath::from(c)).await.unwrap().bytes().await.unwrap();
        texts.push(String::from_utf8(bytes.to_vec()).unwrap());
    }
    let mut batches = Vec::new();
    for f in active_files(&texts) {
        let bytes =
            store.get(&StorePath::from(format!("{prefix}/{f}"))).await.unwrap().bytes().await.unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap() {
            batches.push(b.unwrap());
        }
    }
    rows(&batches)
}

/// A new bucket holding the committed raw sample under `raw/`; its store and
/// the sample's local folder.
pub async fn bucket_with_raw_sample(
    endpoint: &str,
    bucket: &str,
) -> (Arc<dyn ObjectStore>, std::path::PathBuf) {
    create_bucket(endpoint, bucket);
    let store = store_for(&Url::parse(&format!("s3://{bucket}/")).unwrap(), &options(endpoint)).unwrap();
    let raw = repo_root().join("tests_data/raw");
    for table in std::fs::read_dir(&raw).unwrap() {
        let table = table.unwrap();
        for file in std::fs::read_dir(table.path()).unwrap() {
            let file = file.unwrap();
            let key =
                format!("raw/{}/{}", table.file_name().to_string_lossy(), file.file_name().to_string_lossy());
            store
                .put(&StorePath::from(key), PutPayload::from(std::fs::read(file.path()).unwrap()))
                .await
                .unwrap();
        }
    }
    (store, raw)
}

/// A `revenue` profile whose target `s3` keeps the warehouse in `bucket` behind
/// `endpoint`, with credentials from the environment (`${VAR}` and `env_var()`).
pub fn write_profile(d: &Path, bucket: &str, endpoint: &str) {
    std::fs::write(
        d.join("profiles/profiles.yml"),
        format!(
            "revenue:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{bucket}/warehouse\n      storage_options:\n        aws_endpoint: {endpoint}\n        aws_region: us-east-1\n        aws_allow_http: \"true\"\n        aws_access_key_id: \"${{TALLY_TEST_KEY_ID}}\"\n        aws_secret_access_key: \"{{{{ env_var('TALLY_TEST_SECRET') }}}}\"\n"
        ),
    )
    .unwrap();
}

pub fn tally_env(d: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .env("TALLY_ALLOW_ROOT", allowed_root())
        .args(args)
        .arg("--project-dir")
        .arg(d)
        .env("NO_COLOR", "1")
        .env("TALLY_TEST_KEY_ID", KEY_ID)
        .env("TALLY_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_project_on_s3_reads_back_without_tally() {
    let Some(server) = server() else { return };
    let bucket = format!("tally-{}", std::process::id());
    let (store, raw) = bucket_with_raw_sample(&server.endpoint, &bucket).await;

    // The same project twice: on local disk, and on the bucket (credentials from the environment).
    let local = reference_project();
    let local_run =
        tally_env(local.path(), &["build", "-q", "--vars", &format!("{{raw_root: '{}'}}", raw.display())]);
    let project = reference_project();
    let d = project.path();
    write_profile(d, &bucket, &server.endpoint);
    let vars = format!("{{raw_root: 's3://{bucket}/raw'}}");
    let run = tally_env(d, &["build", "-vv", "--log-format", "json", "--vars", &vars]);
    local_run.assert_code(0);
    run.assert_code(0);
    assert!(run.stdout.contains(" 0 error, 0 skipped"), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Assertions: 55 pass, 9 warn, 0 fail, 0 error"), "{}", run.stdout);

    for table in [
        "customer_mrr_monthly",
        "arr_waterfall_monthly",
        "retention_monthly",
        "pipeline_coverage_quarterly",
        "funnel_conversion_monthly",
        "unit_economics_quarterly",
        "dq_scorecard",
    ] {
        let on_s3 = read_delta_in(&store, &format!("warehouse/{table}")).await;
        assert!(!on_s3.is_empty(), "{table} is empty on S3");
        if table != "dq_scorecard" {
            assert_eq!(on_s3, rows(&read_delta(&local.path().join("warehouse").join(table))), "{table}");
        }
    }
    // The lease was released.
    assert!(store.head(&StorePath::from("warehouse/_tally/lease.json")).await.is_err());

    // No secret in any output: console, logs (-vv, JSON), artifacts.
    let mut outputs = vec![run.stdout.clone(), run.stderr.clone()];
    for f in ["target/run_results.json", "target/manifest.json"] {
        outputs.push(std::fs::read_to_string(d.join(f)).unwrap());
    }
    let shown = tally_env(d, &["show", "arr_waterfall_monthly", "-vv"]);
    outputs.extend([shown.stdout, shown.stderr]);
    for (i, text) in outputs.iter().enumerate() {
        assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "output {i} shows a credential");
    }
    assert!(run.stderr.len() > 1000, "-vv logged: {} bytes", run.stderr.len());

    // Of 8 runs taking the lease at once on the bucket, exactly one gets it.
    let wh = Url::parse(&format!("s3://{bucket}/race/")).unwrap();
    let takers = (0..8).map(|i| {
        let (store, wh) = (store.clone(), wh.clone());
        tokio::spawn(
            async move { tally::lease::Lease::acquire(store, &wh, &format!("r{i}"), "build").await.ok() },
        )
    });
    let won: Vec<_> =
        futures::future::join_all(takers).await.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(won.len(), 1);
}
