/// Returns a UUIDv7 (RFC 9562 §5.7), lowercase and hyphenated.
///
/// Layout: `unix_ts_ms` (48 bits, the low 48 bits of `unix_ms`), `ver` = 7
/// (4 bits), `rand_a` (12 bits), `var` = 0b10 (2 bits), `rand_b` (62 bits).
/// The 74 random bits come from `random`: its first byte's low nibble,
/// its second byte, the low 6 bits of its third byte and its last 7 bytes;
/// the other 6 bits of `random` are unused. Ids made in later milliseconds
/// sort after earlier ones, as text and as bytes.
pub fn uuid_v7(unix_ms: u64, random: [u8; 10]) -> String {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (random[0] & 0x0f);
    b[7] = random[1];
    b[8] = 0x80 | (random[2] & 0x3f);
    b[9..].copy_from_slice(&random[3..]);
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_9562_appendix_a_6() {
        // RFC 9562 Appendix A.6: unix_ts_ms 0x017F22E279B0 (Tuesday,
        // February 22, 2022 2:22:22.00 PM GMT-05:00), rand_a 0xCC3,
        // rand_b 0x18C4DC0C0C07398F.
        let random = [0x0c, 0xc3, 0x18, 0xc4, 0xdc, 0x0c, 0x0c, 0x07, 0x39, 0x8f];
        assert_eq!(
            uuid_v7(0x017F_22E2_79B0, random),
            "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
        );
    }

    #[test]
    fn sets_version_and_variant_whatever_the_random_bytes() {
        for random in [[0u8; 10], [0xff; 10]] {
            let id = uuid_v7(1_796_305_500_000, random);
            let hex = id.replace('-', "");
            let bytes: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            assert_eq!(bytes[6] >> 4, 7, "{id}");
            assert_eq!(bytes[8] >> 6, 0b10, "{id}");
            assert_eq!(id.len(), 36);
            assert_eq!(id, id.to_lowercase());
        }
        assert_eq!(
            uuid_v7(0, [0xff; 10]),
            "00000000-0000-7fff-bfff-ffffffffffff"
        );
        assert_eq!(uuid_v7(0, [0; 10]), "00000000-0000-7000-8000-000000000000");
    }

    #[test]
    fn orders_by_millisecond() {
        let earlier = uuid_v7(1_796_305_500_000, [0xff; 10]);
        let later = uuid_v7(1_796_305_500_001, [0; 10]);
        assert!(earlier < later);
    }
}
