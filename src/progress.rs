//! Progress bars for long work (training epochs, profile writing, embedding): shown on
//! stderr when it is a terminal, or when asked for; hidden otherwise so logs stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `total` steps with an indicatif `template`; `show = None` means "when stderr
/// is a terminal".
pub fn bar(show: Option<bool>, total: u64, template: &str) -> ProgressBar {
    let show = show.unwrap_or_else(|| std::io::stderr().is_terminal());
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
