use std::sync::Arc;

#[cfg(not(feature = "datafusion"))]
use arrow::array::RecordBatch;
#[cfg(feature = "datafusion")]
use datafusion::arrow::array::RecordBatch;

use bytes::{BufMut, BytesMut};
use pgwire::{
    api::results::{FieldFormat, FieldInfo},
    error::PgWireResult,
    messages::data::DataRow,
    types::ToSqlText,
};
use postgres_types::{IsNull, ToSql};

use crate::encoder::{Encoder, encode_value};

/// lakehouse: rows are encoded into one large buffer and split off it, so a
/// result costs an allocation per `CHUNK` bytes instead of one or two per
/// row (pgwire's `DataRowEncoder` starts at 128 bytes and grows per row).
/// The field encoding is `DataRowEncoder::encode_field_with_type_and_format`'s.
const CHUNK: usize = 64 * 1024;

struct ChunkedRowEncoder {
    buf: BytesMut,
    fields: i16,
}

impl Encoder for ChunkedRowEncoder {
    type Item = DataRow;

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let start = self.buf.len();
        self.buf.put_i32(-1);
        let is_null = if pg_field.format() == FieldFormat::Text {
            value.to_sql_text(pg_field.datatype(), &mut self.buf, pg_field.format_options())?
        } else {
            value.to_sql(pg_field.datatype(), &mut self.buf)?
        };
        if let IsNull::No = is_null {
            let len = (self.buf.len() - start - 4) as i32;
            self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        self.fields += 1;
        Ok(())
    }

    fn take_row(&mut self) -> DataRow {
        let row = DataRow::new(self.buf.split(), self.fields);
        self.fields = 0;
        if self.buf.capacity() < CHUNK / 16 {
            self.buf.reserve(CHUNK);
        }
        row
    }
}

pub struct RowEncoder {
    rb: RecordBatch,
    curr_idx: usize,
    fields: Arc<Vec<FieldInfo>>,
    row_encoder: ChunkedRowEncoder,
}

impl RowEncoder {
    pub fn new(rb: RecordBatch, fields: Arc<Vec<FieldInfo>>) -> Self {
        assert_eq!(rb.num_columns(), fields.len());
        Self {
            rb,
            fields: fields.clone(),
            curr_idx: 0,
            row_encoder: ChunkedRowEncoder {
                buf: BytesMut::with_capacity(CHUNK),
                fields: 0,
            },
        }
    }

    pub fn next_row(&mut self) -> Option<PgWireResult<DataRow>> {
        if self.curr_idx == self.rb.num_rows() {
            return None;
        }

        let arrow_schema = self.rb.schema_ref();
        for col in 0..self.rb.num_columns() {
            let array = self.rb.column(col);
            let arrow_field = arrow_schema.field(col);
            let pg_field = &self.fields[col];

            if let Err(e) = encode_value(
                &mut self.row_encoder,
                array,
                self.curr_idx,
                arrow_field,
                pg_field,
            ) {
                return Some(Err(e));
            };
        }
        self.curr_idx += 1;
        Some(Ok(Encoder::take_row(&mut self.row_encoder)))
    }
}
