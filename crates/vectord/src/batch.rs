//! [`Batch`]: the items of one add in columnar form — ids, one flat buffer of
//! vector values, metadata — as every wire format (JSON, Arrow IPC) and the
//! write-ahead log decode into it, so no format pays for a `Vec` per vector or
//! a `serde_json::Value` per number.
//!
//! The JSON form `{"items": [{"id", "vector", "metadata"?}, …]}` is decoded by
//! serde visitors straight into the flat buffer ([`JsonAddBody`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::{Result, VectorError};
use crate::limits;
use crate::service::{IndexSpec, Item};

/// One item's metadata, as added.
pub(crate) type ItemMetadata = Option<Map<String, Value>>;

/// The items of one batch add. Item `i` is `(id(i), vector(i), metadata(i))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    ids: Vec<String>,
    values: Vec<f32>,
    /// `offsets[i]..offsets[i + 1]` are item `i`'s values; `len() + 1` entries.
    offsets: Vec<usize>,
    metadata: Vec<Option<Map<String, Value>>>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Room for `items` vectors of `dim` values.
    pub fn with_capacity(items: usize, dim: usize) -> Self {
        let mut offsets = Vec::with_capacity(items + 1);
        offsets.push(0);
        Self {
            ids: Vec::with_capacity(items),
            values: Vec::with_capacity(items.saturating_mul(dim)),
            offsets,
            metadata: Vec::with_capacity(items),
        }
    }

    pub fn push(&mut self, id: String, vector: &[f32], metadata: Option<Map<String, Value>>) {
        self.values.extend_from_slice(vector);
        self.end_item(id, metadata);
    }

    /// Closes an item whose values were appended to `values` directly.
    fn end_item(&mut self, id: String, metadata: Option<Map<String, Value>>) {
        self.ids.push(id);
        self.offsets.push(self.values.len());
        self.metadata.push(metadata);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    pub fn vector(&self, i: usize) -> &[f32] {
        &self.values[self.offsets[i]..self.offsets[i + 1]]
    }

    pub fn metadata(&self, i: usize) -> Option<&Map<String, Value>> {
        self.metadata[i].as_ref()
    }

    /// Every vector's values, one after the other.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The common dimension of every vector, if they share one (`None` for
    /// an empty batch too).
    pub fn uniform_dim(&self) -> Option<usize> {
        let d = self.offsets.get(1).copied()?;
        self.offsets
            .windows(2)
            .all(|w| w[1] - w[0] == d)
            .then_some(d)
    }

    /// A copy of items `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Batch {
        let (start, end) = (self.offsets[range.start], self.offsets[range.end]);
        Batch {
            ids: self.ids[range.clone()].to_vec(),
            values: self.values[start..end].to_vec(),
            offsets: self.offsets[range.start..=range.end]
                .iter()
                .map(|o| o - start)
                .collect(),
            metadata: self.metadata[range].to_vec(),
        }
    }

    pub fn from_items(items: Vec<Item>) -> Self {
        let dim = items.first().map_or(0, |i| i.vector.len());
        let mut b = Self::with_capacity(items.len(), dim);
        for it in items {
            b.push(it.id, &it.vector, it.metadata);
        }
        b
    }

    pub fn into_items(self) -> Vec<Item> {
        let Batch {
            ids,
            values,
            offsets,
            metadata,
        } = self;
        ids.into_iter()
            .zip(metadata)
            .enumerate()
            .map(|(i, (id, metadata))| Item {
                id,
                vector: values[offsets[i]..offsets[i + 1]].to_vec(),
                metadata,
            })
            .collect()
    }

    /// Splits into ids, values and metadata (valid only after [`Batch::validate`],
    /// when item `i`'s values are `values[i * dim..(i + 1) * dim]`).
    pub(crate) fn into_parts(self) -> (Vec<String>, Vec<f32>, Vec<ItemMetadata>) {
        (self.ids, self.values, self.metadata)
    }

    /// The whole batch checked against an index before anything is written:
    /// the first bad item is an [`VectorError::InvalidItem`] naming it.
    pub fn validate(&self, spec: &IndexSpec) -> Result<()> {
        self.check(spec, true)
    }

    /// Ids and vectors only, without the size bounds (for replaying log
    /// entries written before a bound existed).
    pub(crate) fn validate_vectors(&self, spec: &IndexSpec) -> Result<()> {
        self.check(spec, false)
    }

    fn check(&self, spec: &IndexSpec, bounds: bool) -> Result<()> {
        if bounds && self.len() > limits::MAX_BATCH {
            return Err(VectorError::BatchTooLarge {
                got: self.len(),
                limit: limits::MAX_BATCH,
            });
        }
        for i in 0..self.len() {
            let id = self.id(i);
            let bad = |reason: String| VectorError::InvalidItem {
                position: i,
                id: id.to_string(),
                reason,
            };
            if id.is_empty() {
                return Err(bad("the id is empty".to_string()));
            }
            if bounds && id.len() > limits::MAX_ID_LEN {
                return Err(bad(format!(
                    "the id is longer than {} bytes",
                    limits::MAX_ID_LEN
                )));
            }
            check_vector(spec, self.vector(i)).map_err(bad)?;
            if let Some(md) = self.metadata(i).filter(|_| bounds) {
                limits::check_metadata(md).map_err(bad)?;
            }
        }
        Ok(())
    }
}

/// Why a vector cannot go into (or search) an index with `spec`.
pub(crate) fn check_vector(spec: &IndexSpec, v: &[f32]) -> std::result::Result<(), String> {
    if v.len() != spec.dim {
        return Err(format!(
            "vector has dimension {}, the index expects {}",
            v.len(),
            spec.dim
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "vector[{i}] is {} (NaN and infinities are not allowed)",
            v[i]
        ));
    }
    if spec.metric == lakehouse_hnsw::Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err("vector has zero norm, which has no cosine direction".to_string());
    }
    Ok(())
}

/// The JSON add body, `{"items": [...]}`, decoded straight into a [`Batch`].
/// Unknown fields are refused, as before. Items past [`limits::MAX_BATCH`]
/// are counted, not kept, so an oversized batch costs no memory for them.
#[derive(Debug, Default)]
pub struct JsonAddBody {
    pub batch: Batch,
    /// How many items the body held (more than `batch.len()` when too many).
    pub items: usize,
}

impl<'de> Deserialize<'de> for JsonAddBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = JsonAddBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object {\"items\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<JsonAddBody, A::Error> {
                let mut body: Option<JsonAddBody> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "items" {
                        return Err(de::Error::unknown_field(&key, &["items"]));
                    }
                    if body.is_some() {
                        return Err(de::Error::duplicate_field("items"));
                    }
                    let mut b = JsonAddBody::default();
                    map.next_value_seed(ItemsSeed(&mut b))?;
                    body = Some(b);
                }
                body.ok_or_else(|| de::Error::missing_field("items"))
            }
        }
        d.deserialize_map(BodyVisitor)
    }
}

struct ItemsSeed<'a>(&'a mut JsonAddBody);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        loop {
            if self.0.items >= limits::MAX_BATCH {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
            } else if seq
                .next_element_seed(ItemSeed(&mut self.0.batch))?
                .is_none()
            {
                return Ok(());
            }
            self.0.items += 1;
        }
    }
}

struct ItemSeed<'a>(&'a mut Batch);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item {\"id\", \"vector\", \"metadata\"?}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Id,
            Vector,
            Metadata,
        }
        let batch = self.0;
        let (mut id, mut vector, mut metadata) = (None, false, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Id if id.is_some() => return Err(de::Error::duplicate_field("id")),
                Field::Id => id = Some(map.next_value::<String>()?),
                Field::Vector if vector => return Err(de::Error::duplicate_field("vector")),
                Field::Vector => {
                    map.next_value_seed(ValuesSeed(&mut batch.values))?;
                    vector = true;
                }
                Field::Metadata if metadata.is_some() => {
                    return Err(de::Error::duplicate_field("metadata"));
                }
                Field::Metadata => {
                    metadata = Some(map.next_value::<Option<Map<String, Value>>>()?);
                }
            }
        }
        // A failed item fails the whole body, so no partial values linger.
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        if !vector {
            return Err(de::Error::missing_field("vector"));
        }
        batch.end_item(id, metadata.flatten());
        Ok(())
    }
}

/// Appends a JSON array of numbers to a buffer, one `f32` at a time.
struct ValuesSeed<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(x) = seq.next_element::<f32>()? {
            self.0.push(x);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(dim: usize) -> IndexSpec {
        IndexSpec {
            name: "t".into(),
            dim,
            metric: lakehouse_hnsw::Metric::Cosine,
            m: 16,
            ef_construction: 100,
            source: Default::default(),
        }
    }

    #[test]
    fn json_body_decodes_into_the_flat_buffer() {
        let body = json!({"items": [
            {"vector": [1, 2.5, -3e2], "id": "a"},
            {"id": "b", "vector": [0.5, 0, 1], "metadata": {"lang": "en"}},
            {"id": "c", "vector": [1, 1, 1], "metadata": null},
        ]});
        let b: JsonAddBody = serde_json::from_value(body).unwrap();
        assert_eq!(b.items, 3);
        let b = b.batch;
        assert_eq!(b.len(), 3);
        assert_eq!(
            b.values(),
            &[1.0, 2.5, -300.0, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
        assert_eq!((b.id(0), b.vector(1)), ("a", &[0.5, 0.0, 1.0][..]));
        assert_eq!(b.metadata(1).unwrap()["lang"], "en");
        assert!(b.metadata(2).is_none());
        assert_eq!(b.uniform_dim(), Some(3));
        b.validate(&spec(3)).unwrap();
    }

    #[test]
    fn json_body_keeps_the_item_semantics() {
        for (body, want) in [
            (json!({"items": [{"id": "a"}]}), "missing field `vector`"),
            (json!({"items": [{"vector": [1]}]}), "missing field `id`"),
            (
                json!({"items": [{"id": "a", "vector": [1], "x": 1}]}),
                "unknown field `x`",
            ),
            (json!({"items": [], "more": 1}), "unknown field `more`"),
            (json!({}), "missing field `items`"),
            (
                json!({"items": [{"id": "a", "vector": ["1"]}]}),
                "invalid type",
            ),
            (json!({"items": [{"id": 1, "vector": [1]}]}), "invalid type"),
        ] {
            let e = serde_json::from_value::<JsonAddBody>(body).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        let e = serde_json::from_str::<JsonAddBody>(
            r#"{"items": [{"id": "a", "id": "b", "vector": [1]}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate field `id`"), "{e}");
    }

    #[test]
    fn validation_names_the_first_bad_item() {
        let mut b = Batch::new();
        b.push("a".into(), &[1.0, 0.0], None);
        b.push("b".into(), &[1.0], None);
        b.push("".into(), &[1.0, 0.0], None);
        let e = b.validate(&spec(2)).unwrap_err();
        assert!(
            matches!(e, VectorError::InvalidItem { position: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("dimension 1"), "{e}");
        assert_eq!(b.uniform_dim(), None);
        let items = b.clone().into_items();
        assert_eq!(Batch::from_items(items.clone()), b);
        assert_eq!(b.slice(1..3), Batch::from_items(items[1..3].to_vec()));
        assert_eq!(b.slice(0..0), Batch::new());
    }

    #[test]
    fn too_many_items_are_counted_not_kept() {
        let n = limits::MAX_BATCH + 5;
        let mut s = String::from("{\"items\":[");
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"id\":\"x\",\"vector\":[1]}");
        }
        s.push_str("]}");
        let b: JsonAddBody = serde_json::from_str(&s).unwrap();
        assert_eq!((b.items, b.batch.len()), (n, limits::MAX_BATCH));
    }
}
