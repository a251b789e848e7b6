//! Progress bars for long client commands (`append`, `export`; `audit` and
//! `verify-store` can take them up likewise), drawn with `indicatif` on
//! stderr.
//!
//! A bar is shown only to a person: when stderr is a terminal and the
//! output is not JSON. A pipe, a log file or a script sees nothing of it,
//! and stdout, which carries the command's result, never does.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether a command with `--json` set to `json` shows progress when
/// stderr is (`stderr_is_terminal`) or is not a terminal.
pub fn shown(json: bool, stderr_is_terminal: bool) -> bool {
    !json && stderr_is_terminal
}

/// Whether this process shows progress: stderr is a terminal and `json` is
/// false.
pub fn wanted(json: bool) -> bool {
    shown(json, std::io::stderr().is_terminal())
}

/// Returns a bar counting `total` `unit` on stderr, labelled `label`, or a
/// hidden one (that draws nothing) when [`wanted`] says no.
pub fn bar(json: bool, label: &'static str, total: u64, unit: &'static str) -> ProgressBar {
    if !wanted(json) {
        return ProgressBar::hidden();
    }
    let template =
        format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{percent}}%, {{eta}} left)");
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label);
    bar
}

/// Returns a spinner on stderr for work of unknown length, saying `label`
/// and then what [`ProgressBar::set_message`] sets, or a hidden one when
/// [`wanted`] says no.
pub fn spinner(json: bool, label: &'static str) -> ProgressBar {
    if !wanted(json) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_prefix(label);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_shown_only_on_a_terminal_without_json() {
        assert!(shown(false, true));
        assert!(!shown(true, true));
        assert!(!shown(false, false));
        assert!(!shown(true, false));
    }

    #[test]
    fn a_hidden_bar_draws_nothing() {
        // With `--json` no bar is drawn, whatever stderr is.
        assert!(bar(true, "appending", 10, "entries").is_hidden());
        assert!(spinner(true, "exporting").is_hidden());
    }
}
