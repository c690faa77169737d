//! `ferry imports …` and `ferry exports …`: one family of jobs listed or
//! shown, as text or as the API's JSON views. What differs by family (its
//! view, its columns, its full text) is a [`Listed`].

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_actors::job::{store, Family, JobStatus};
use ferry_actors::kinds::{Job, Work};
use ferry_actors::pg;
use ferry_actors::settings::DatabaseSettings;
use serde::Serialize;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum ListCommand {
    /// The newest first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One, in full.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&s.to_uppercase()).ok_or_else(|| format!("unknown status `{s}`"))
}

/// A family of jobs as the CLI lists it.
pub trait Listed {
    const FAMILY: Family;
    /// What one is called in messages (`job`, `export`).
    const NOUN: &'static str;
    /// Its JSON (the API's view).
    type View: Serialize;

    fn view(job: &Job) -> Option<Self::View>;
    /// The header line of a list.
    fn header(out: &mut dyn Write) -> std::io::Result<()>;
    /// One line of a list.
    fn line(job: &Job, view: &Self::View, out: &mut dyn Write) -> std::io::Result<()>;
    /// One in full, as text.
    fn full(job: &Job, view: &Self::View, out: &mut dyn Write) -> std::io::Result<()>;
}

pub async fn command<L: Listed>(database: &DatabaseSettings, command: ListCommand) -> Result<()> {
    let mut out = std::io::stdout();
    match command {
        ListCommand::List {
            status,
            limit,
            json,
        } => list::<L>(database, status, limit, json, &mut out).await,
        ListCommand::Show { id, json } => match show::<L>(database, id, json, &mut out).await? {
            Some(_) => Ok(()),
            None => bail!("no {} {id}", L::NOUN),
        },
    }
}

pub async fn list<L: Listed>(
    database: &DatabaseSettings,
    status: Option<JobStatus>,
    limit: i64,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let client = pg::connect(database).await?;
    let jobs = store::list::<Work>(&client, Some(L::FAMILY), status, limit)
        .await
        .with_context(|| format!("listing {}s", L::NOUN))?;
    let viewed: Vec<(&Job, L::View)> = jobs
        .iter()
        .filter_map(|job| Some((job, L::view(job)?)))
        .collect();
    if json {
        let views: Vec<&L::View> = viewed.iter().map(|(_, v)| v).collect();
        serde_json::to_writer_pretty(&mut *out, &views)?;
        writeln!(out)?;
        return Ok(());
    }
    L::header(out)?;
    for (job, view) in &viewed {
        L::line(job, view, out)?;
    }
    Ok(())
}

/// Prints one; `Ok(None)` when the family has no such job.
pub async fn show<L: Listed>(
    database: &DatabaseSettings,
    id: Uuid,
    json: bool,
    out: &mut impl Write,
) -> Result<Option<Job>> {
    let client = pg::connect(database).await?;
    let job = store::get_in_family::<Work>(&client, L::FAMILY, id)
        .await
        .with_context(|| format!("reading the {}", L::NOUN))?;
    let Some((job, view)) = job.and_then(|job| L::view(&job).map(|view| (job, view))) else {
        return Ok(None);
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &view)?;
        writeln!(out)?;
    } else {
        L::full(&job, &view, out)?;
    }
    Ok(Some(job))
}
