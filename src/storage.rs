//! Where data lives: one `object_store` per bucket (or local disk), built
//! from the target's `storage_options` over the environment's credentials,
//! shared by DataFusion (sources, staged files, failing rows, the lease) and
//! by delta-rs (published tables).
//!
//! Supported: `file://` (the default), `memory://` (one store per process,
//! for tests and throwaway runs), `s3://` (any S3-compatible endpoint:
//! `aws_endpoint`, `aws_region`, `aws_allow_http`, path-style unless
//! `aws_virtual_hosted_style_request`), `gs://` and `az://`/`abfss://`, with
//! object_store's option names. Transient errors are retried by object_store
//! (exponential backoff, up to 10 times within 3 minutes, its defaults).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, StorageConfig, default_logstore, logstore_factories,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

/// Store options (credentials among them). Never printed: `Debug` shows keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(pub BTreeMap<String, String>);

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl StorageOptions {
    pub fn as_map(&self) -> HashMap<String, String> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The store holding `url` (its bucket, or the local file system).
/// Why a store cannot be built for a URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{0}://` is not a supported store; use file://, memory://, s3://, gs:// or az://")]
    Unsupported(String),
    #[error(transparent)]
    Options(#[from] object_store::Error),
}

pub fn store_for(url: &Url, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let opts = options.0.iter();
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => {
            // One store per process, so every table handle sees the same data.
            static MEMORY: std::sync::OnceLock<Arc<object_store::memory::InMemory>> =
                std::sync::OnceLock::new();
            MEMORY.get_or_init(|| Arc::new(object_store::memory::InMemory::new())).clone()
        }
        "s3" | "s3a" => {
            let b = AmazonS3Builder::from_env().with_url(url.as_str());
            let b = opts.fold(b, |b, (k, v)| match k.to_ascii_lowercase().parse() {
                Ok(key) => b.with_config(key, v),
                Err(_) => b,
            });
            Arc::new(b.build()?)
        }
        "gs" => {
            let b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            let b = opts.fold(b, |b, (k, v)| match k.to_ascii_lowercase().parse() {
                Ok(key) => b.with_config(key, v),
                Err(_) => b,
            });
            Arc::new(b.build()?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            let b = opts.fold(b, |b, (k, v)| match k.to_ascii_lowercase().parse() {
                Ok(key) => b.with_config(key, v),
                Err(_) => b,
            });
            Arc::new(b.build()?)
        }
        other => {
            return Err(StoreError::Unsupported(other.to_string()));
        }
    };
    Ok(store)
}

/// `s3://bucket/a/b/` -> `s3://bucket`: what DataFusion keys its stores by.
pub fn store_root(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("");
    root.set_query(None);
    root.set_fragment(None);
    root
}

/// Teach delta-rs the cloud schemes, with tally's stores (delta-rs' own cloud
/// crates would compile the AWS SDK for the same object_store code).
pub fn register_delta_schemes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["memory", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss"] {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else { continue };
            object_store_factories().insert(url.clone(), Arc::new(Stores));
            logstore_factories().insert(url, Arc::new(Stores));
        }
    });
}

struct Stores;

impl ObjectStoreFactory for Stores {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(Arc<dyn ObjectStore>, Path)> {
        let options = StorageOptions(config.raw.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let store = store_for(url, &options).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let path = Path::from_url_path(url.path()).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}

impl LogStoreFactory for Stores {
    fn with_options(
        &self,
        prefixed: Arc<dyn ObjectStore>,
        root: Arc<dyn ObjectStore>,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // Commits are conditional puts (create if absent), atomic on S3, GCS and Azure.
        Ok(default_logstore(prefixed, root, location, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_print_their_values() {
        let o = StorageOptions(BTreeMap::from([(
            "aws_secret_access_key".to_string(),
            "s3cr3t-value".to_string(),
        )]));
        assert_eq!(format!("{o:?}"), r#"{"aws_secret_access_key"}"#);
    }
}
