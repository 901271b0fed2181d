//! What the admin panel deletes and replays; the rest of `Curation` is in `store::shared`.

use super::events::{delete_found, write_in, BY_EVENT_ID};
use super::*;

impl SqliteStore {
    pub(super) async fn delete_event_in(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let id = event_id.as_bytes().to_vec();
        let found = self.find_rows(&BY_EVENT_ID, &id).await?;
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let deleted = delete_found(&mut tx, &BY_EVENT_ID, &found, &id).await?;
        tx.commit().await.map_err(classify)?;
        Ok(deleted > 0)
    }

    pub(super) async fn delete_errors_in(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM event_errors WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            deleted += qb.build().execute(&self.writer).await.map_err(classify)?.rows_affected();
        }
        Ok(deleted)
    }

    pub(super) async fn resolve_errors_in(&self, replays: &[Replay], username: &str) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let mut resolved = 0;
        for r in replays {
            match &r.outcome {
                Ok(event) => {
                    // Only the transaction that deletes the error stores its event.
                    let gone = sqlx::query("DELETE FROM event_errors WHERE id = ?")
                        .bind(r.error_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?
                        .rows_affected();
                    if gone > 0 {
                        let batch = WriteBatch { events: vec![event.clone()], errors: vec![] };
                        write_in(&mut tx, &batch).await?;
                        resolved += gone;
                    }
                }
                Err(reasons) => {
                    let reasons = serde_json::to_string(reasons).map_err(|e| StoreError::Rejected(e.to_string()))?;
                    let query = match &r.edited_raw {
                        None => sqlx::query("UPDATE event_errors SET reasons = ? WHERE id = ?").bind(reasons),
                        Some(raw) => sqlx::query(
                            "UPDATE event_errors SET reasons = ?, original_raw = coalesce(original_raw, raw), raw = ?,
                                 category = ?, session_id = ?, edited_by = ?, edited_at = ? WHERE id = ?",
                        )
                        .bind(reasons)
                        .bind(raw.clone())
                        .bind(crate::store::category_of(raw))
                        .bind(crate::store::session_of(raw))
                        .bind(username.to_string())
                        .bind(now_micros()),
                    };
                    query.bind(r.error_id).execute(&mut *tx).await.map_err(classify)?;
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(resolved)
    }
}
