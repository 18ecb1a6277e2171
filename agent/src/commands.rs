//! The commands that read or change the journal, each delegating to the module that owns the
//! work. This file only turns arguments into calls and results into output.

use std::process::ExitCode;

use crate::cli::{ApproveArgs, Ctx, ImportArgs, IntegrationCommand, MapArgs, ReportArgs, SyncArgs};

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally {what}` is not available yet")
}

pub fn sync(_ctx: &Ctx, _args: &SyncArgs) -> anyhow::Result<ExitCode> {
    not_yet("sync")
}

pub fn status(_ctx: &Ctx) -> anyhow::Result<ExitCode> {
    not_yet("status")
}

pub fn report(_ctx: &Ctx, _args: &ReportArgs) -> anyhow::Result<ExitCode> {
    not_yet("report")
}

pub fn map(_ctx: &Ctx, _args: &MapArgs) -> anyhow::Result<ExitCode> {
    not_yet("map")
}

pub fn approve(_ctx: &Ctx, _args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    not_yet("approve")
}

pub fn integration(_ctx: &Ctx, _cmd: &IntegrationCommand) -> anyhow::Result<ExitCode> {
    not_yet("integration")
}

pub fn import(_ctx: &Ctx, _args: &ImportArgs) -> anyhow::Result<ExitCode> {
    not_yet("import")
}

pub fn plugins(_ctx: &Ctx) -> anyhow::Result<ExitCode> {
    not_yet("plugins")
}
