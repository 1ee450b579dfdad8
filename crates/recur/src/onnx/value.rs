//! The values an ONNX graph computes on: dense row-major tensors of `f32`, `f64`, `i64` or
//! `i32`, and their conversion from and to `TensorProto`.

use super::proto::{TensorProto, data_type};
use crate::error::{Error, Result, Shape};

/// Upper bound on the elements of one tensor (2^28: 1 GiB of `f32`), so that dims read from
/// an untrusted file, or computed by a graph (`Expand`, `ConstantOfShape`), cannot ask for a
/// runaway allocation.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Upper bound on a tensor's rank.
pub const MAX_RANK: usize = 32;

/// The elements of a [`Value`].
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// ONNX `FLOAT`
    F32(Vec<f32>),
    /// ONNX `DOUBLE` (read from tensor files; the graph runner computes in `f32`)
    F64(Vec<f64>),
    /// ONNX `INT64` (shapes, indices, token ids)
    I64(Vec<i64>),
    /// ONNX `INT32` (`sequence_lens`)
    I32(Vec<i32>),
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ONNX `TensorProto.DataType` value.
    pub fn onnx_type(&self) -> i32 {
        match self {
            Data::F32(_) => data_type::FLOAT,
            Data::F64(_) => data_type::DOUBLE,
            Data::I64(_) => data_type::INT64,
            Data::I32(_) => data_type::INT32,
        }
    }

    /// The ONNX name of the element type (`FLOAT`, `INT64`, …).
    pub fn type_name(&self) -> String {
        data_type::name(self.onnx_type())
    }
}

/// A dense row-major tensor of an ONNX graph: a shape and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    shape: Vec<usize>,
    data: Data,
}

/// Product of `shape`, checked against overflow and [`MAX_ELEMENTS`].
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

impl Value {
    /// Wraps `data` as a tensor of `shape`.
    ///
    /// # Errors
    /// [`Error::Length`] when the number of elements is not the product of `shape`, or the
    /// shape exceeds [`MAX_ELEMENTS`] / [`MAX_RANK`].
    pub fn new(data: Data, shape: &[usize]) -> Result<Self> {
        let ok = shape.len() <= MAX_RANK && checked_numel(shape) == Some(data.len());
        if !ok {
            return Err(Error::Length {
                what: "onnx tensor".into(),
                shape: Shape(shape.to_vec()),
                len: data.len(),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// An `f32` tensor.
    ///
    /// # Errors
    /// As [`Value::new`].
    pub fn f32(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        Self::new(Data::F32(data), shape)
    }

    /// An `i64` tensor.
    ///
    /// # Errors
    /// As [`Value::new`].
    pub fn i64(data: Vec<i64>, shape: &[usize]) -> Result<Self> {
        Self::new(Data::I64(data), shape)
    }

    /// An `i32` tensor.
    ///
    /// # Errors
    /// As [`Value::new`].
    pub fn i32(data: Vec<i32>, shape: &[usize]) -> Result<Self> {
        Self::new(Data::I32(data), shape)
    }

    /// Trusted constructor for values the runner builds (shape and length agree).
    pub(crate) fn from_parts(data: Data, shape: Vec<usize>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// The shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Gives the elements back.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// The elements if this is an `f32` tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The ONNX name of the element type.
    pub fn type_name(&self) -> String {
        self.data.type_name()
    }

    /// The elements as `i64` (for `i64` and `i32` tensors).
    pub(crate) fn to_i64s(&self) -> Option<Vec<i64>> {
        match &self.data {
            Data::I64(v) => Some(v.clone()),
            Data::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            _ => None,
        }
    }

    /// The same tensor with `f64` elements rounded to `f32` (other types unchanged).
    pub fn into_f32_if_f64(self) -> Self {
        match self.data {
            Data::F64(v) => Self {
                shape: self.shape,
                data: Data::F32(v.into_iter().map(|x| x as f32).collect()),
            },
            _ => self,
        }
    }

    /// Reads a `TensorProto`. `file` and the tensor's name go into error messages.
    ///
    /// # Errors
    /// [`Error::OnnxFormat`] for negative, oversized or overflowing dims, data whose length
    /// disagrees with the dims (in `raw_data` or the typed field), data in both, data kept
    /// outside the file (external data) or split into segments; [`Error::TensorDtype`] for an
    /// element type other than FLOAT, DOUBLE, INT64, INT32.
    pub fn from_proto(file: &str, t: &TensorProto) -> Result<Self> {
        let name = if t.name.is_empty() {
            "<unnamed>"
        } else {
            &t.name
        };
        let bad = |reason: String| Error::OnnxFormat {
            file: file.to_string(),
            reason: format!("tensor `{name}`: {reason}"),
        };
        if t.data_location != 0 || !t.external_data.is_empty() {
            return Err(bad(
                "its data is stored outside the file (external data), which recur does not read"
                    .into(),
            ));
        }
        if t.segment.is_some() {
            return Err(bad("segmented tensors are not supported".into()));
        }
        if t.dims.len() > MAX_RANK {
            return Err(bad(format!(
                "{} dims exceed the bound of {MAX_RANK}",
                t.dims.len()
            )));
        }
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            let d = usize::try_from(d).map_err(|_| bad(format!("negative dim {d}")))?;
            shape.push(d);
        }
        let n = checked_numel(&shape).ok_or_else(|| {
            bad(format!(
                "dims {:?} exceed the bound of {MAX_ELEMENTS} elements",
                t.dims
            ))
        })?;
        let raw = &t.raw_data;
        let typed_len =
            t.float_data.len() + t.int32_data.len() + t.int64_data.len() + t.double_data.len();
        if !raw.is_empty() && typed_len > 0 {
            return Err(bad("holds data in both raw_data and a typed field".into()));
        }
        let check_len = |got: usize, what: &str| -> Result<()> {
            if got != n {
                return Err(bad(format!(
                    "dims {:?} need {n} elements, {what} holds {got}",
                    t.dims
                )));
            }
            Ok(())
        };
        let from_raw = |width: usize| -> Result<()> {
            if !raw.len().is_multiple_of(width) {
                return Err(bad(format!(
                    "raw_data of {} bytes is not a whole number of {width}-byte elements",
                    raw.len()
                )));
            }
            check_len(raw.len() / width, "raw_data")
        };
        let data = match t.data_type {
            data_type::FLOAT => {
                if !raw.is_empty() || n == 0 {
                    from_raw(4)?;
                    Data::F32(
                        raw.chunks_exact(4)
                            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                            .collect(),
                    )
                } else {
                    check_len(t.float_data.len(), "float_data")?;
                    Data::F32(t.float_data.clone())
                }
            }
            data_type::DOUBLE => {
                if !raw.is_empty() || n == 0 {
                    from_raw(8)?;
                    Data::F64(
                        raw.chunks_exact(8)
                            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                            .collect(),
                    )
                } else {
                    check_len(t.double_data.len(), "double_data")?;
                    Data::F64(t.double_data.clone())
                }
            }
            data_type::INT64 => {
                if !raw.is_empty() || n == 0 {
                    from_raw(8)?;
                    Data::I64(
                        raw.chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                            .collect(),
                    )
                } else {
                    check_len(t.int64_data.len(), "int64_data")?;
                    Data::I64(t.int64_data.clone())
                }
            }
            data_type::INT32 => {
                if !raw.is_empty() || n == 0 {
                    from_raw(4)?;
                    Data::I32(
                        raw.chunks_exact(4)
                            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
                            .collect(),
                    )
                } else {
                    check_len(t.int32_data.len(), "int32_data")?;
                    Data::I32(t.int32_data.clone())
                }
            }
            other => {
                return Err(Error::TensorDtype {
                    file: file.to_string(),
                    name: name.to_string(),
                    dtype: data_type::name(other),
                    expected: "FLOAT, DOUBLE, INT64, INT32".into(),
                });
            }
        };
        Ok(Self { shape, data })
    }

    /// Writes the tensor as a `TensorProto` named `name`, its elements in `raw_data`
    /// (little-endian), as `onnx.numpy_helper.from_array` does.
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let raw_data = match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        TensorProto {
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: self.data.onnx_type(),
            name: name.to_string(),
            raw_data,
            ..Default::default()
        }
    }
}
