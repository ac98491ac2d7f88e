//! Runtime element types.

/// The element type of a tensor. `F32` is the compute type; `I64` holds class indices
/// and integer data for saving and loading; `Bool` is the mask type: comparisons return
/// it, and the logical ops, `where_cond`, `masked_fill` and attention masks take it (and
/// `U8` or i64 masks, nonzero as true).
///
/// The other types (`F16`, `BF16`, `F64`, `I32`, `U8`) are storage types: they are read
/// from and written to files and converted with [`crate::Tensor::to_dtype`]; arithmetic
/// on them (and on `Bool`) returns [`crate::Error::StorageOnly`] ("convert first").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
    /// IEEE 754 half precision (16-bit float), storage only.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa), storage only.
    BF16,
    /// 64-bit float, storage only.
    F64,
    /// 32-bit signed integer, storage only.
    I32,
    /// 8-bit unsigned integer, storage only.
    U8,
    /// Boolean, one byte per element (0 or 1): masks.
    Bool,
}

impl DType {
    /// Every dtype, compute types first.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I32,
        DType::U8,
        DType::Bool,
    ];

    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I64 | DType::F64 => 8,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// The name PyTorch and safetensors use (`float32`, `int64`, `float16`, `bfloat16`,
    /// `float64`, `int32`, `uint8`, `bool`).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// The dtype named `s` as [`DType::as_str`] writes it (also `f32`, `f16`, `bf16`,
    /// `f64`, `i32`, `i64`, `u8`).
    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "float32" | "f32" | "float" => DType::F32,
            "int64" | "i64" | "long" => DType::I64,
            "float16" | "f16" | "half" => DType::F16,
            "bfloat16" | "bf16" => DType::BF16,
            "float64" | "f64" | "double" => DType::F64,
            "int32" | "i32" | "int" => DType::I32,
            "uint8" | "u8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }

    /// Whether arithmetic accepts this dtype (`F32`, `I64`); `Bool` is for masks, the
    /// others are storage only.
    pub fn is_compute(self) -> bool {
        matches!(self, DType::F32 | DType::I64)
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
