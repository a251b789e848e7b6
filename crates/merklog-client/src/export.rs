//! Exporting a time window from the log: every entry integrated in
//! `[since, until)`, with the bundle that proves the list complete
//! ([`crate::window`]).

use merklog_merkle::CompactRange;

use crate::check::VerifiedHead;
use crate::client::{Client, HeadsFrom};
use crate::window::{verify_bundle, BundleEntry, ExportBundle, VerifiedWindow, BUNDLE_FORMAT};
use crate::{ClientError, Result};

/// Fetches the window `[since_ms, until_ms)` and its proof, and verifies the
/// bundle before returning it (so a log that serves something the bundle
/// cannot prove is caught here, not by the bundle's reader).
///
/// The start head is the latest dated before `since_ms` (or the empty
/// tree's); the end head is the first dated at or after `until_ms`, or the
/// latest when the log signed none yet (the window is then open: see
/// [`VerifiedWindow::closed`]). The end head is checked against the trusted
/// head (the state file's) by a consistency proof, and trusted if larger.
///
/// # Errors
/// [`ClientError::Input`] for an empty window; [`ClientError::Bundle`] when
/// the log signed no head before `since_ms` and its first head is not the
/// empty tree's; the errors of [`verify_bundle`] for what the log served;
/// the client's errors for heads, proofs and transport.
pub async fn export_window(
    client: &mut Client,
    since_ms: u64,
    until_ms: u64,
) -> Result<(ExportBundle, VerifiedWindow)> {
    if until_ms <= since_ms {
        return Err(ClientError::Input {
            what: "window".into(),
            reason: format!("--until ({until_ms} ms) must be after --since ({since_ms} ms)"),
        });
    }
    // The latest head first: the export is linked to what the client trusts.
    client.latest_head().await?;
    let page = u32::try_from(client.page_size().await?).unwrap_or(u32::MAX);
    let mut heads: Vec<VerifiedHead> = client
        .tree_heads_page(HeadsFrom::LatestBefore(since_ms), page)
        .await?;
    let Some(start) = heads.first().cloned() else {
        return Err(ClientError::Bundle {
            reason: "the log lists no signed head".into(),
        });
    };
    if start.timestamp_ms() >= since_ms && start.tree_size() > 0 {
        return Err(ClientError::Bundle {
            reason: format!(
                "the log signed no head before the window's start, and its first head has size {}: the entries before it cannot be placed in time",
                start.tree_size()
            ),
        });
    }
    // Forward to the first head dated at or after `until_ms`.
    let mut end_at = heads.iter().position(|h| h.timestamp_ms() >= until_ms);
    while end_at.is_none() {
        let last = heads.last().expect("at least the start head");
        let more = client
            .tree_heads_page(
                HeadsFrom::After {
                    tree_size: last.tree_size(),
                    timestamp_ms: last.timestamp_ms(),
                },
                page,
            )
            .await?;
        if more.is_empty() {
            break;
        }
        let before = heads.len();
        heads.extend(more);
        end_at = heads[before..]
            .iter()
            .position(|h| h.timestamp_ms() >= until_ms)
            .map(|i| before + i);
    }
    if let Some(i) = end_at {
        heads.truncate(i + 1);
    }
    let end = heads.last().expect("at least the start head").clone();
    // The end head is the tree every other head is recomputed into: link it
    // to the trusted head.
    client.check_against_trusted(&end, true).await?;
    client.set_trusted(&end, None)?;

    let left_border = if start.tree_size() == 0 {
        Vec::new()
    } else {
        let last = start.tree_size() - 1;
        let proven = client
            .inclusions_by_index(&[last], Some(start.tree_size()))
            .await?
            .pop()
            .expect("one proof per leaf asked")?;
        CompactRange::from_last_leaf_proof(
            start.tree_size(),
            &proven.proof.leaf_hash,
            &proven.proof.proof,
        )
        .map_err(|e| ClientError::Bundle {
            reason: format!("the inclusion proof of leaf {last} is malformed: {e}"),
        })?
        .hashes()
        .to_vec()
    };
    let entries = client.entries(start.tree_size(), end.tree_size()).await?;
    if (entries.len() as u64) < end.tree_size() - start.tree_size() {
        return Err(ClientError::EntryMissing {
            index: start.tree_size() + entries.len() as u64,
            what: "what the log served".into(),
        });
    }
    let bundle = ExportBundle {
        format: BUNDLE_FORMAT.into(),
        log_id: client.public_key().log_id(),
        since_ms,
        until_ms,
        left_border,
        heads: heads.iter().map(VerifiedHead::to_json).collect(),
        entries: entries
            .into_iter()
            .map(|e| {
                let inside = (since_ms..until_ms).contains(&e.integrated_ms);
                BundleEntry {
                    leaf_index: e.index,
                    leaf_hash: e.leaf_hash,
                    integrated_ms: e.integrated_ms,
                    data: inside.then_some(e.data),
                }
            })
            .collect(),
    };
    let window = verify_bundle(client.public_key(), &bundle)?;
    Ok((bundle, window))
}
