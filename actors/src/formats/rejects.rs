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

/// A reader's rejects not yet saved, each encoded as its rejects-file line.
pub struct Rejects {
    header: Vec<u8>,
    key: usize,
    positions: Vec<i64>,
    lines: Vec<u8>,
    /// Where each line ends in `lines`.
    ends: Vec<usize>,
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
            key: key + 2,
            positions: Vec::new(),
            lines: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The rejects file's header line.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The rejects file's column that holds a row's reference id.
    pub fn key_column(&self) -> usize {
        self.key
    }

    pub fn push<'a>(
        &mut self,
        position: u64,
        reason: &str,
        fields: impl IntoIterator<Item = &'a [u8]>,
    ) {
        self.lines
            .extend_from_slice(position.to_string().as_bytes());
        self.lines.push(b',');
        push_csv_field(&mut self.lines, reason.as_bytes());
        self.lines.push(b',');
        push_csv_record(&mut self.lines, fields);
        self.positions.push(position as i64);
        self.ends.push(self.lines.len());
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The buffered rejects: each one's position and line.
    pub fn pending(&self) -> (&[i64], Vec<&[u8]>) {
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
        (&self.positions, lines)
    }

    /// Forgets what was buffered, once it is saved.
    pub fn clear(&mut self) {
        self.positions.clear();
        self.lines.clear();
        self.ends.clear();
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
        assert_eq!(r.key_column(), 3);
        r.push(2, "bad, really", [&b"a"[..], b"x"]);
        r.push(5, "bad", [&b"b"[..], b"\xff"]);
        assert_eq!(r.header(), b"line,reason,name,id\n");
        let (positions, lines) = r.pending();
        assert_eq!(positions, [2, 5]);
        assert_eq!(lines, [&b"2,\"bad, really\",a,x\n"[..], b"5,bad,b,\xff\n"]);
        r.clear();
        assert!(r.is_empty());
    }
}
