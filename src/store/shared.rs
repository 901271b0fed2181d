//! Queries whose text is the same in SQLite and PostgreSQL, written once.
//!
//! Both drivers take `$1, $2, …` placeholders, so where the two dialects
//! differ only in how a time or a JSON column travels, one query serves both.
//! The macros below expand into a backend's module, which must define the
//! same four small items — its dialect:
//!
//! | item | SQLite | PostgreSQL |
//! |---|---|---|
//! | `classify(sqlx::Error) -> StoreError` | by result code | by SQLSTATE class |
//! | `db_time(DateTime<Utc>)` | microseconds (`INTEGER`) | `timestamptz` |
//! | `read_time(&Row, column) -> Result<DateTime<Utc>, StoreError>` | from microseconds | as is |
//! | `read_opt_time(&Row, column)`: the same for a nullable column | | |
//! | `text(&str) -> String` | as is | U+0000 replaced (PostgreSQL refuses it) |
//!
//! and name its JSON columns' casts: `json_in` is appended to a placeholder
//! bound with JSON text (`::jsonb` on PostgreSQL), `json_out` to a JSON column
//! read back as text (`::text`).
//!
//! What stays written twice, and why: the event writes (multi-row `VALUES` in
//! chunks on SQLite, one `UNNEST` of column arrays on PostgreSQL — each
//! measured fastest on its engine), the event and error listings (ids are
//! blobs on one and `uuid` on the other, times integers on one and
//! `timestamptz` on the other, throughout their filters), deleting errors by
//! id (`IN (…)` in chunks against `= ANY($1)`), replay (its edit columns
//! differ in type), the dashboard's bucketed counts (integer arithmetic
//! against `date_bin`), and deleting an event or erasing a session (on
//! SQLite a reader finds the hours holding the rows first, so that the
//! writer never runs the skip scan that finds them).

/// An erasure's delete of a session's event errors (`$1`, the session id),
/// found by the `session_id` taken from their payload.
pub(super) const DELETE_SESSION_ERRORS: &str = "DELETE FROM event_errors WHERE session_id = $1";

/// The admin's reads beyond pages, for a backend from its read pool and
/// database type: inherent `count_events_in`, `count_errors_in`,
/// `events_stored_after_in` and `sessions_in`. The backend's module must
/// also define `push_event_filters` and `push_error_filters` (its dialect of
/// the listings' filters, appended after a `WHERE`), `EVENT_COLUMNS` and
/// `Self::event_from_row`.
macro_rules! impl_admin_reads {
    ($store:ty, db: $db:ty, read: $r:ident) => {
        impl $store {
            /// Rows of `table` matching `filters`, counted up to `cap + 1`.
            async fn count_in(
                &self,
                table: &str,
                filters: impl FnOnce(&mut sqlx::QueryBuilder<'_, $db>),
                cap: u64,
            ) -> Result<u64, StoreError> {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new(format!("SELECT count(*) FROM (SELECT 1 FROM {table} WHERE 1 = 1"));
                filters(&mut qb);
                qb.push(" LIMIT ")
                    .push_bind(i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX))
                    .push(") AS matching");
                let n: i64 = qb.build_query_scalar().fetch_one(&self.$r).await.map_err(classify)?;
                Ok(n.max(0) as u64)
            }

            pub(super) async fn count_events_in(
                &self,
                q: &$crate::store::EventQuery,
                cap: u64,
            ) -> Result<u64, StoreError> {
                self.count_in("events", |qb| push_event_filters(qb, q), cap).await
            }

            pub(super) async fn count_errors_in(
                &self,
                q: &$crate::store::ErrorQuery,
                cap: u64,
            ) -> Result<u64, StoreError> {
                self.count_in("event_errors", |qb| push_error_filters(qb, q), cap).await
            }

            pub(super) async fn events_stored_after_in(
                &self,
                after_row: i64,
                q: &$crate::store::EventQuery,
            ) -> Result<Vec<$crate::store::StoredEvent>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE id > "));
                qb.push_bind(after_row);
                push_event_filters(&mut qb, q);
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit as i64);
                let rows = qb.build().fetch_all(&self.$r).await.map_err(classify)?;
                rows.iter().map(Self::event_from_row).collect()
            }

            pub(super) async fn sessions_in(
                &self,
                q: &$crate::store::EventQuery,
            ) -> Result<Vec<$crate::store::SessionSummary>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT session_id, count(*) AS n, min(occurred_at) AS first, max(occurred_at) AS last
                     FROM events WHERE 1 = 1",
                );
                push_event_filters(&mut qb, q);
                qb.push(" GROUP BY session_id ORDER BY last DESC, session_id LIMIT ").push_bind(q.limit as i64);
                let rows = qb.build().fetch_all(&self.$r).await.map_err(classify)?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::SessionSummary {
                            session_id: r.get("session_id"),
                            events: r.get("n"),
                            first: $crate::domain::Timestamp::from(read_time(r, "first")?),
                            last: $crate::domain::Timestamp::from(read_time(r, "last")?),
                        })
                    })
                    .collect()
            }
        }
    };
}

/// `impl Access` for a backend, from its write and read pools.
macro_rules! impl_access {
    ($store:ty, write: $w:ident, read: $r:ident, json_in: $json_in:literal, json_out: $json_out:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Access for $store {
            async fn applications(&self) -> Result<Vec<$crate::domain::Application>, StoreError> {
                sqlx::query(concat!(
                    "SELECT name, key, origins",
                    $json_out,
                    " AS origins, active FROM applications ORDER BY name"
                ))
                .fetch_all(&self.$r)
                .await
                .map_err(classify)?
                .iter()
                .map(|r| {
                    let origins: String = r.get("origins");
                    $crate::store::application(r.get("name"), r.get("key"), &origins, r.get("active"))
                })
                .collect()
            }

            async fn create_application(&self, app: &$crate::domain::Application) -> Result<(), StoreError> {
                let origins = serde_json::to_string(&app.origins).map_err(|e| StoreError::Rejected(e.to_string()))?;
                sqlx::query(concat!(
                    "INSERT INTO applications (name, key, origins, active, created_at) VALUES ($1, $2, $3",
                    $json_in,
                    ", $4, $5)"
                ))
                .bind(text(&app.name))
                .bind(text(&app.key))
                .bind(origins)
                .bind(app.active)
                .bind(db_time(chrono::Utc::now()))
                .execute(&self.$w)
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn set_application_active(&self, name: &str, active: bool) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE applications SET active = $1 WHERE name = $2")
                    .bind(active)
                    .bind(text(name))
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_application_key(&self, name: &str, key: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE applications SET key = $1 WHERE name = $2")
                    .bind(text(key))
                    .bind(text(name))
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_application_origins(&self, name: &str, origins: &[String]) -> Result<bool, StoreError> {
                let origins = serde_json::to_string(origins).map_err(|e| StoreError::Rejected(e.to_string()))?;
                let done = sqlx::query(concat!("UPDATE applications SET origins = $1", $json_in, " WHERE name = $2"))
                    .bind(origins)
                    .bind(text(name))
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_token(&self, name: &str, hash: &[u8], can_erase: bool) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at, can_erase) VALUES ($1, $2, $3, $4)")
                    .bind(text(name))
                    .bind(hash)
                    .bind(db_time(chrono::Utc::now()))
                    .bind(can_erase)
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn token_grant(&self, hash: &[u8]) -> Result<Option<$crate::store::TokenGrant>, StoreError> {
                let found: Option<(String, bool)> =
                    sqlx::query_as("SELECT name, can_erase FROM api_tokens WHERE token_hash = $1")
                        .bind(hash)
                        .fetch_optional(&self.$r)
                        .await
                        .map_err(classify)?;
                Ok(found.map(|(name, can_erase)| $crate::store::TokenGrant { name, can_erase }))
            }

            async fn tokens(&self) -> Result<Vec<$crate::store::TokenInfo>, StoreError> {
                sqlx::query("SELECT name, created_at, last_used_at, can_erase FROM api_tokens ORDER BY name, id")
                    .fetch_all(&self.$r)
                    .await
                    .map_err(classify)?
                    .iter()
                    .map(|r| {
                        Ok($crate::store::TokenInfo {
                            name: r.get("name"),
                            created_at: read_time(r, "created_at")?,
                            last_used_at: read_opt_time(r, "last_used_at")?,
                            can_erase: r.get("can_erase"),
                        })
                    })
                    .collect()
            }

            async fn touch_token(&self, hash: &[u8], at: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
                    .bind(db_time(at))
                    .bind(hash)
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn revoke_tokens(&self, name: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
                    .bind(text(name))
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected())
            }

            async fn users(&self) -> Result<Vec<$crate::store::UserInfo>, StoreError> {
                sqlx::query("SELECT username, email, is_superuser, active, created_at FROM users ORDER BY username")
                    .fetch_all(&self.$r)
                    .await
                    .map_err(classify)?
                    .iter()
                    .map(|r| {
                        Ok($crate::store::UserInfo {
                            username: r.get("username"),
                            email: r.get("email"),
                            is_superuser: r.get("is_superuser"),
                            active: r.get("active"),
                            created_at: read_time(r, "created_at")?,
                        })
                    })
                    .collect()
            }

            async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
                let mut tx = self.$w.begin().await.map_err(classify)?;
                let done = sqlx::query("UPDATE users SET active = $1 WHERE username = $2")
                    .bind(active)
                    .bind(text(username))
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                if !active {
                    sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
                        .bind(text(username))
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                }
                tx.commit().await.map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_user(&self, user: &$crate::domain::user::NewUser) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO users (username, email, password_hash, is_superuser, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(text(&user.username))
                .bind(text(&user.email))
                .bind(&user.password_hash)
                .bind(user.is_superuser)
                .bind(db_time(chrono::Utc::now()))
                .execute(&self.$w)
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn user_password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1 AND active")
                    .bind(text(username))
                    .fetch_optional(&self.$r)
                    .await
                    .map_err(classify)
            }

            async fn set_password(&self, username: &str, hash: &str, keep_session: &str) -> Result<bool, StoreError> {
                let mut tx = self.$w.begin().await.map_err(classify)?;
                let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                    .bind(hash)
                    .bind(text(username))
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                sqlx::query("DELETE FROM admin_sessions WHERE username = $1 AND token_hash <> $2")
                    .bind(text(username))
                    .bind(keep_session)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                tx.commit().await.map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_session(&self, session: &$crate::store::AdminSession) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO admin_sessions (token_hash, username, csrf_token, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&session.token_hash)
                .bind(text(&session.username))
                .bind(&session.csrf_token)
                .bind(db_time(chrono::Utc::now()))
                .bind(db_time(session.expires_at))
                .execute(&self.$w)
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn session(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<$crate::store::AdminSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT s.token_hash, s.username, s.csrf_token, s.expires_at FROM admin_sessions s
                     JOIN users u ON u.username = s.username AND u.active
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(token_hash)
                .bind(db_time(now))
                .fetch_optional(&self.$r)
                .await
                .map_err(classify)?;
                row.map(|r| {
                    Ok($crate::store::AdminSession {
                        token_hash: r.get("token_hash"),
                        username: r.get("username"),
                        csrf_token: r.get("csrf_token"),
                        expires_at: read_time(&r, "expires_at")?,
                    })
                })
                .transpose()
            }

            async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(())
            }
        }
    };
}

/// `impl Curation` for a backend. The catalog and the audit log are shared;
/// deleting and replaying events and errors call the backend's own
/// `delete_event_in`, `delete_errors_in` and `resolve_errors_in`.
macro_rules! impl_curation {
    ($store:ty, write: $w:ident, read: $r:ident, json_in: $json_in:literal, json_out: $json_out:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Curation for $store {
            async fn categories(&self) -> Result<Vec<$crate::store::Category>, StoreError> {
                let mut categories: Vec<$crate::store::Category> =
                    sqlx::query("SELECT id, name, description, active, strict FROM categories ORDER BY name")
                        .fetch_all(&self.$r)
                        .await
                        .map_err(classify)?
                        .iter()
                        .map(|r| $crate::store::Category {
                            id: Some(r.get("id")),
                            name: r.get("name"),
                            description: r.get("description"),
                            active: r.get("active"),
                            strict: r.get("strict"),
                            types: Vec::new(),
                        })
                        .collect();
                let rows = sqlx::query(concat!(
                    "SELECT id, category_id, name, description, schema",
                    $json_out,
                    " AS schema FROM event_types ORDER BY name"
                ))
                .fetch_all(&self.$r)
                .await
                .map_err(classify)?;
                for r in rows {
                    let schema: Option<String> = r.get("schema");
                    let t = $crate::store::EventType {
                        id: Some(r.get("id")),
                        category_id: r.get("category_id"),
                        name: r.get("name"),
                        description: r.get("description"),
                        schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
                    };
                    $crate::store::attach_type(&mut categories, t);
                }
                Ok(categories)
            }

            async fn save_category(&self, c: &$crate::store::Category) -> Result<i64, StoreError> {
                let query = match c.id {
                    None => sqlx::query_scalar(
                        "INSERT INTO categories (description, active, strict, name, created_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(text(&c.description))
                    .bind(c.active)
                    .bind(c.strict)
                    .bind(text(&c.name))
                    .bind(db_time(chrono::Utc::now())),
                    Some(id) => sqlx::query_scalar(
                        "UPDATE categories SET description = $1, active = $2, strict = $3 WHERE id = $4 RETURNING id",
                    )
                    .bind(text(&c.description))
                    .bind(c.active)
                    .bind(c.strict)
                    .bind(id),
                };
                let id: Option<i64> = query.fetch_optional(&self.$w).await.map_err(classify)?;
                id.ok_or_else(|| StoreError::Rejected("no such category".into()))
            }

            async fn save_event_type(&self, t: &$crate::store::EventType) -> Result<i64, StoreError> {
                let schema = t.schema.as_ref().map(|s| text(&s.to_string()));
                let query = match t.id {
                    None => sqlx::query_scalar(concat!(
                        "INSERT INTO event_types (description, schema, category_id, name, created_at) VALUES ($1, $2",
                        $json_in,
                        ", $3, $4, $5) RETURNING id"
                    ))
                    .bind(text(&t.description))
                    .bind(schema)
                    .bind(t.category_id)
                    .bind(text(&t.name))
                    .bind(db_time(chrono::Utc::now())),
                    Some(id) => sqlx::query_scalar(concat!(
                        "UPDATE event_types SET description = $1, schema = $2",
                        $json_in,
                        " WHERE id = $3 RETURNING id"
                    ))
                    .bind(text(&t.description))
                    .bind(schema)
                    .bind(id),
                };
                let id: Option<i64> = query.fetch_optional(&self.$w).await.map_err(classify)?;
                id.ok_or_else(|| StoreError::Rejected("no such event type".into()))
            }

            async fn delete_event_type(&self, id: i64) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM event_types WHERE id = $1")
                    .bind(id)
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_event(&self, event_id: uuid::Uuid) -> Result<bool, StoreError> {
                self.delete_event_in(event_id).await
            }

            async fn delete_errors(&self, ids: &[i64]) -> Result<u64, StoreError> {
                self.delete_errors_in(ids).await
            }

            async fn resolve_errors(&self, replays: &[$crate::store::Replay], username: &str) -> Result<u64, StoreError> {
                self.resolve_errors_in(replays, username).await
            }

            async fn log_action(&self, a: &$crate::store::AdminAction) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO admin_log (at, username, action, object, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(db_time(a.at))
                    .bind(text(&a.username))
                    .bind(text(&a.action))
                    .bind(text(&a.object))
                    .bind(text(&a.detail))
                    .execute(&self.$w)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn action_log(
                &self,
                q: &$crate::store::ActionQuery,
            ) -> Result<$crate::store::Page<$crate::store::LoggedAction, i64>, StoreError> {
                let mut sql = String::from("SELECT id, at, username, action, object, detail FROM admin_log WHERE TRUE");
                let filters = [("username", &q.username), ("action", &q.action), ("object", &q.object)];
                let values: Vec<String> = filters.iter().filter_map(|(_, v)| v.as_deref().map(text)).collect();
                for (n, (column, _)) in filters.iter().filter(|(_, v)| v.is_some()).enumerate() {
                    sql.push_str(&format!(" AND {column} = ${}", n + 1));
                }
                let (cmp, dir) = match q.order {
                    $crate::store::Order::Desc => ("<", "DESC"),
                    $crate::store::Order::Asc => (">", "ASC"),
                };
                let next = values.len() + 1;
                sql.push_str(&format!(" AND id {cmp} ${next} ORDER BY id {dir} LIMIT ${}", next + 1));
                let mut query = sqlx::query(&sql);
                for v in values {
                    query = query.bind(v);
                }
                let start = if q.order == $crate::store::Order::Desc { i64::MAX } else { i64::MIN };
                let rows = query
                    .bind(q.after.unwrap_or(start))
                    .bind(q.limit as i64 + 1)
                    .fetch_all(&self.$r)
                    .await
                    .map_err(classify)?
                    .iter()
                    .map(|r| {
                        Ok($crate::store::LoggedAction {
                            id: r.get("id"),
                            entry: $crate::store::AdminAction {
                                at: read_time(r, "at")?,
                                username: r.get("username"),
                                action: r.get("action"),
                                object: r.get("object"),
                                detail: r.get("detail"),
                            },
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok($crate::store::Page::from_rows(rows, q.limit, |a| a.id))
            }
        }
    };
}
