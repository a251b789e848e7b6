//! Known answers from the specs and from Go's reference implementation,
//! then the refusals the specs require.
//!
//! Sources:
//! - C2SP: github.com/C2SP/C2SP at commit 5ba5ee8 (`signed-note.md`
//!   §Verifier keys, Example; `tlog-checkpoint.md` and
//!   `tlog-cosignature.md`, their example notes).
//! - Go: golang.org/x/mod `sumdb/note/note_test.go` at commit fe2ec04
//!   (TestSign: the private key `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK…`,
//!   its verifier key and the exact signed note; Ed25519 is deterministic).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::Verifier as _;
use merklog_note::{
    Checkpoint, EcdsaNoteSigner, Ed25519Cosigner, Ed25519NoteSigner, Note, NoteError, NoteVerifier,
    SignatureType, VerifierKey, MAX_SIGNATURES,
};

const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// The private key's material after its type byte 0x01.
const GO_SEED_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

const SOFA: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

fn go_signer() -> Ed25519NoteSigner {
    let bytes = STANDARD.decode(GO_SEED_B64).unwrap();
    assert_eq!(bytes[0], SignatureType::Ed25519 as u8);
    Ed25519NoteSigner::new("PeterNeumann", &bytes[1..].try_into().unwrap()).unwrap()
}

#[test]
fn the_c2sp_example_verifies_with_its_verifier_key() {
    let key = VerifierKey::parse(C2SP_VKEY).unwrap();
    assert_eq!(key.key_id(), 0x530d903a);
    assert_eq!(key.to_string(), C2SP_VKEY);
    let note = Note::parse(C2SP_NOTE.as_bytes()).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert_eq!(note.verify(&[&key]).unwrap(), [true]);
    assert_eq!(note.to_string(), C2SP_NOTE);
}

#[test]
fn signing_reproduces_the_go_reference_note_byte_for_byte() {
    let signer = go_signer();
    assert_eq!(signer.verifier_key().to_string(), GO_VKEY);
    let mut note = Note::new(GO_TEXT).unwrap();
    note.sign(&signer);
    assert_eq!(note.to_string(), format!("{GO_TEXT}\n{GO_SIG_LINE}"));
    // Signing again replaces the signature instead of adding one.
    note.sign(&signer);
    assert_eq!(note.signatures.len(), 1);
    let key = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(note.verify(&[&key]).unwrap(), [true]);
}

#[test]
fn unknown_signatures_are_ignored_and_known_ones_must_verify() {
    let go = VerifierKey::parse(GO_VKEY).unwrap();
    let c2sp = VerifierKey::parse(C2SP_VKEY).unwrap();
    let other = Ed25519NoteSigner::new("EnochRoot", &[7; 32]).unwrap();
    let mut note = Note::parse(format!("{GO_TEXT}\n{GO_SIG_LINE}").as_bytes()).unwrap();
    note.sign(&other);
    // Only Peter is known: Enoch's signature is ignored.
    assert_eq!(note.verify(&[&go]).unwrap(), [true]);
    // Both known, in any order.
    let enoch = other.verifier_key();
    assert_eq!(note.verify(&[&enoch, &go]).unwrap(), [true, true]);
    // A known key that did not sign is reported as such.
    assert_eq!(note.verify(&[&go, &c2sp]).unwrap(), [true, false]);
    // Nobody known.
    let e = note.verify(&[&c2sp]).unwrap_err();
    assert!(matches!(e, NoteError::NoKnownSignature { .. }), "{e}");
    assert!(e.to_string().contains("PeterNeumann+c74f20a3"), "{e}");
    // A name shared with a known key but another key ID is ignored, too.
    let impostor = Ed25519NoteSigner::new("PeterNeumann", &[9; 32]).unwrap();
    let mut with_impostor = note.clone();
    with_impostor.sign(&impostor);
    assert_eq!(with_impostor.verify(&[&go]).unwrap(), [true]);
    // Two verifiers with one name and ID are ambiguous.
    let e = note.verify(&[&go, &go.clone()]).unwrap_err();
    assert!(matches!(e, NoteError::AmbiguousKey { .. }), "{e}");
}

#[test]
fn a_known_key_whose_signature_fails_refuses_the_whole_note() {
    let go = VerifierKey::parse(GO_VKEY).unwrap();
    let mut note = Note::parse(format!("{GO_TEXT}\n{GO_SIG_LINE}").as_bytes()).unwrap();
    note.signatures[0].signature[10] ^= 1;
    let e = note.verify(&[&go]).unwrap_err();
    assert_eq!(
        e,
        NoteError::BadSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        }
    );
    // The text changed under a valid signature.
    let changed = format!("{GO_TEXT}!\n\n{GO_SIG_LINE}");
    let e = Note::parse(changed.as_bytes())
        .unwrap()
        .verify(&[&go])
        .unwrap_err();
    assert!(matches!(e, NoteError::BadSignature { .. }), "{e}");
}

#[test]
fn malformed_notes_are_refused_naming_the_rule() {
    let sig = GO_SIG_LINE;
    let cases: Vec<(String, &str)> = vec![
        (format!("{GO_TEXT}{sig}"), "no blank line"),
        (format!("{GO_TEXT}\n"), "no signature lines"),
        (
            format!("{GO_TEXT}\n{}", sig.trim_end()),
            "does not end in a newline",
        ),
        (format!("{GO_TEXT}\n- PeterNeumann AAAAAAA=\n"), "em dash"),
        (format!("{GO_TEXT}\n\u{2014} PeterNeumann\n"), "no space"),
        (format!("{GO_TEXT}\n\u{2014}  AAAAAAA=\n"), "bad key name"),
        (
            format!("{GO_TEXT}\n\u{2014} Peter+Neumann AAAAAAA=\n"),
            "bad key name",
        ),
        (
            format!("{GO_TEXT}\n\u{2014} PeterNeumann AAAAAA==\n"),
            "bytes of signature",
        ),
        (
            format!("{GO_TEXT}\n\u{2014} PeterNeumann !!!!\n"),
            "not standard base64",
        ),
        (format!("tab\there\n\n{sig}"), "control character U+0009"),
        (format!("\n{sig}"), "no blank line"),
        (
            format!("{GO_TEXT}\n{}", sig.repeat(MAX_SIGNATURES + 1)),
            "more than the 100",
        ),
    ];
    for (text, want) in cases {
        let e = Note::parse(text.as_bytes()).unwrap_err();
        assert!(
            matches!(e, NoteError::MalformedNote { .. }),
            "{text:?}: {e}"
        );
        assert!(
            e.to_string().contains(want),
            "{text:?}: {e} (want {want:?})"
        );
    }
    assert!(Note::parse(&[0xff, b'\n', b'\n']).is_err());
    // Exactly the limit is accepted.
    let at_limit = format!("{GO_TEXT}\n{}", sig.repeat(MAX_SIGNATURES));
    assert_eq!(
        Note::parse(at_limit.as_bytes()).unwrap().signatures.len(),
        100
    );
    // Blank lines inside the text: the last blank line separates.
    let inner = format!("a\n\nb\n\n{sig}");
    assert_eq!(Note::parse(inner.as_bytes()).unwrap().text(), "a\n\nb\n");
}

#[test]
fn bad_verifier_keys_are_refused() {
    let cases = [
        ("PeterNeumann+c74f20a3", "expected <name>"),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "is not the key's (c74f20a3)",
        ),
        (
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "8 hex digits",
        ),
        // From Go's tests: a wrong-length key and an unknown algorithm.
        // Go reads the first as base64 with non-zero trailing bits; this
        // crate refuses such non-canonical base64 outright.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not standard base64",
        ),
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
            "32 bytes",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "unknown signature type",
        ),
        (
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "bad key name",
        ),
    ];
    for (vkey, want) in cases {
        let e = VerifierKey::parse(vkey).unwrap_err();
        assert!(e.to_string().contains(want), "{vkey}: {e} (want {want:?})");
    }
}

#[test]
fn ecdsa_note_signatures_use_the_der_key_id_and_verify() {
    use p256::pkcs8::EncodePublicKey;
    use sha2::Digest;
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let der = key.verifying_key().to_public_key_der().unwrap();
    let digest = sha2::Sha256::digest(der.as_bytes());
    let signer = EcdsaNoteSigner::new("log.example/a", key).unwrap();
    let vkey = signer.verifier_key();
    assert_eq!(
        vkey.key_id(),
        u32::from_be_bytes(digest[..4].try_into().unwrap())
    );
    assert_eq!(vkey.signature_type(), SignatureType::EcdsaP256);
    // The string form round-trips and verifies.
    let parsed = VerifierKey::parse(&vkey.to_string()).unwrap();
    let mut note =
        Note::new("log.example/a\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    note.sign(&signer);
    let reparsed = Note::parse(note.to_string().as_bytes()).unwrap();
    assert_eq!(reparsed.verify(&[&parsed]).unwrap(), [true]);
    // The signature is ASN.1 DER ECDSA over SHA-256 of the text, as any
    // P-256 verifier checks it.
    let sig = p256::ecdsa::Signature::from_der(&reparsed.signatures[0].signature).unwrap();
    use p256::ecdsa::signature::Verifier;
    assert!(signer_key_of(&parsed)
        .verify(note.text().as_bytes(), &sig)
        .is_ok());
    // Another key under the same name and key ID fails.
    let mut forged = reparsed.clone();
    let other = EcdsaNoteSigner::new(
        "log.example/a",
        p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
    )
    .unwrap();
    forged.signatures[0].signature =
        merklog_note::keys::NoteSigner::sign(&other, note.text().as_bytes());
    assert!(matches!(
        forged.verify(&[&parsed]),
        Err(NoteError::BadSignature { .. })
    ));
}

/// The P-256 key inside an ECDSA verifier key, read back from its string.
fn signer_key_of(vkey: &VerifierKey) -> p256::ecdsa::VerifyingKey {
    use p256::pkcs8::DecodePublicKey;
    let s = vkey.to_string();
    let b64 = s.splitn(3, '+').nth(2).unwrap();
    let bytes = STANDARD.decode(b64).unwrap();
    p256::ecdsa::VerifyingKey::from_public_key_der(&bytes[1..]).unwrap()
}

#[test]
fn cosignatures_sign_the_cosignature_v1_message_with_a_timestamp() {
    let seed = [3u8; 32];
    let cosigner = Ed25519Cosigner::new("witness.example/w1", &seed, 1_679_315_147).unwrap();
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let mut note = Note::new(text).unwrap();
    note.sign(&cosigner);
    let sig = &note.signatures[0].signature;
    assert_eq!(sig.len(), 72);
    assert_eq!(&sig[..8], &1_679_315_147u64.to_be_bytes());
    // Independently: Ed25519 over the message laid out in
    // tlog-cosignature §Ed25519 signed message.
    let message = format!("cosignature/v1\ntime 1679315147\n{text}");
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let ed = ed25519_dalek::Signature::from_slice(&sig[8..]).unwrap();
    assert!(public.verify(message.as_bytes(), &ed).is_ok());
    // The key ID uses type 0x04.
    assert_eq!(
        cosigner.verifier_key().key_id(),
        merklog_note::key_id(
            "witness.example/w1",
            SignatureType::CosignatureEd25519,
            public.as_bytes()
        )
    );
    let vkey = VerifierKey::parse(&cosigner.verifier_key().to_string()).unwrap();
    let verifier = vkey.cosignature_verifier().unwrap();
    assert_eq!(note.verify(&[&verifier]).unwrap(), [true]);
    assert_eq!(
        verifier.timestamp(text.as_bytes(), sig),
        Some(1_679_315_147)
    );
    // The same Ed25519 key as a plain (0x01) note key does not verify a
    // cosignature: the key IDs differ, so the line is ignored.
    let plain = Ed25519NoteSigner::new("witness.example/w1", &seed)
        .unwrap()
        .verifier_key();
    assert_ne!(plain.key_id(), vkey.key_id());
    assert!(matches!(
        note.verify(&[&plain]),
        Err(NoteError::NoKnownSignature { .. })
    ));
    // A changed timestamp breaks it.
    let mut moved = note.clone();
    moved.signatures[0].signature[7] ^= 1;
    assert!(matches!(
        moved.verify(&[&verifier]),
        Err(NoteError::BadSignature { .. })
    ));
}

#[test]
fn the_spec_checkpoint_example_parses_with_its_cosignature_line() {
    let note = Note::parse(SOFA.as_bytes()).unwrap();
    assert_eq!(note.signatures.len(), 2);
    assert_eq!(note.signatures[1].name, "witness.example.com/w1");
    // timestamp (8 bytes) + Ed25519 signature (64): 72 bytes after the ID.
    assert_eq!(note.signatures[1].signature.len(), 72);
    let cp = Checkpoint::parse(note.text()).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.tree_size, 20_852_163);
    assert_eq!(
        STANDARD.encode(cp.root_hash.0),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_text().unwrap(), note.text());
}

#[test]
fn malformed_checkpoints_are_refused_naming_the_line() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let cases = [
        (format!("o\n5\n{root}"), "newline"),
        ("o\n5\n".to_owned(), "2 lines"),
        (format!("o\n05\n{root}\n"), "leading zeros"),
        (format!("o\n-5\n{root}\n"), "line 2"),
        (format!("o\n18446744073709551616\n{root}\n"), "over 2^64"),
        ("o\n5\nAAAA\n".to_owned(), "32 bytes"),
        (format!("\n5\n{root}\n"), "line 1 is empty"),
        (format!("o\n5\n{root}\n\nx\n"), "line 4 is empty"),
    ];
    for (text, want) in cases {
        let e = Checkpoint::parse(&text).unwrap_err();
        assert!(
            e.to_string().contains(want),
            "{text:?}: {e} (want {want:?})"
        );
    }
    // Size 0 is written "0" and accepted; extensions round-trip.
    let cp = Checkpoint::parse(&format!("o\n0\n{root}\next one\n")).unwrap();
    assert_eq!(cp.tree_size, 0);
    assert_eq!(cp.extensions, ["ext one"]);
    assert_eq!(cp.to_text().unwrap(), format!("o\n0\n{root}\next one\n"));
}
