//! `ft`: fine-tune large language models — data, training, export, chat.

mod bench_cmd;
mod bench_serve;
mod bench_train;
mod convert_cmd;
mod convert_hf;
mod data_cache;
mod data_cmd;
mod eval_cmd;
mod gguf_side_files;
mod merge_cmd;
mod op_profile;
mod plot_cmd;
mod serve;
mod templates_cmd;
mod train_cmd;
mod train_progress;

use clap::{Parser, Subcommand};
use ft_cli::{backend, chat_cmd, model_load, reply};

/// mimalloc keeps freed pages for reuse: training allocates and frees many activation-sized
/// buffers per step, which the system allocator returns to the OS and faults in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in mimalloc 3's `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Training frees and allocates the same activation-sized buffers every step. By default
/// mimalloc hands freed pages back to the OS after a delay, and the next step faults them in
/// again, zeroed by the kernel. Keeping them (never purging) takes a quarter of the system time
/// out of a CPU training run without raising its peak RSS, which every step reaches anyway.
/// A `MIMALLOC_PURGE_DELAY` set in the environment wins.
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads it when it next considers purging.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Fine-tune large language models the way XTuner does, in Rust.
#[derive(Parser)]
#[command(name = "ft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and generate datasets.
    Data(data_cmd::DataArgs),
    /// Merge a LoRA adapter into its base model (or re-shard / re-type a model).
    Merge(merge_cmd::MergeArgs),
    /// Export a model to another format (`ft convert gguf MODEL OUT.gguf`).
    Convert(convert_cmd::ConvertArgs),
    /// List the chat templates.
    Templates(templates_cmd::TemplatesArgs),
    /// Chat with a model in the terminal (or answer one --prompt).
    Chat(chat_cmd::ChatArgs),
    /// Loss and perplexity of a model on a dataset.
    Eval(eval_cmd::EvalArgs),
    /// Fine-tune a model as a TOML config says: LoRA, QLoRA, or full fine-tuning without `[lora]`.
    Train(train_cmd::TrainArgs),
    /// Speed benchmarks.
    Bench(bench_cmd::BenchArgs),
    /// Draw one metric of one or several runs in one picture (from their metrics.jsonl).
    Plot(plot_cmd::PlotArgs),
    /// Serve a model and its adapters: an OpenAI-compatible API and a chat page.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The default log filter: ft's own info lines; burn-collective's and its transport's
/// per-connection chatter only when something goes wrong.
const QUIET_DEPENDENCIES: &str = "info,burn_collective=warn,burn_communication=warn";

fn run() -> anyhow::Result<()> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let cli = Cli::parse();
    let op_times = matches!(&cli.command, Command::Bench(args) if args.wants_op_times())
        .then(op_profile::OpTimes::default);
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| QUIET_DEPENDENCIES.into());
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let ops = op_times.clone().map(|times| {
        times.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            op_profile::OpTimes::wants(m.target())
        }))
    });
    tracing_subscriber::registry().with(log).with(ops).init();
    if matches!(cli.command, Command::Train(_) | Command::Bench(_)) {
        keep_freed_pages();
    }
    match cli.command {
        Command::Data(args) => data_cmd::run(args),
        Command::Merge(args) => merge_cmd::run(args),
        Command::Convert(args) => convert_cmd::run(args),
        Command::Templates(args) => templates_cmd::run(args),
        Command::Chat(args) => chat_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args, op_times),
        Command::Train(args) => train_cmd::run(args),
        Command::Plot(args) => plot_cmd::run(args),
        Command::Serve(args) => serve::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command says what it does in `--help` (a doc comment moved by a merge once left
    /// `ft data gen-assistant` blank and gave its text to `gen-shapes`).
    #[test]
    fn every_command_has_a_description() {
        fn check(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
                assert!(!about.trim().is_empty(), "`{name}` has no description in --help");
                check(sub, &name);
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        check(&cli, "ft");
    }
}
