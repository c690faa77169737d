//! Where a NON_COST_BASED group's messages wait (`pending_messages`)
//! until the export's terminal write moves them to the outbox, in the same
//! transaction that moves its group's watermark: none is published unless all
//! are. The export pipeline stores them as a sink: each cut of the
//! [`super::ids::IdsEncoder`]'s output is one row per message.

use bytes::Bytes;
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use uuid::Uuid;

use super::ids::messages;
use crate::export::sink::{Sink, SinkError};
use crate::export::{Destination, OpenFile};

/// The pending messages of one export.
pub struct PendingSink {
    pub pool: Pool,
    pub job_id: Uuid,
    pub topic: String,
    /// Every message's key (one partition keeps their order).
    pub key: String,
}

impl PendingSink {
    fn error(&self, message: impl std::fmt::Display, retriable: bool) -> SinkError {
        SinkError {
            location: format!("kafka://{}", self.topic),
            message: message.to_string(),
            retriable,
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), SinkError> {
        let client = self.pool.get().await.map_err(|e| self.error(e, true))?;
        client.execute(sql, params).await.map_err(|e| {
            let retriable = crate::error::is_transient(&e);
            self.error(crate::error::chain(&e), retriable)
        })?;
        Ok(())
    }

    /// Every message of the export goes: a new attempt starts from none.
    async fn clear(&self) -> Result<(), SinkError> {
        self.execute(
            "DELETE FROM pending_messages WHERE job_id = $1",
            &[&self.job_id],
        )
        .await
    }

    async fn store(&self, body: Bytes) -> Result<String, SinkError> {
        let (seqs, payloads): (Vec<i32>, Vec<String>) = messages(&body)
            .map_err(|e| self.error(e, false))?
            .into_iter()
            .unzip();
        self.execute(
            "INSERT INTO pending_messages (job_id, seq, topic, message_key, payload)
             SELECT $1, s, $2, $3, p FROM unnest($4::int[], $5::text[]) AS m (s, p)
             ON CONFLICT (job_id, seq) DO UPDATE SET payload = EXCLUDED.payload",
            &[&self.job_id, &self.topic, &self.key, &seqs, &payloads],
        )
        .await?;
        Ok(String::new())
    }
}

impl Sink for PendingSink {
    fn begin<'a>(&'a self, file: &'a mut OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match file.parts.is_empty() {
                true => self.clear().await,
                false => Ok(()),
            }
        })
    }

    fn put_part<'a>(
        &'a self,
        _: &'a Destination,
        _: Option<&'a str>,
        _: i32,
        _: u64,
        body: Bytes,
    ) -> BoxFuture<'a, Result<String, SinkError>> {
        Box::pin(self.store(body))
    }

    fn complete<'a>(&'a self, _: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn abort<'a>(&'a self, _: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.clear())
    }

    fn delete<'a>(&'a self, _: &'a Destination) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.clear())
    }
}
