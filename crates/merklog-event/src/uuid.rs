/// Returns a UUIDv7 (RFC 9562 §5.7), lowercase and hyphenated.
pub fn uuid_v7(unix_ms: u64, random: [u8; 10]) -> String {
    let _ = (unix_ms, random);
    unimplemented!()
}
