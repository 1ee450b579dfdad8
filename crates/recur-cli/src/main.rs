//! `recur`: the command-line tool. This file only dispatches; each subcommand lives in
//! `cmd/`. What it prints goes through `out`'s `print!` family, which a closed pipe does not
//! break (`recur train | head` ends quietly, exit 0, the checkpoint saved).

// first: its print!, println!, eprint! and eprintln! are the ones every module below uses
#[macro_use]
mod out;

mod cmd;
mod limits;
mod plot;
mod summary;
mod train;

use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse: the engine allocates tens of megabytes of slabs per
/// call, which glibc returns to the kernel on free and then faults in again page by page.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Train and run gated recurrent networks (LSTM, GRU, RNN) on the CPU.
#[derive(Parser, Debug)]
#[command(name = "recur", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The most bytes recur reads from one input file or stream (K, M, G, T suffixes)
    /// [default: 4G]
    #[arg(long, global = true, value_parser = limits::parse_size)]
    max_file_size: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on a text, labelled sequences or a generated task. Without arguments: an
    /// LSTM learns the adding problem (T = 100)
    Train(Box<cmd::train::TrainArgs>),
    /// A trained model's loss and perplexity (or accuracy) on a file
    Eval(cmd::eval::EvalArgs),
    /// Generate text from a trained language model
    Sample(cmd::sample::SampleArgs),
    /// Run a trained model (checkpoint, model file or ONNX) on new data: class labels and
    /// probabilities, regression values, or a forecast from a CSV history
    Predict(cmd::predict::PredictArgs),
    /// Record ‖∂L/∂h_t‖ against t over training (RNN, LSTM, GRU, peephole LSTM on the adding
    /// problem): DIR/gradflow.csv and a heat map with curves, DIR/gradflow.png
    Gradflow(cmd::gradflow::GradflowArgs),
    /// Train several cells on one generated task under one budget and seeds: success rates,
    /// losses, steps to solve and wall time, as a table, CSV, JSON and a plot
    Compare(cmd::compare::CompareArgs),
    /// Time one configuration (train, infer or stream): ms per iteration, tokens/s, GFLOP/s
    Bench(cmd::bench::BenchArgs),
    /// Run ONNX models (LSTM/GRU/RNN graphs) on recur's engine, or check ONNX test cases
    #[cfg(feature = "onnx")]
    #[command(subcommand)]
    Onnx(cmd::onnx::OnnxCommand),
    /// Convert models between PyTorch state_dicts, recur model files and ONNX (by extension)
    Convert(cmd::convert::ConvertArgs),
    /// Draw training and validation curves from `recur train --log` files (PNG or SVG)
    Plot(cmd::plot::PlotArgs),
    /// A model file's tensors by layer (shapes, parameters, bytes) and its configuration:
    /// checkpoint, model file, state_dict or ONNX
    Summary(cmd::summary::SummaryArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and the help a bare `recur` shows
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    if let Some(limit) = cli.max_file_size {
        recur::io::set_max_file_bytes(limit);
    }
    let result = match cli.command {
        Command::Train(args) => cmd::train::run(&args),
        Command::Eval(args) => cmd::eval::run(&args),
        Command::Sample(args) => cmd::sample::run(&args),
        Command::Predict(args) => cmd::predict::run(&args),
        Command::Gradflow(args) => cmd::gradflow::run(&args),
        Command::Compare(args) => cmd::compare::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        #[cfg(feature = "onnx")]
        Command::Onnx(cmd) => cmd::onnx::run(&cmd),
        Command::Convert(args) => cmd::convert::run(&args),
        Command::Plot(args) => cmd::plot::run(&args),
        Command::Summary(args) => cmd::summary::run(&args),
    };
    out::flush_stdout();
    match result {
        Ok(()) => match out::failure() {
            // standard output could not be written (a closed pipe is no failure: exit 0)
            Some(failure) => {
                eprintln!("error: {failure}");
                ExitCode::FAILURE
            }
            None => ExitCode::SUCCESS,
        },
        // `recur train --dry-run` printed its summary
        Err(e) if e.is::<train::DryRun>() => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message (error, possible values, tip) on one line, without its usage block.
fn one_line(rendered: &str) -> String {
    rendered
        .trim_start_matches("error: ")
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
