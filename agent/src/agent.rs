//! The background agent (`tally run`).

use std::process::ExitCode;

use crate::cli::Ctx;

pub fn run(_ctx: &Ctx) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally run` is not available yet")
}
