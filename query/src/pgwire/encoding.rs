//! Results on the wire: Postgres fields for Arrow columns, rows batch by batch.

use super::*;

/// How a result travels: its Postgres fields and the Arrow schema they
/// describe, where columns arrow-pg cannot encode (maps, unions) are text.
pub(super) struct Encoding {
    pub(super) fields: Arc<Vec<FieldInfo>>,
    pub(super) schema: SchemaRef,
    pub(super) as_text: Arc<[bool]>,
}

impl Encoding {
    pub(super) fn new(
        schema: &Schema,
        format: &Format,
        options: Option<Arc<FormatOptions>>,
    ) -> PgWireResult<Encoding> {
        let (schema, as_text) = Self::wire_schema(schema);
        let fields = arrow_schema_to_pg_fields(&schema, format, options)?;
        Ok(Encoding {
            fields: Arc::new(fields),
            schema,
            as_text,
        })
    }

    pub(super) fn wire_schema(schema: &Schema) -> (SchemaRef, Arc<[bool]>) {
        let as_text: Arc<[bool]> = schema.fields().iter().map(|f| !encodable(f)).collect();
        let fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .zip(as_text.iter())
            .map(|(f, &text)| {
                if text {
                    Arc::new(Field::new(f.name(), DataType::Utf8, true))
                } else {
                    Arc::clone(f)
                }
            })
            .collect();
        (Arc::new(Schema::new(fields)), as_text)
    }

    /// `batch` as [`Encoding::schema`] has it.
    pub(super) fn convert(&self, batch: RecordBatch) -> PgWireResult<RecordBatch> {
        if !self.as_text.contains(&true) {
            return Ok(batch);
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.as_text.iter())
            .map(|(column, &text)| {
                if !text {
                    return Ok(Arc::clone(column));
                }
                let options = arrow::util::display::FormatOptions::default();
                let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                    .map_err(|e| error("ERROR", "XX000", e.to_string()))?;
                let strings: StringArray = (0..column.len())
                    .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                    .collect();
                Ok(Arc::new(strings) as ArrayRef)
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| error("ERROR", "XX000", e.to_string()))
    }
}

/// Whether arrow-pg has a Postgres type and an encoder for `field`.
pub(super) fn encodable(field: &FieldRef) -> bool {
    !matches!(
        field.data_type(),
        DataType::Float16 | DataType::ListView(_) | DataType::LargeListView(_)
    ) && field_into_pg_type(field).is_ok()
}

/// The rows of a running query, batch by batch. Sets `capped` when the
/// stream ends cut by the row cap.
pub(super) fn rows(
    stream: QueryStream,
    encoding: Encoding,
    capped: Arc<Capped>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    struct State {
        stream: QueryStream,
        encoding: Encoding,
        batch: Option<RowEncoder>,
        capped: Arc<Capped>,
        done: bool,
    }
    let state = State {
        stream,
        encoding,
        batch: None,
        capped,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(row) = s.batch.as_mut().and_then(RowEncoder::next_row) {
                return Some((row, s));
            }
            s.batch = None;
            if s.done {
                return None;
            }
            let failed = match s.stream.next().await {
                Some(Ok(batch)) => match s.encoding.convert(batch) {
                    Ok(batch) => {
                        s.batch = Some(RowEncoder::new(batch, Arc::clone(&s.encoding.fields)));
                        continue;
                    }
                    Err(e) => e,
                },
                Some(Err(e)) => query_error(e),
                None => {
                    s.done = true;
                    if s.stream.truncated() {
                        s.capped.0.store(true, Ordering::Relaxed);
                    }
                    return None;
                }
            };
            s.done = true;
            return Some((Err(failed), s));
        }
    })
}

/// The rows of a batch made here (chatter answers).
pub(super) fn fixed_rows(
    batch: RecordBatch,
    encoding: Encoding,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let mut rows = RowEncoder::new(batch, encoding.fields);
    futures::stream::iter(std::iter::from_fn(move || rows.next_row()))
}

/// One row of text columns.
pub(super) fn text_batch(columns: &[(&str, String)]) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, _)| Field::new(*name, DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, value)| Arc::new(StringArray::from(vec![value.as_str()])) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("one text value per text column")
}

pub(super) fn row_description(fields: &[FieldInfo]) -> RowDescription {
    RowDescription::new(fields.iter().map(Into::into).collect())
}
