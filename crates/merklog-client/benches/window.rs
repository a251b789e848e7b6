//! How fast an export bundle verifies: builds a bundle of 1,000,000 entries
//! (64-byte entries, a signed head every 1,000 entries, the window covering
//! all of them), writes it as JSON, then times parsing and
//! [`verify_bundle`] and prints entries per second. A plain timing, not
//! criterion: one run of the whole verification is the figure of interest
//! (docs/BENCHMARKS.md, "Export bundles").
//!
//! `cargo bench -p merklog-client --bench window [-- ENTRIES PER_HEAD]`

use std::time::Instant;

use merklog_client::json::TreeHeadJson;
use merklog_client::window::{verify_bundle, BundleEntry, ExportBundle, BUNDLE_FORMAT};
use merklog_merkle::{empty_root, leaf_hash, CompactRange};
use merklog_sth::{LogSigner, TreeHead};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse::<u64>().expect("ENTRIES and PER_HEAD are numbers"));
    let total = args.next().unwrap_or(1_000_000);
    let per_head = args.next().unwrap_or(1_000).max(1);
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let log_id = signer.public_key().log_id();
    let base = 1_764_770_400_000u64;
    let mut range = CompactRange::new();
    let sign = |range: &CompactRange, ts: u64| {
        let root = if range.size() == 0 {
            empty_root()
        } else {
            range.root()
        };
        TreeHeadJson::new(
            &signer.sign(TreeHead {
                tree_size: range.size(),
                timestamp_ms: ts,
                root_hash: root,
            }),
            log_id,
        )
    };
    let started = Instant::now();
    let mut heads = vec![sign(&range, base)];
    let mut entries = Vec::with_capacity(total as usize);
    let mut ts = base;
    while range.size() < total {
        ts += 1;
        let n = per_head.min(total - range.size());
        for _ in 0..n {
            let mut data = format!("entry {:>12} ", range.size()).into_bytes();
            data.resize(64, b'.');
            let h = leaf_hash(&data);
            entries.push(BundleEntry {
                leaf_index: range.size(),
                leaf_hash: h,
                integrated_ms: ts,
                data: Some(data),
            });
            range.append(h, |_, _| {});
        }
        heads.push(sign(&range, ts));
    }
    heads.push(sign(&range, ts + 1));
    let bundle = ExportBundle {
        format: BUNDLE_FORMAT.into(),
        log_id,
        since_ms: base + 1,
        until_ms: ts + 1,
        left_border: Vec::new(),
        heads,
        entries,
    };
    let text = serde_json::to_string(&bundle).expect("serializes");
    drop(bundle);
    eprintln!(
        "built {total} entries, {} heads, {} MB of JSON in {:.1} s",
        total.div_ceil(per_head) + 2,
        text.len() >> 20,
        started.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    let parsed: ExportBundle = serde_json::from_str(&text).expect("parses");
    let t1 = Instant::now();
    let window = verify_bundle(signer.public_key(), &parsed).expect("verifies");
    let t2 = Instant::now();
    assert_eq!(window.in_window.len() as u64, total);
    let (parse, verify) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
    println!(
        "export bundle: {total} entries, a head per {per_head}: parse {parse:.2} s, verify {verify:.2} s; \
         {:.0} entries/s verified ({:.0} entries/s with parsing), {} threads for signatures",
        total as f64 / verify,
        total as f64 / (parse + verify),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}
