//! The `vllm` command line: `generate` (offline batch), `chat` (interactive), `bench
//! throughput` / `bench latency`, `info` (devices) and `demo` (the element-wise kernels of one
//! transformer block on the chosen device, checked against the CPU reference).
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod engine_args;
mod generate;

use clap::{Parser, Subcommand};
use engine_args::{ModelFlags, SamplingFlags};

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
    /// Check one transformer block's element-wise kernels on the best available device.
    Demo {
        /// Tokens in the demo batch.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Hidden size of the demo layer.
        #[arg(long, default_value_t = 4096)]
        hidden: usize,
    },
    /// Generate for a batch of prompts and print the texts and tokens/s.
    Generate {
        #[command(flatten)]
        model: ModelFlags,
        #[command(flatten)]
        sampling: SamplingFlags,
        /// A prompt (repeatable); without any, one prompt per line of stdin.
        #[arg(long)]
        prompt: Vec<String>,
        /// Wrap each prompt as a user message in the model's chat template.
        #[arg(long)]
        chat: bool,
    },
    /// Chat interactively (the model's chat template, streamed replies).
    Chat {
        #[command(flatten)]
        model: ModelFlags,
        #[command(flatten)]
        sampling: SamplingFlags,
        /// A system message.
        #[arg(long)]
        system: Option<String>,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Offline throughput: N sequences with random input and output lengths, ignore_eos.
    Throughput {
        #[command(flatten)]
        model: ModelFlags,
        #[arg(long, default_value_t = 256)]
        num_seqs: usize,
        #[arg(long, default_value_t = 100)]
        min_input_len: usize,
        #[arg(long, default_value_t = 1024)]
        max_input_len: usize,
        #[arg(long, default_value_t = 100)]
        min_output_len: usize,
        #[arg(long, default_value_t = 1024)]
        max_output_len: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Top-k of every request (0: off); the requests sample at temperature 0.6.
        #[arg(long, default_value_t = 0)]
        top_k: i32,
        /// Top-p of every request (1: off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
    },
    /// Latency of one batch: time to first token and time per output token.
    Latency {
        #[command(flatten)]
        model: ModelFlags,
        #[arg(long, default_value_t = 1)]
        batch_size: usize,
        #[arg(long, default_value_t = 128)]
        input_len: usize,
        #[arg(long, default_value_t = 128)]
        output_len: usize,
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Measured copy bandwidth (GB/s): prints the weight-bandwidth roofline beside the
        /// time per output token.
        #[arg(long)]
        roofline_gbps: Option<f64>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            demo::info();
            Ok::<(), String>(())
        }
        Command::Demo { tokens, hidden } => demo::run(tokens, hidden).map_err(|e| e.to_string()),
        Command::Generate {
            model,
            sampling,
            prompt,
            chat,
        } => generate::generate(&model, &sampling, prompt, chat),
        Command::Chat {
            model,
            sampling,
            system,
        } => generate::chat(&model, &sampling, system),
        Command::Bench(BenchCommand::Throughput {
            model,
            num_seqs,
            min_input_len,
            max_input_len,
            min_output_len,
            max_output_len,
            seed,
            top_k,
            top_p,
        }) => bench::throughput(
            &model,
            num_seqs,
            (min_input_len, max_input_len),
            (min_output_len, max_output_len),
            seed,
            (top_k, top_p),
        ),
        Command::Bench(BenchCommand::Latency {
            model,
            batch_size,
            input_len,
            output_len,
            iters,
            roofline_gbps,
        }) => bench::latency(
            &model,
            batch_size,
            input_len,
            output_len,
            iters,
            roofline_gbps,
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
