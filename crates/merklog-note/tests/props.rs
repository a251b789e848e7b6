//! Properties against the format's own rules: what is written parses back
//! to the same thing and verifies; arbitrary input never panics.

use merklog_merkle::Hash;
use merklog_note::{Checkpoint, Ed25519NoteSigner, Note, NoteVerifier};
use proptest::prelude::*;

/// Note texts: lines of printable characters (some non-ASCII), possibly
/// empty in the middle, ending in a newline.
fn note_text() -> impl Strategy<Value = String> {
    prop::collection::vec("[ -~é—]{0,40}", 1..6).prop_map(|lines| {
        let mut t = lines.join("\n");
        t.push('\n');
        t
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn signed_notes_round_trip_and_verify(
        text in note_text(),
        seeds in prop::collection::vec(any::<[u8; 32]>(), 1..4),
        names in prop::collection::vec("[a-z]{1,8}(\\.[a-z]{2,4})?(/[a-z0-9]{1,6})?", 4),
    ) {
        prop_assume!(text != "\n");
        let mut note = Note::new(text.clone()).unwrap();
        let signers: Vec<Ed25519NoteSigner> = seeds
            .iter()
            .zip(&names)
            .map(|(seed, name)| Ed25519NoteSigner::new(name, seed).unwrap())
            .collect();
        for s in &signers {
            note.sign(s);
        }
        let written = note.to_string();
        let parsed = Note::parse(written.as_bytes()).unwrap();
        prop_assert_eq!(parsed.text(), text.as_str());
        prop_assert_eq!(&parsed, &note);
        let keys: Vec<_> = signers.iter().map(|s| s.verifier_key()).collect();
        let mut distinct: Vec<&dyn NoteVerifier> = Vec::new();
        for k in &keys {
            if !distinct.iter().any(|d| d.name() == k.name() && d.key_id() == k.key_id()) {
                distinct.push(k);
            }
        }
        let verified = parsed.verify(&distinct).unwrap();
        prop_assert!(verified.iter().all(|v| *v));
    }

    #[test]
    fn checkpoints_round_trip(
        origin in "[a-z0-9./_-]{1,30}",
        tree_size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[ -~]{1,20}", 0..3),
    ) {
        let cp = Checkpoint { origin, tree_size, root_hash: Hash(root), extensions };
        let text = cp.to_text().unwrap();
        prop_assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
        // And as a note's text.
        prop_assert!(Note::new(text).is_ok());
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Note::parse(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = Checkpoint::parse(s);
            let _ = merklog_note::VerifierKey::parse(s);
        }
    }
}
