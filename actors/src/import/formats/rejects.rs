//! The rejects file: one CSV line per rejected row, its position (`line`
//! of a CSV file, `row` of a Parquet file), `reason`, then the row's
//! original fields, so an operator can fix the rows and load them
//! again (like pgloader's reject file).
//!
//! A reader collects a step's rejects in [`Rejects`] and saves them to the
//! job's rows in the database (`pg::rejects`) before the step's rows go on,
//! so a checkpoint never covers a reject that is not stored; the file is
//! written from the database when the job finishes.

/// Appends `field` to `out` as one CSV field, quoted when it must be.
pub fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs_quotes = field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends one record (fields joined by commas, CRLF-free `\n` end).
pub fn push_csv_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a [u8]>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_csv_field(out, f);
    }
    out.push(b'\n');
}

/// A reader's rejects not yet saved, each encoded as its rejects-file line,
/// with the row's reference id (the status event's `failedList`).
pub struct Rejects {
    header: Vec<u8>,
    /// Which field holds the reference id.
    key: usize,
    positions: Vec<i64>,
    lines: Vec<u8>,
    /// Where each line ends in `lines`.
    ends: Vec<usize>,
    /// Each row's reference id, trimmed; `None` when it is blank.
    keys: Vec<Option<Vec<u8>>>,
    /// In a multi-file job: the file's index and name.
    file: Option<(u64, String)>,
}

/// Positions of a multi-file job's rejects: the file's index above this
/// many bits, the position in it below, so that every reject has its own,
/// in file order.
const FILE_SHIFT: u32 = 40;

/// The buffered rejects, one entry per row in each.
pub struct Pending<'a> {
    pub positions: &'a [i64],
    pub lines: Vec<&'a [u8]>,
    pub keys: Vec<Option<&'a [u8]>>,
}

impl Rejects {
    /// `position` names the first column; `columns` are the source's
    /// normalised headers, and `columns[key]` holds a row's reference id.
    pub fn new(position: &str, columns: &[String], key: usize) -> Self {
        let mut header = Vec::new();
        push_csv_record(
            &mut header,
            [position, "reason"]
                .into_iter()
                .chain(columns.iter().map(String::as_str))
                .map(str::as_bytes),
        );
        Self {
            header,
            key,
            positions: Vec::new(),
            lines: Vec::new(),
            ends: Vec::new(),
            keys: Vec::new(),
            file: None,
        }
    }

    /// Rejects of file `index` of a multi-file job: the rejects file names
    /// the file with each position (`part-00003.csv:17`).
    pub fn in_file(self, file: Option<(u64, String)>) -> Self {
        Self { file, ..self }
    }

    /// The rejects file's header line.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    pub fn push<'a>(
        &mut self,
        position: u64,
        reason: &str,
        fields: impl IntoIterator<Item = &'a [u8]>,
    ) {
        let (stored, text) = match &self.file {
            Some((index, name)) => (
                (index << FILE_SHIFT) + position,
                format!("{name}:{position}"),
            ),
            None => (position, position.to_string()),
        };
        push_csv_field(&mut self.lines, text.as_bytes());
        self.lines.push(b',');
        push_csv_field(&mut self.lines, reason.as_bytes());
        self.lines.push(b',');
        let mut key = None;
        let fields = fields.into_iter().enumerate().map(|(i, field)| {
            if i == self.key {
                key = Some(field.trim_ascii());
            }
            field
        });
        push_csv_record(&mut self.lines, fields);
        self.positions.push(stored as i64);
        self.ends.push(self.lines.len());
        self.keys
            .push(key.filter(|k| !k.is_empty()).map(<[u8]>::to_vec));
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The buffered rejects: each one's position, line and reference id.
    pub fn pending(&self) -> Pending<'_> {
        let mut start = 0;
        let lines = self
            .ends
            .iter()
            .map(|&end| {
                let line = &self.lines[start..end];
                start = end;
                line
            })
            .collect();
        Pending {
            positions: &self.positions,
            lines,
            keys: self.keys.iter().map(Option::as_deref).collect(),
        }
    }

    /// Forgets what was buffered, once it is saved.
    pub fn clear(&mut self) {
        self.positions.clear();
        self.lines.clear();
        self.ends.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        push_csv_record(
            &mut out,
            [&b"plain"[..], b"a,b", b"say \"hi\"", b"two\nlines"],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n"
        );
    }

    #[test]
    fn each_reject_is_one_line_under_the_header() {
        let mut r = Rejects::new("line", &["name".to_string(), "id".to_string()], 1);
        r.push(2, "bad, really", [&b"a"[..], b"x"]);
        r.push(5, "bad", [&b"b"[..], b"\xff"]);
        r.push(6, "has 1 fields, expected 2", [&b"solo"[..]]);
        r.push(7, "bad", [&b"c"[..], b" r7 "]);
        r.push(8, "empty", [&b"d"[..], b" "]);
        assert_eq!(r.header(), b"line,reason,name,id\n");
        let pending = r.pending();
        assert_eq!(pending.positions, [2, 5, 6, 7, 8]);
        assert_eq!(
            pending.lines[..2],
            [&b"2,\"bad, really\",a,x\n"[..], b"5,bad,b,\xff\n"]
        );
        // The id field, trimmed; none for a ragged row without it or a blank one.
        assert_eq!(
            pending.keys,
            [Some(&b"x"[..]), Some(b"\xff"), None, Some(b"r7"), None]
        );
        r.clear();
        assert!(r.is_empty());
    }
}
