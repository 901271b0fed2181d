//! The worker's copy of categories and event types, reloaded when it gets old.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::Catalog;
use crate::store::{EventSink, StoreError};

/// Compiled catalog shared by the workers of one process.
#[derive(Debug)]
pub struct CatalogCache {
    store: Arc<dyn EventSink>,
    max_age: Duration,
    current: Mutex<Option<(Instant, Arc<Catalog>)>>,
}

impl CatalogCache {
    /// A cache that reloads from `store` when its copy is older than `max_age`.
    pub fn new(store: Arc<dyn EventSink>, max_age: Duration) -> Self {
        Self { store, max_age, current: Mutex::new(None) }
    }

    /// The catalog, reloaded if stale. A schema that no longer compiles keeps
    /// the last good catalog in force, loudly, rather than stopping the workers.
    pub async fn get(&self) -> Result<Arc<Catalog>, StoreError> {
        let mut current = self.current.lock().await;
        if let Some((loaded, catalog)) = current.as_ref() {
            if loaded.elapsed() < self.max_age {
                return Ok(catalog.clone());
            }
        }
        let (categories, types) = self.store.catalog().await?;
        match Catalog::new(categories, types) {
            Ok(catalog) => {
                let catalog = Arc::new(catalog);
                *current = Some((Instant::now(), catalog.clone()));
                Ok(catalog)
            }
            Err(e) => match current.as_mut() {
                Some((loaded, catalog)) => {
                    tracing::error!(error = %e, "catalog has an invalid schema; keeping the previous one");
                    *loaded = Instant::now();
                    Ok(catalog.clone())
                }
                None => Err(StoreError::Setup(e.to_string())),
            },
        }
    }
}
