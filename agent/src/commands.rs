//! The commands that read or change the journal, each delegating to the module that owns the
//! work. This file only turns arguments into calls and results into output.

use std::process::ExitCode;

use crate::cli::{
    ApproveArgs, Ctx, Format, ImportArgs, IntegrationCommand, MapArgs, ReportArgs, SyncArgs,
};

pub fn sync(ctx: &Ctx, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    ctx.formats("sync", &[Format::Table, Format::Json])?;
    let journal = ctx.journal()?;
    if let Some(name) = &args.integration {
        let psa_name = ctx.config.psa.as_ref().map(|p| p.plugin.as_str());
        if Some(name.as_str()) != psa_name {
            if ctx.config.vendor(name).is_some() {
                // Pushed and imported vendors have nothing to pull: reconcile their latest data.
                let refreshed = crate::reconcile::refresh(&journal, &ctx.config)?;
                println!(
                    "{name}: vendor data is pushed or imported; {} cards reconciled",
                    refreshed.cards
                );
                return Ok(ExitCode::SUCCESS);
            }
            return Err(crate::cli::UsageError(format!(
                "--integration {name}: not the PSA plugin ({}) nor a configured vendor",
                psa_name.unwrap_or("none configured")
            ))
            .into());
        }
    }
    let session = crate::psa::open(&ctx.config)?;
    // One thread drives every listing: they wait on the PSA far more than on the CPU, and
    // worker threads passing each request's wake-ups between them cost more than they gained.
    // The journal commits on a thread of its own; large pages are parsed on blocking threads.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let options = crate::sync::engine::SyncOptions {
        full: args.full,
        confirm_retire: args.confirm_retire,
        trigger: "command".into(),
        apply: true,
    };
    let progress = crate::sync::progress::Progress::new(args.quiet || ctx.format == Format::Json);
    let report = runtime.block_on(async {
        if !crate::sync::engine::has_synced(&journal)? {
            crate::sync::engine::probe(&session).await.map_err(|e| {
                anyhow::Error::new(crate::cli::UsageError(format!(
                    "the first request to the PSA failed, so nothing was synced: {e}. Check \
                     [psa.settings] and that the PSA can be reached from this server"
                )))
            })?;
        }
        crate::sync::engine::sync(&journal, &ctx.config, &session, &options, &progress).await
    });
    progress.finish();
    let report = report?;
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} sync: {} streams complete, {} incomplete; {} records read ({} changed, {} retired) \
             in {} requests",
            if report.full { "full" } else { "quick" },
            report.streams_complete,
            report.streams_incomplete,
            report.records,
            report.changed,
            report.retired,
            report.requests
        );
        for error in &report.errors {
            println!("  incomplete: {error}");
        }
        println!(
            "{} cards; {} changes queued, {} applied, {} failed, {} conflicts, {} awaiting a check",
            report.cards,
            report.queued,
            report.applied,
            report.failed,
            report.conflicts,
            report.pending
        );
        println!("next: `tally report` shows the cards");
    }
    Ok(if report.streams_incomplete == 0 && report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    ctx.formats("status", &[Format::Table, Format::Json])?;
    let journal = ctx.existing_journal()?;
    let doc = crate::status::document(&journal, &ctx.config)?;
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", crate::status::render(&doc));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report(ctx: &Ctx, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    ctx.formats("report", &[Format::Table, Format::Json, Format::Csv])?;
    let journal = ctx.existing_journal()?;
    let mut out = std::io::stdout().lock();
    if args.history {
        crate::report::print_history(&journal, ctx.format, &mut out)?;
    } else {
        let cards = crate::report::select(&journal, args)?;
        let in_force = crate::mapping::resolve::file_state(&journal)?;
        if let Some(warning) =
            crate::mapping::resolve::edit_pending_warning(&ctx.config.mapping, in_force.as_ref())
        {
            tracing::warn!("{warning}");
        }
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

pub fn integration(ctx: &Ctx, cmd: &IntegrationCommand) -> anyhow::Result<ExitCode> {
    crate::intake::integrations::run(ctx, cmd)
}

pub fn import(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    crate::intake::csv_import::run(ctx, args)
}

pub fn plugins(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    crate::plugin::listing::command(ctx)
}
