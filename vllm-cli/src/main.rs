//! The `vllm` command line. Subcommands grow with the engine: `info` (devices), `demo` (for now
//! one transformer block's element-wise kernels on the chosen device, checked against the CPU
//! reference; text generation comes with the engine).
#![forbid(unsafe_code)]

mod demo;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vllm", version, about = "vLLM-class inference in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the build's backends and the device a model would run on.
    Info,
    /// Run the demo on the best available device.
    Demo {
        /// Tokens in the demo batch.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Hidden size of the demo layer.
        #[arg(long, default_value_t = 4096)]
        hidden: usize,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            demo::info();
            Ok(())
        }
        Command::Demo { tokens, hidden } => demo::run(tokens, hidden),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
