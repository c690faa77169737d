//! `ferry groups set|list|reset|rm`: seed 000's matching group configs and
//! what each has been sent, and
//! `ferry schedules`: when the users export fires next, and how each
//! group's last export went.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use ferry_actors::import::contract::Contract;
use ferry_actors::pg::groups::ContractUpdate;
use ferry_actors::pg::{self, groups};
use ferry_actors::users::schedule::{self, Ticks, USERS_SCHEDULE};
use ferry_actors::users::GroupType;
use uuid::Uuid;

use crate::config::Config;

#[derive(Clone, Copy, ValueEnum)]
pub enum GroupTypeArg {
    #[value(alias = "cost_based")]
    CostBased,
    #[value(alias = "non_cost_based")]
    NonCostBased,
}

impl From<GroupTypeArg> for GroupType {
    fn from(t: GroupTypeArg) -> Self {
        match t {
            GroupTypeArg::CostBased => Self::CostBased,
            GroupTypeArg::NonCostBased => Self::NonCostBased,
        }
    }
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Create or change a group's config.
    Set {
        /// The group as imports name it (`groupId`).
        group_key: String,
        #[arg(long)]
        domain: Uuid,
        /// COST_BASED (a CSV file and a message) or NON_COST_BASED (the
        /// reference ids in messages).
        #[arg(long = "type", value_enum, ignore_case = true)]
        group_type: GroupTypeArg,
        /// Keep the config, but leave the group out of the exports.
        #[arg(long)]
        disabled: bool,
        /// A JSON file with the group's data contract: what its imports'
        /// files must hold (see the README's "Data contracts"). Without
        /// it, the group keeps the contract it has.
        #[arg(long, value_name = "FILE", conflicts_with = "no_contract")]
        contract: Option<PathBuf>,
        /// Remove the group's contract.
        #[arg(long)]
        no_contract: bool,
    },
    /// List the groups, of every domain or one.
    List {
        #[arg(long)]
        domain: Option<Uuid>,
    },
    /// Make every user of the group unsent again (its watermark is
    /// cleared): the next tick sends them all, for a matching engine that
    /// lost its copy.
    Reset {
        group_key: String,
        #[arg(long)]
        domain: Uuid,
    },
    /// Remove a group's config.
    Rm {
        group_key: String,
        #[arg(long)]
        domain: Uuid,
    },
}

pub async fn command(config: &Config, command: GroupsCommand) -> Result<()> {
    super::migrate(config).await?;
    let client = pg::connect(&config.database).await?;
    match command {
        GroupsCommand::Set {
            group_key,
            domain,
            group_type,
            disabled,
            contract,
            no_contract,
        } => {
            let group_key = ferry_actors::job::group_key(&group_key).map_err(anyhow::Error::msg)?;
            let json = contract.as_deref().map(read_contract).transpose()?;
            let update = match (&json, no_contract) {
                (Some(json), _) => ContractUpdate::Set(json),
                (None, true) => ContractUpdate::Clear,
                (None, false) => ContractUpdate::Keep,
            };
            let group = groups::set(
                &client,
                domain,
                group_key,
                group_type.into(),
                !disabled,
                update,
            )
            .await?;
            println!("{}", serde_json::to_string(&group)?);
        }
        GroupsCommand::List { domain } => {
            println!(
                "{:<36}  {:<24}  {:<16}  {:<7}  {:<24}  {:>10}",
                "domain", "group", "type", "enabled", "sent up to", "unsent"
            );
            for g in groups::list(&client, domain).await? {
                let kind = match g.kind() {
                    Some(_) => g.group_type.clone(),
                    None => format!("{} (unknown)", g.group_type),
                };
                println!(
                    "{:<36}  {:<24}  {:<16}  {:<7}  {:<24}  {:>10}",
                    g.domain_id,
                    g.group_key,
                    kind,
                    g.enabled,
                    g.sent_at.as_deref().unwrap_or("never"),
                    g.unsent
                );
            }
        }
        GroupsCommand::Reset { group_key, domain } => {
            let Some(group) = groups::reset(&client, domain, &group_key).await? else {
                bail!("no group `{group_key}` in domain {domain}");
            };
            println!("{}", serde_json::to_string(&group)?);
        }
        GroupsCommand::Rm { group_key, domain } => {
            if !groups::remove(&client, domain, &group_key).await? {
                bail!("no group `{group_key}` in domain {domain}");
            }
        }
    }
    Ok(())
}

/// The most a contract file may hold.
const MAX_CONTRACT_BYTES: u64 = 1 << 20;

/// A contract file, read and checked: JSON that [`Contract::parse`] takes.
fn read_contract(path: &Path) -> Result<serde_json::Value> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the contract {shown}"))?
        .len();
    if size > MAX_CONTRACT_BYTES {
        bail!("the contract {shown} is {size} bytes, over {MAX_CONTRACT_BYTES}");
    }
    let text = std::fs::read(path).with_context(|| format!("cannot read the contract {shown}"))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("the contract {shown} is not JSON"))?;
    Contract::parse(&json).map_err(|reason| anyhow::anyhow!("the contract {shown}: {reason}"))?;
    Ok(json)
}

/// `ferry schedules`: the users export's next ticks, its last run, and the
/// last export of each group.
pub async fn schedules(config: &Config) -> Result<()> {
    let users = &config.exports.users;
    let ticks = Ticks::new(users).map_err(anyhow::Error::msg)?;
    super::migrate(config).await?;
    let client = pg::connect(&config.database).await?;
    println!(
        "users export: `{}` in {}{}",
        users.schedule,
        users.timezone,
        if users.enabled {
            ""
        } else {
            " (disabled: exports.users.enabled = false)"
        }
    );
    for at in ticks.upcoming(chrono::Utc::now(), 5) {
        println!("  next: {}", at.to_rfc3339());
    }
    match schedule::last_run(&client, USERS_SCHEDULE).await? {
        Some(run) => println!(
            "last run: {} (fired {}): {} started, {} still running from before, {} of unknown type",
            run.id, run.fire_at, run.started, run.overlapped, run.invalid
        ),
        None => println!("last run: none yet"),
    }
    for g in groups::list(&client, None).await? {
        if !g.consistent() {
            println!(
                "group {}/{}: its group_id {} is not its key's UUID ({}); its users are read by the stored group_id",
                g.domain_id,
                g.group_key,
                g.group_id,
                ferry_actors::job::group_uuid(&g.group_key)
            );
        }
    }
    println!(
        "{:<36}  {:<24}  {:<10}  {:>10}  finished",
        "domain", "group", "status", "users"
    );
    for g in schedule::last_exports(&client).await? {
        println!(
            "{:<36}  {:<24}  {:<10}  {:>10}  {}",
            g.domain_id,
            g.group_key,
            g.status,
            g.rows,
            g.finished_at.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
