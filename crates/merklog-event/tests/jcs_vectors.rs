//! Known-answer tests for the RFC 8785 implementation in `merklog_event::jcs`.

use merklog_event::jcs::to_canonical;
use serde_json::Value;

/// The RFC authors' test data (see tests/vectors/jcs/README.md for the
/// source and commit): every input must canonicalize to its output file,
/// byte for byte.
#[test]
fn reference_test_data() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/jcs");
    let mut checked = 0;
    for name in [
        "arrays",
        "french",
        "structures",
        "unicode",
        "values",
        "weird",
    ] {
        let input = std::fs::read(format!("{dir}/{name}.input.json")).unwrap();
        let want = std::fs::read(format!("{dir}/{name}.output.json")).unwrap();
        let value: Value = serde_json::from_slice(&input).unwrap();
        let got = to_canonical(&value).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name}"
        );
        assert_eq!(got, want, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}

/// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text
/// (the finite rows; NaN and Infinity have no JSON form).
#[test]
fn rfc_8785_appendix_b_numbers() {
    let table = [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ];
    for (bits, want) in table {
        let f = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
        let v = Value::Number(serde_json::Number::from_f64(f).unwrap());
        let got = String::from_utf8(to_canonical(&v).unwrap()).unwrap();
        assert_eq!(got, want, "{bits}");
        // The canonical text reads back to the same double.
        assert_eq!(got.parse::<f64>().unwrap(), f, "{bits}");
    }
}

/// Further ECMAScript Number::toString samples at the layout boundaries
/// (n = 21, n = -6), from the RFC authors' es6testfile sample lines
/// (testdata/README.md at the commit above) and ECMA-262 §6.1.6.1.20.
#[test]
fn ecmascript_layout_boundaries() {
    let table = [
        ("4340000000000001", "9007199254740994"),
        ("4340000000000002", "9007199254740996"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ];
    for (bits, want) in table {
        let f = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
        let v = Value::Number(serde_json::Number::from_f64(f).unwrap());
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            want,
            "{bits}"
        );
    }
    for (text, want) in [
        ("123456789012345678901", "123456789012345680000"),
        ("1234567890123456789012", "1.2345678901234568e+21"),
        ("0.0000012345", "0.0000012345"),
        ("0.00000012345", "1.2345e-7"),
        ("-1.5e300", "-1.5e+300"),
        ("5.0E-1", "0.5"),
    ] {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            want,
            "{text}"
        );
    }
}
