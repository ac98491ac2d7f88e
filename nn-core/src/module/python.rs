//! Values spelled as Python's `repr()` spells them, for `extra_repr` texts that match
//! PyTorch's printed trees: `True`/`False`, floats (`0.1`, `1e-05`, `0.0`), tuples
//! (`(3, 3)`, `(64,)`). Custom layers can use them to print as their PyTorch twin does.

/// `True` / `False`.
pub fn python_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Python's `repr(float)`: the shortest digits that read back as `v`, in positional form
/// when the decimal exponent is in `-4..16` (`0.0001`, `1e+16` beyond), with `.0` on
/// whole numbers (`1.0`, `-0.0`), at least two exponent digits (`1e-05`, `1.5e+300`),
/// and `inf`, `-inf`, `nan`.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    // Rust's `{:e}` gives the shortest round-trip digits too: `1.2345e-5`, `0e0`
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let (int, frac) = if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() > point {
                (digits[..point].to_string(), digits[point..].to_string())
            } else {
                (format!("{digits:0<point$}"), "0".to_string())
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            ("0".to_string(), format!("{zeros}{digits}"))
        };
        format!("{sign}{int}.{frac}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// [`python_float`] of the shortest decimal that reads back as the `f32` `v` (`0.01`
/// for `0.01f32`, which widened to f64 would print `0.009999999776482582`): what
/// PyTorch prints for a Python float argument that we store as `f32`.
pub fn python_float_f32(v: f32) -> String {
    if !v.is_finite() {
        return python_float(f64::from(v));
    }
    python_float(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
}

/// A shape or per-dim option as a Python tuple: `(3, 3)`, `(64,)`, `()`.
pub fn python_tuple(v: &[usize]) -> String {
    match v {
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = v.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        // each right side is repr(float(x)) in CPython 3.11
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.0, "-2.0"),
            (0.1, "0.1"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (1e-6, "1e-06"),
            (2.5e-7, "2.5e-07"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001234, "1.234e-05"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (-1e16, "-1e+16"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456789012345.6, "123456789012345.6"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(v, want) in cases {
            assert_eq!(python_float(v), want, "{v:e}");
        }
    }

    #[test]
    fn f32_values_print_their_shortest_decimal() {
        assert_eq!(python_float_f32(0.01), "0.01");
        assert_eq!(python_float_f32(1e-5), "1e-05");
        assert_eq!(python_float_f32(0.1), "0.1");
        assert_eq!(python_float_f32(0.0), "0.0");
        assert_eq!(python_float_f32(f32::NAN), "nan");
        assert_eq!(python_float_f32(f32::NEG_INFINITY), "-inf");
    }

    #[test]
    fn bools_and_tuples_print_as_python() {
        assert_eq!(python_bool(true), "True");
        assert_eq!(python_bool(false), "False");
        assert_eq!(python_tuple(&[64]), "(64,)");
        assert_eq!(python_tuple(&[3, 3]), "(3, 3)");
        assert_eq!(python_tuple(&[]), "()");
    }
}
