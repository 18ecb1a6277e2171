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

pub fn report(ctx: &Ctx, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal()?;
    let mut out = std::io::stdout().lock();
    if args.history {
        crate::report::print_history(&journal, ctx.format, &mut out)?;
    } else {
        let cards = crate::report::select(&journal, args)?;
        crate::report::print_cards(&cards, ctx.format, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn map(ctx: &Ctx, args: &MapArgs) -> anyhow::Result<ExitCode> {
    crate::mapping::view::run(ctx, args)
}

pub fn approve(ctx: &Ctx, args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    if args.cards.is_empty() && !args.all {
        return Err(crate::cli::UsageError(
            "name the cards to approve (ids from `tally report`), or pass --all".into(),
        )
        .into());
    }
    let journal = ctx.journal()?;
    let by = format!("approved by {}", whoami());
    let approved = crate::reconcile::approve(&journal, &args.cards, args.all, &by)?;
    crate::reconcile::refresh(&journal, &ctx.config)?;
    if ctx.format == crate::cli::Format::Json {
        let ids: Vec<&str> = approved.iter().map(|c| c.id.as_str()).collect();
        println!("{}", serde_json::json!({ "approved": ids }));
    } else if approved.is_empty() {
        println!("nothing to approve: no card is held");
    } else {
        for card in &approved {
            println!(
                "approved {}: {} / {} -> {}",
                card.id,
                card.company_name,
                card.product_name,
                card.target.map(|t| t.normalize().to_string()).unwrap_or_default()
            );
        }
        println!("the next sync writes approved changes to the PSA (or run `tally sync` now)");
    }
    Ok(ExitCode::SUCCESS)
}

fn whoami() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
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
