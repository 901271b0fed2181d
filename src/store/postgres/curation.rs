//! What the admin panel deletes and replays; the rest of `Curation` is in `store::shared`.

use super::events::write_in;
use super::*;

impl PostgresStore {
    pub(super) async fn delete_event_in(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn delete_errors_in(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM event_errors WHERE id = ANY($1)")
            .bind(ids.to_vec())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    pub(super) async fn resolve_errors_in(&self, replays: &[Replay], username: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut resolved = 0;
        for r in replays {
            match &r.outcome {
                Ok(event) => {
                    // Only the transaction that deletes the error stores its event.
                    let gone = sqlx::query("DELETE FROM event_errors WHERE id = $1")
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
                    let reasons = without_nul(&reasons);
                    let query = match &r.edited_raw {
                        None => sqlx::query("UPDATE event_errors SET reasons = $1::jsonb WHERE id = $2")
                            .bind(reasons)
                            .bind(r.error_id),
                        Some(raw) => sqlx::query(
                            "UPDATE event_errors SET reasons = $1::jsonb, original_raw = coalesce(original_raw, raw),
                                 raw = $3, category = $4, session_id = $6, edited_by = $5, edited_at = now()
                             WHERE id = $2",
                        )
                        .bind(reasons)
                        .bind(r.error_id)
                        .bind(without_nul(raw))
                        .bind(crate::store::category_of(raw).map(|c| without_nul(&c)))
                        .bind(username.to_string())
                        .bind(crate::store::session_of(raw).map(|c| without_nul(&c))),
                    };
                    query.execute(&mut *tx).await.map_err(classify)?;
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(resolved)
    }
}
