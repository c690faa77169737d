//! A NON_COST_BASED group's reference ids as messages (seed 000): packed
//! in order into messages within the broker's limits ([`IdChunker`]), and
//! encoded by the export pipeline like any format ([`IdsEncoder`]): each
//! cut of its output is the messages completed so far, for the pending
//! messages sink to store one row each.

use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

use super::GroupType;
use crate::export::encode::{EncodeError, FileEncoder};

/// How an [`IdsMessage`]'s `parts` is written while its export still
/// runs (`null`: not known yet). The terminal write, which knows how many
/// messages there are, writes the number in its place. It cannot occur
/// inside an id: quotes in a JSON string are escaped.
pub const PARTS_UNKNOWN: &str = "\"parts\":null";

/// Part of a NON_COST_BASED group's reference ids: seed 004's reference
/// list (`referenceIds`), numbered within the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdsMessage {
    pub domain_id: Uuid,
    pub group_id: String,
    pub group_type: GroupType,
    pub run_id: Uuid,
    pub exported_at: String,
    /// From 1.
    pub part: u32,
    /// Set by the terminal write (`null` until then).
    pub parts: Option<u32>,
    pub reference_ids: Vec<String>,
}

/// Packs reference ids into messages of at most `max_ids` ids and
/// `max_bytes` bytes of JSON, in order.
pub struct IdChunker {
    head: IdsMessage,
    max_ids: usize,
    max_bytes: usize,
    /// The JSON size of `head` with its ids (and a 10-digit `parts`).
    bytes: usize,
}

/// One id too large for any message.
#[derive(Debug, thiserror::Error)]
#[error("reference id `{0}` does not fit in a message of {1} bytes")]
pub struct TooLarge(pub String, pub usize);

impl IdChunker {
    /// Messages like `head` (whose ids are dropped), numbered from its
    /// `part`.
    pub fn new(mut head: IdsMessage, max_ids: usize, max_bytes: usize) -> Self {
        head.reference_ids.clear();
        let mut chunker = Self {
            head,
            max_ids: max_ids.max(1),
            max_bytes,
            bytes: 0,
        };
        chunker.bytes = chunker.empty_size();
        chunker
    }

    /// The JSON size of `head` with no ids; `null` (`parts`) becomes a
    /// number of up to 10 digits.
    fn empty_size(&self) -> usize {
        serde_json::to_string(&self.head)
            .expect("a message serialises")
            .len()
            + 6
    }

    /// Adds `id`; a message that is full comes back (the id then begins
    /// the next one).
    pub fn push(&mut self, id: String) -> Result<Option<String>, TooLarge> {
        let size = id_size(&id);
        let fits =
            |c: &Self| c.head.reference_ids.len() < c.max_ids && c.bytes + size <= c.max_bytes;
        let mut full = None;
        if !fits(self) {
            if self.head.reference_ids.is_empty() {
                return Err(TooLarge(id, self.max_bytes));
            }
            full = self.take();
            if !fits(self) {
                return Err(TooLarge(id, self.max_bytes));
            }
        }
        self.bytes += size;
        self.head.reference_ids.push(id);
        Ok(full)
    }

    /// The message being filled, if it holds any id; the next one is
    /// numbered after it.
    pub fn take(&mut self) -> Option<String> {
        if self.head.reference_ids.is_empty() {
            return None;
        }
        let json = serde_json::to_string(&self.head).expect("a message serialises");
        self.head.reference_ids.clear();
        self.head.part += 1;
        self.bytes = self.empty_size();
        Some(json)
    }

    /// Messages taken so far.
    pub fn parts(&self) -> u32 {
        self.head.part - 1
    }
}

/// An id's bytes in the JSON list: quoted, escaped as serde_json escapes
/// (`\"`, `\\`, the short escapes, `\u00XX` for other control
/// characters), and a comma. Counted, not serialised: it runs once per id.
fn id_size(id: &str) -> usize {
    let escaped: usize = id
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    escaped + 3
}

/// The export pipeline's encoder of a NON_COST_BASED group's ids (the
/// export's one field). Its output is one line per completed message:
/// the message's number, a tab, its JSON (which holds no raw line break).
/// An id goes to the store with the message it is in, so the rows a cut
/// reports may include some of the next message's: the users export
/// reads from its start again on a retry, and counts what it sent at its
/// end.
pub struct IdsEncoder {
    chunker: IdChunker,
    out: Vec<u8>,
}

impl IdsEncoder {
    pub fn new(chunker: IdChunker) -> Self {
        Self {
            chunker,
            out: Vec::new(),
        }
    }

    fn frame(&mut self, message: String) {
        self.out
            .extend_from_slice(self.chunker.parts().to_string().as_bytes());
        self.out.push(b'\t');
        self.out.extend_from_slice(message.as_bytes());
        self.out.push(b'\n');
    }
}

impl FileEncoder for IdsEncoder {
    fn begin(&mut self, _rows_before: u64) -> Result<(), EncodeError> {
        Ok(())
    }

    fn rows(&mut self, rows: &[Row]) -> Result<(), EncodeError> {
        for row in rows {
            let id: String = row
                .try_get(0)
                .map_err(|e| EncodeError::Value(e.to_string()))?;
            let full = self
                .chunker
                .push(id)
                .map_err(|e| EncodeError::Value(e.to_string()))?;
            if let Some(message) = full {
                self.frame(message);
            }
        }
        Ok(())
    }

    fn ready(&self) -> usize {
        self.out.len()
    }

    fn cut(&mut self) -> Result<Vec<u8>, EncodeError> {
        Ok(std::mem::take(&mut self.out))
    }

    fn finish(&mut self) -> Result<Vec<u8>, EncodeError> {
        if let Some(message) = self.chunker.take() {
            self.frame(message);
        }
        self.cut()
    }
}

/// The messages of an [`IdsEncoder`]'s cut: each one's number and JSON.
pub fn messages(cut: &[u8]) -> Result<Vec<(i32, String)>, String> {
    cut.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
            let (seq, json) = text
                .split_once('\t')
                .ok_or("a message without its number")?;
            let seq = seq
                .parse()
                .map_err(|_| format!("not a message number: {seq:?}"))?;
            Ok((seq, json.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> IdsMessage {
        IdsMessage {
            domain_id: Uuid::nil(),
            group_id: "g".into(),
            group_type: GroupType::NonCostBased,
            run_id: Uuid::nil(),
            exported_at: "2026-12-01T00:00:00Z".into(),
            part: 1,
            parts: None,
            reference_ids: Vec::new(),
        }
    }

    fn chunk(ids: &[String], max_ids: usize, max_bytes: usize) -> Vec<IdsMessage> {
        let mut c = IdChunker::new(head(), max_ids, max_bytes);
        let mut out: Vec<String> = Vec::new();
        for id in ids {
            out.extend(c.push(id.clone()).unwrap());
        }
        out.extend(c.take());
        out.iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect()
    }

    #[test]
    fn ids_split_by_count_and_by_bytes_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|i| format!("user-{i:05}\"é")).collect();
        for (max_ids, max_bytes) in [(100, 1 << 20), (1000, 2000), (7, 300)] {
            let parts = chunk(&ids, max_ids, max_bytes);
            let mut seen = Vec::new();
            for (i, m) in parts.iter().enumerate() {
                assert_eq!(m.part as usize, i + 1);
                assert!(m.reference_ids.len() <= max_ids);
                let mut json = serde_json::to_string(m).unwrap();
                json = json.replace(PARTS_UNKNOWN, "\"parts\":4294967295");
                assert!(json.len() <= max_bytes, "{} > {max_bytes}", json.len());
                seen.extend(m.reference_ids.iter().cloned());
            }
            assert_eq!(seen, ids, "every id once, in order");
        }
    }

    #[test]
    fn an_id_is_sized_as_serde_json_writes_it() {
        for id in ["u1", "a\"b\\c", "tab\there\u{1}\u{7f}", "é中\n"] {
            let written = serde_json::to_string(id).unwrap().len() + 1;
            assert_eq!(id_size(id), written, "{id:?}");
        }
    }

    #[test]
    fn an_id_that_fits_no_message_is_an_error() {
        let mut c = IdChunker::new(head(), 10, 200);
        assert!(c.push("x".repeat(300)).is_err());
        assert!(c.take().is_none());
    }

    #[test]
    fn a_cut_is_its_messages_each_numbered() {
        let mut c = IdChunker::new(head(), 2, 1 << 20);
        let mut out = Vec::new();
        for id in ["a", "b", "c"] {
            if let Some(m) = c.push(id.into()).unwrap() {
                out.push((c.parts() as i32, m));
            }
        }
        out.extend(c.take().map(|m| (c.parts() as i32, m)));
        let framed: Vec<u8> = out
            .iter()
            .flat_map(|(n, m)| format!("{n}\t{m}\n").into_bytes())
            .collect();
        assert_eq!(messages(&framed).unwrap(), out);
        assert_eq!(out.len(), 2);
        assert!(messages(b"x\t{}\n").is_err());
    }
}
