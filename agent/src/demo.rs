//! `tally demo`.

use std::process::ExitCode;

use crate::cli::{DemoArgs, Format};

pub fn run(_args: &DemoArgs, _format: Format) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally demo` is not available yet")
}
