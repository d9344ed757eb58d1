//! Writing the dataset: the ticket table (CSV or Parquet), the span annotations, the
//! revocation list, the manifest and the bad-row report.
//!
//! The table and the spans are streamed: rows are formatted here and handed to writer threads
//! (see [`super::files`]) in chunks of text or in Arrow record batches.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::body::Span;
use super::files::{io_error, AtomicFile, Background, ChunkedFile};
use super::population::Subject;
use super::text::{push_cents, push_date, push_datetime, push_padded, push_uint};
use super::tickets::{Purposes, Ticket};
use super::DatagenError;

/// Rows per Arrow record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per Parquet row group (bounds the writer's memory).
const ROW_GROUP_ROWS: usize = 4 * BATCH_ROWS;

/// Record batches a Parquet writer thread may have queued.
const BATCHES_IN_FLIGHT: usize = 2;

/// Size of the Parquet file's write buffer.
const BUFFER_BYTES: usize = 1 << 20;

/// The type of a column, as named in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    String,
    Int64,
    Float64,
    Date,
    Datetime,
}

impl ColumnType {
    fn manifest_name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Date => "date",
            ColumnType::Datetime => "datetime",
        }
    }

    fn arrow_type(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

/// One column of the ticket table.
#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) ty: ColumnType,
    /// Manifest class: identifier | quasi_identifier | sensitive | free_text | public.
    pub(crate) class: &'static str,
    /// Whether the column has missing values.
    pub(crate) nullable: bool,
    pub(crate) description: &'static str,
}

const fn col(
    name: &'static str,
    ty: ColumnType,
    class: &'static str,
    nullable: bool,
    description: &'static str,
) -> Column {
    Column {
        name,
        ty,
        class,
        nullable,
        description,
    }
}

/// The ticket table's columns, in file order.
#[rustfmt::skip]
pub(crate) const COLUMNS: [Column; 16] = {
    use ColumnType::*;
    [
        col("ticket_id", String, "public", false, "Ticket number"),
        col("subject_id", String, "identifier", false, "Customer account id (the data subject)"),
        col("full_name", String, "identifier", false, "Customer's full name"),
        col("email", String, "identifier", false, "Customer's e-mail address"),
        col("phone", String, "identifier", false, "Customer's phone number, mixed national and international formats"),
        col("birth_date", Date, "quasi_identifier", false, "Customer's date of birth"),
        col("zip", String, "quasi_identifier", false, "Customer's postal code (5 digits, leading zeros kept)"),
        col("country", String, "quasi_identifier", false, "Customer's country, ISO 3166-1 alpha-2"),
        col("provenance", String, "public", false, "Channel the ticket came from: app, web, partner_api or scraped"),
        col("consent_purposes", String, "public", true, "Purposes the customer consented to, ';'-separated: training, analytics, marketing"),
        col("consent_status", String, "public", true, "State of the consent: given, withdrawn or expired"),
        col("created_at", Datetime, "public", false, "When the ticket was opened (UTC)"),
        col("priority", Int64, "public", false, "Priority, 1 (low) to 4 (urgent)"),
        col("handle_time_minutes", Float64, "public", false, "Agent time spent on the ticket, in minutes"),
        col("satisfaction", Int64, "sensitive", true, "Customer satisfaction score, 1 to 5; empty when not answered"),
        col("body", String, "free_text", false, "Ticket text as written by the customer; may contain personal data"),
    ]
};

/// The Arrow schema of the Parquet ticket table.
pub(crate) fn arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// How a malformed record is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformation {
    /// One field too many (a trailing `,oops`).
    ExtraField,
    /// `priority` holds `high` instead of a number.
    BadType,
}

/// Appends `field` to a CSV line, quoted as RFC 4180 asks when it holds `,` `"` CR or LF.
fn push_csv_field(line: &mut String, field: &str) {
    if field
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        line.push('"');
        for (i, part) in field.split('"').enumerate() {
            if i > 0 {
                line.push_str("\"\"");
            }
            line.push_str(part);
        }
        line.push('"');
    } else {
        line.push_str(field);
    }
}

/// Where ticket rows go.
pub(crate) enum TicketSink {
    Csv(CsvTickets),
    Parquet(Box<ParquetTickets>),
}

impl TicketSink {
    /// Appends one row.
    pub(crate) fn write(
        &mut self,
        ticket: &Ticket,
        subject: &Subject,
        malformed: Option<Malformation>,
    ) -> Result<(), DatagenError> {
        match self {
            TicketSink::Csv(csv) => csv.write(ticket, subject, malformed),
            TicketSink::Parquet(pq) => {
                debug_assert!(malformed.is_none(), "Parquet cannot hold malformed rows");
                pq.write(ticket, subject)
            }
        }
    }

    /// Completes the file and moves it into place.
    pub(crate) fn finish(self) -> Result<PathBuf, DatagenError> {
        match self {
            TicketSink::Csv(csv) => csv.finish(),
            TicketSink::Parquet(pq) => pq.finish(),
        }
    }
}

/// The ticket table as RFC 4180 CSV (LF line ends, header first).
pub(crate) struct CsvTickets {
    out: ChunkedFile,
}

impl CsvTickets {
    pub(crate) fn create(path: PathBuf) -> Result<CsvTickets, DatagenError> {
        let mut out = ChunkedFile::create(path)?;
        let header: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        out.text().push_str(&header.join(","));
        out.text().push('\n');
        Ok(CsvTickets { out })
    }

    fn write(
        &mut self,
        t: &Ticket,
        subject: &Subject,
        malformed: Option<Malformation>,
    ) -> Result<(), DatagenError> {
        let line = self.out.text();
        line.push('T');
        push_padded(line, t.id, 9);
        line.push(',');
        subject.push_id(line);
        line.push(',');
        push_csv_field(line, &t.full_name);
        line.push(',');
        push_csv_field(line, &t.email);
        line.push(',');
        push_csv_field(line, &t.phone);
        line.push(',');
        push_date(line, subject.birth);
        line.push(',');
        push_padded(line, u64::from(subject.zip), 5);
        line.push(',');
        line.push_str(subject.country_code());
        line.push(',');
        line.push_str(t.provenance);
        line.push(',');
        match t.purposes {
            Purposes::Missing => {}
            // Quoted, so that readers can tell an empty list from a missing value.
            Purposes::Empty => line.push_str("\"\""),
            Purposes::Listed(list) => line.push_str(list),
        }
        line.push(',');
        line.push_str(t.status.unwrap_or(""));
        line.push(',');
        push_datetime(line, t.created_at, 'T');
        line.push(',');
        if malformed == Some(Malformation::BadType) {
            line.push_str("high");
        } else {
            push_uint(line, t.priority as u64);
        }
        line.push(',');
        push_cents(line, t.handle_time_centi);
        line.push(',');
        if let Some(score) = t.satisfaction {
            push_uint(line, score as u64);
        }
        line.push(',');
        push_csv_field(line, &t.body);
        if malformed == Some(Malformation::ExtraField) {
            line.push_str(",oops");
        }
        line.push('\n');
        self.out.end_record()
    }

    fn finish(self) -> Result<PathBuf, DatagenError> {
        self.out.finish()
    }
}

/// The ticket table as Parquet (zstd): rows are collected into record batches of
/// [`BATCH_ROWS`] here, and encoded and written by a [`Background`] thread.
pub(crate) struct ParquetTickets {
    path: PathBuf,
    writer: Background<RecordBatch>,
    schema: SchemaRef,
    rows: usize,
    scratch: String,
    ticket_id: StringBuilder,
    subject_id: StringBuilder,
    full_name: StringBuilder,
    email: StringBuilder,
    phone: StringBuilder,
    birth_date: Date32Builder,
    zip: StringBuilder,
    country: StringBuilder,
    provenance: StringBuilder,
    consent_purposes: StringBuilder,
    consent_status: StringBuilder,
    created_at: TimestampMicrosecondBuilder,
    priority: Int64Builder,
    handle_time_minutes: Float64Builder,
    satisfaction: Int64Builder,
    body: StringBuilder,
}

impl ParquetTickets {
    pub(crate) fn create(path: PathBuf) -> Result<ParquetTickets, DatagenError> {
        let (atomic, file) = AtomicFile::create(path.clone())?;
        let schema = arrow_schema();
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // (Nearly) unique per row or per subject: a dictionary would only be built to be
        // thrown away when it outgrows its page.
        for name in [
            "ticket_id",
            "subject_id",
            "email",
            "phone",
            "created_at",
            "body",
        ] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        let parquet_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DatagenError::Parquet { path, source }
        };
        let buffer = BufWriter::with_capacity(BUFFER_BYTES, file);
        let encoder = ArrowWriter::try_new(buffer, schema.clone(), Some(props.build()))
            .map_err(parquet_error(&path))?;
        let writer = Background::spawn(
            &path,
            BATCHES_IN_FLIGHT,
            (atomic, encoder),
            move |(atomic, encoder), batch: RecordBatch| {
                encoder.write(&batch).map_err(parquet_error(atomic.path()))
            },
            move |(atomic, encoder)| {
                let buffer = encoder.into_inner().map_err(parquet_error(atomic.path()))?;
                let file = buffer
                    .into_inner()
                    .map_err(|e| io_error(atomic.path())(e.into_error()))?;
                drop(file);
                atomic.commit()
            },
        )?;
        let strings = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16);
        Ok(ParquetTickets {
            path,
            writer,
            schema,
            rows: 0,
            scratch: String::new(),
            ticket_id: strings(),
            subject_id: strings(),
            full_name: strings(),
            email: strings(),
            phone: strings(),
            birth_date: Date32Builder::with_capacity(BATCH_ROWS),
            zip: strings(),
            country: strings(),
            provenance: strings(),
            consent_purposes: strings(),
            consent_status: strings(),
            created_at: TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS),
            priority: Int64Builder::with_capacity(BATCH_ROWS),
            handle_time_minutes: Float64Builder::with_capacity(BATCH_ROWS),
            satisfaction: Int64Builder::with_capacity(BATCH_ROWS),
            body: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 160),
        })
    }

    fn write(&mut self, t: &Ticket, subject: &Subject) -> Result<(), DatagenError> {
        let s = &mut self.scratch;
        s.clear();
        s.push('T');
        push_padded(s, t.id, 9);
        self.ticket_id.append_value(&*s);
        s.clear();
        subject.push_id(s);
        self.subject_id.append_value(&*s);
        self.full_name.append_value(&t.full_name);
        self.email.append_value(&t.email);
        self.phone.append_value(&t.phone);
        self.birth_date.append_value(subject.birth);
        s.clear();
        push_padded(s, u64::from(subject.zip), 5);
        self.zip.append_value(&*s);
        self.country.append_value(subject.country_code());
        self.provenance.append_value(t.provenance);
        self.consent_purposes.append_option(t.purposes_text());
        self.consent_status.append_option(t.status);
        self.created_at.append_value(t.created_at * 1_000_000);
        self.priority.append_value(t.priority);
        self.handle_time_minutes
            .append_value(t.handle_time_centi as f64 / 100.0);
        self.satisfaction.append_option(t.satisfaction);
        self.body.append_value(&t.body);
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), DatagenError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ticket_id.finish()),
            Arc::new(self.subject_id.finish()),
            Arc::new(self.full_name.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.phone.finish()),
            Arc::new(self.birth_date.finish()),
            Arc::new(self.zip.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.provenance.finish()),
            Arc::new(self.consent_purposes.finish()),
            Arc::new(self.consent_status.finish()),
            Arc::new(self.created_at.finish()),
            Arc::new(self.priority.finish()),
            Arc::new(self.handle_time_minutes.finish()),
            Arc::new(self.satisfaction.finish()),
            Arc::new(self.body.finish()),
        ];
        self.rows = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|source| {
            DatagenError::Arrow {
                path: self.path.clone(),
                source,
            }
        })?;
        self.writer.send(batch)
    }

    fn finish(mut self) -> Result<PathBuf, DatagenError> {
        if self.rows > 0 {
            self.flush_batch()?;
        }
        self.writer.finish()
    }
}

/// `pii_spans.jsonl`: one JSON object per planted span.
pub(crate) struct SpanWriter {
    out: ChunkedFile,
    /// Spans written so far.
    pub(crate) count: u64,
}

impl SpanWriter {
    pub(crate) fn create(path: PathBuf) -> Result<SpanWriter, DatagenError> {
        Ok(SpanWriter {
            out: ChunkedFile::create(path)?,
            count: 0,
        })
    }

    /// Writes the spans of data record `row` (all in the `body` column).
    pub(crate) fn write(&mut self, row: u64, spans: &[Span]) -> Result<(), DatagenError> {
        if spans.is_empty() {
            return Ok(());
        }
        let line = self.out.text();
        for span in spans {
            // Hand-written: every value is a number or a fixed ASCII word, nothing to escape.
            line.push_str("{\"row\":");
            push_uint(line, row);
            line.push_str(",\"column\":\"body\",\"start\":");
            push_uint(line, u64::from(span.start));
            line.push_str(",\"end\":");
            push_uint(line, u64::from(span.end));
            line.push_str(",\"type\":\"");
            line.push_str(span.kind.as_str());
            line.push_str("\"}\n");
        }
        self.count += spans.len() as u64;
        self.out.end_record()
    }

    pub(crate) fn finish(self) -> Result<PathBuf, DatagenError> {
        self.out.finish()
    }
}

/// The text of `revocations.csv`: a `subject_id` header, then the ids in ascending order.
pub(crate) fn revocations_csv(revoked: &[u32]) -> String {
    let mut out = String::with_capacity(12 + revoked.len() * 9);
    out.push_str("subject_id\n");
    for &id in revoked {
        out.push('S');
        push_padded(&mut out, u64::from(id), 7);
        out.push('\n');
    }
    out
}

/// The text of `manifest.toml` for a dataset made with `rows` and `seed`.
pub(crate) fn manifest_toml(rows: u64, seed: u64) -> String {
    let mut out = format!(
        r#"# Dataset manifest: provenance and column classes for privprep.
dataset_id = "support_tickets"
owner = "Customer Support Platform <support-data@example.com>"
license = "internal-use-only"
origin = "synthetic: privprep datagen --rows {rows} --seed {seed}"
collected_at = "2026-11-01"
subject_column = "subject_id"
provenance_column = "provenance"
consent_purposes_column = "consent_purposes"
consent_status_column = "consent_status"
timestamp_column = "created_at"
purpose_separator = ";"
"#
    );
    for c in &COLUMNS {
        let ty = format!("type = \"{}\"", c.ty.manifest_name());
        let class = format!("class = \"{}\"", c.class);
        out.push_str(&format!(
            "\n[[columns]]\nname = \"{name}\"\n\
             {ty:<20} # string | int64 | float64 | bool | date | datetime\n\
             {class:<20} # identifier | quasi_identifier | sensitive | free_text | public\n\
             description = \"{description}\"\n",
            name = c.name,
            description = c.description,
        ));
    }
    out
}

/// The record indices of malformed rows, as written to `bad_rows.json`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct BadRowsReport {
    pub(crate) extra_field: Vec<u64>,
    pub(crate) bad_type: Vec<BadCell>,
}

/// One cell with a value of the wrong type.
#[derive(Debug, serde::Serialize)]
pub(crate) struct BadCell {
    pub(crate) row: u64,
    pub(crate) column: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_follows_rfc_4180() {
        let quoted = |s: &str| {
            let mut line = String::new();
            push_csv_field(&mut line, s);
            line
        };
        assert_eq!(quoted("plain text"), "plain text");
        assert_eq!(quoted("a, b"), "\"a, b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quoted("two\nlines"), "\"two\nlines\"");
        assert_eq!(quoted("cr\r"), "\"cr\r\"");
        assert_eq!(quoted("\""), "\"\"\"\"");
    }

    #[test]
    fn manifest_matches_the_documented_layout() {
        let text = manifest_toml(1000, 42);
        assert!(text.starts_with(
            "# Dataset manifest: provenance and column classes for privprep.\n\
             dataset_id = \"support_tickets\"\n"
        ));
        assert!(text.contains("origin = \"synthetic: privprep datagen --rows 1000 --seed 42\"\n"));
        assert!(text.contains(
            "[[columns]]\n\
             name = \"ticket_id\"\n\
             type = \"string\"      # string | int64 | float64 | bool | date | datetime\n\
             class = \"public\"     # identifier | quasi_identifier | sensitive | free_text | public\n\
             description = \"Ticket number\"\n"
        ));
        let doc: toml::Value = toml::from_str(&text).expect("manifest parses");
        let columns = doc["columns"].as_array().unwrap();
        let names: Vec<&str> = columns
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, expected);
        let class = |name: &str| {
            columns
                .iter()
                .find(|c| c["name"].as_str() == Some(name))
                .unwrap()["class"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(class("birth_date"), "quasi_identifier");
        assert_eq!(class("satisfaction"), "sensitive");
        assert_eq!(class("body"), "free_text");
        assert_eq!(doc["purpose_separator"].as_str(), Some(";"));
    }

    #[test]
    fn revocations_are_one_id_per_line() {
        assert_eq!(
            revocations_csv(&[42, 1_234_567]),
            "subject_id\nS0000042\nS1234567\n"
        );
    }
}
