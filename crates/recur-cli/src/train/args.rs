//! The settings of `recur train`: one struct that is both the command line (clap) and the
//! TOML config file (serde), so that a key of the file is a flag's name without its `--`.
//!
//! Every field is optional: a flag given on the command line wins over the config file, the
//! file over the default of the task (see [`TrainArgs::resolve`]). The resolved settings are
//! what a checkpoint stores in its metadata.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// What `recur train` trains on: one data source, its model, optimizer and schedule.
///
/// With no data flag it trains the built-in adding-problem demonstration. Every flag may
/// also be given in the `--config` file as `flag-name = value`.
#[derive(Args, Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainArgs {
    // ---- data ----
    /// Built-in generated task: adding, multiplication, temporal-order(-3), reber (Hochreiter
    /// & Schmidhuber 1997), copy (memory), timing (Gers et al. 2002) or sines (next-value
    /// prediction of a noisy sum of sines) [default: adding when no data file is given]
    #[arg(long, value_enum, help_heading = "Data")]
    pub task: Option<Task>,
    /// Length T of a generated task (adding, multiplication, temporal order: sequences of T
    /// to T + T/10 steps; copy: the delay between the ten symbols and their recall; timing:
    /// spikes T or T − 1 apart; not for reber) [default: 100, copy 10, timing 50]
    #[arg(long, help_heading = "Data")]
    pub seq_len: Option<usize>,
    /// One text file, cut into train/valid/test by --split (language model)
    #[arg(long, help_heading = "Data", conflicts_with_all = ["train", "sequences"])]
    pub text: Option<PathBuf>,
    /// Fractions of --text (or --sequences, or each series of --csv, in time order) for
    /// train,valid,test [default: 0.9,0.05,0.05; --csv 0.8,0.1,0.1]
    #[arg(long, help_heading = "Data")]
    pub split: Option<String>,
    /// Training text (language model); with --valid and --test
    #[arg(long, help_heading = "Data", requires_all = ["valid", "test"], conflicts_with = "sequences")]
    pub train: Option<PathBuf>,
    /// Validation text
    #[arg(long, help_heading = "Data")]
    pub valid: Option<PathBuf>,
    /// Test text
    #[arg(long, help_heading = "Data")]
    pub test: Option<PathBuf>,
    /// Tokens of a text: characters or whitespace-separated words (each line ends in <eos>)
    /// [default: char]
    #[arg(long, value_enum, help_heading = "Data")]
    pub level: Option<Level>,
    /// Labelled sequences: one per line, `label<TAB>step step ...` with a step's features
    /// separated by commas (`walk<TAB>0.1,2 0.3,4`), or UCR/UEA `.ts` (by extension); the
    /// model emits one output per sequence
    #[arg(long, help_heading = "Data")]
    pub sequences: Option<PathBuf>,
    /// Validation sequences (else --split cuts --sequences)
    #[arg(long, help_heading = "Data", requires = "sequences")]
    pub valid_sequences: Option<PathBuf>,
    /// Test sequences (else --split cuts --sequences)
    #[arg(long, help_heading = "Data", requires = "sequences")]
    pub test_sequences: Option<PathBuf>,
    /// --sequences: what a label is, `classification` or `regression` [default:
    /// classification]; --csv: the column(s) to forecast, comma-separated
    #[arg(long, help_heading = "Data")]
    pub target: Option<String>,

    // ---- forecasting ----
    /// A CSV file of time series with a header row (forecasting): one row per time step, or
    /// per series and time step with --series-column; --target names the column(s) to
    /// forecast
    #[arg(long, help_heading = "Forecasting", conflicts_with_all = ["text", "train", "sequences"])]
    pub csv: Option<PathBuf>,
    /// Extra input columns, comma-separated (their past values are read with the target's)
    #[arg(long, help_heading = "Forecasting")]
    pub features: Option<String>,
    /// The time column (dates, date-times or numbers): its step is checked (gaps are errors),
    /// gives the seasonal period and continues in `recur predict`'s forecast
    #[arg(long, help_heading = "Forecasting")]
    pub time_column: Option<String>,
    /// The series id column of a long-format file of many series: one global model, each
    /// series split and scaled on its own
    #[arg(long, help_heading = "Forecasting")]
    pub series_column: Option<String>,
    /// Rows W of history the model reads
    #[arg(long, help_heading = "Forecasting")]
    pub window: Option<usize>,
    /// Steps H forecast at once (direct multi-horizon)
    #[arg(long, help_heading = "Forecasting")]
    pub horizon: Option<usize>,
    /// Next-value prediction with an output at every step (teacher forcing), scored one step
    /// ahead and free running over --horizon steps after --window rows (form i of `--cell
    /// rnn|lstm|gru` on --csv; implied by --cell feedback and --task sines) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Forecasting")]
    pub next_value: Option<bool>,
    /// Seasonal period of the seasonal-naive baseline and MASE [default: from the time
    /// column's frequency: hourly 24, daily 7, weekly 52, monthly 12, quarterly 4]
    #[arg(long, help_heading = "Forecasting")]
    pub season: Option<usize>,
    /// Missing values (empty, NA, NaN, null): error names the cell, drop the row, ffill the
    /// last value, interpolate between neighbours [default: error]
    #[arg(long, value_enum, help_heading = "Forecasting")]
    pub missing: Option<MissingPolicy>,
    /// Per-window levelling of the targets on top of the per-series scaling: mean (the
    /// window's mean, RevIN-style), last (its last value), none [default: mean]
    #[arg(long, value_enum, help_heading = "Forecasting")]
    pub window_scaling: Option<WindowScalingKind>,

    // ---- model ----
    /// Recurrent cell [default: lstm]
    #[arg(long, value_enum, help_heading = "Model")]
    pub cell: Option<Cell>,
    /// Hidden units per layer and direction [default: 200 for text, 500 for esn, 64
    /// otherwise]
    #[arg(long, help_heading = "Model")]
    pub hidden_size: Option<usize>,
    /// Stacked recurrent layers [default: 2 for text, 1 otherwise]
    #[arg(long, help_heading = "Model")]
    pub num_layers: Option<usize>,
    /// Read each sequence both ways (not for language models) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Model")]
    pub bidirectional: Option<bool>,
    /// LSTM projection size (PyTorch proj_size; 0 = none) [default: 0]
    #[arg(long, help_heading = "Model")]
    pub proj_size: Option<usize>,
    /// LSTM peephole connections [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Model")]
    pub peepholes: Option<bool>,
    /// Layer-normalised LSTM or GRU (Ba et al. 2016, as haste's LayerNormLSTM/GRU: norms on
    /// the input and recurrent products, and the LSTM's cell state) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Model")]
    pub layer_norm: Option<bool>,
    /// Embedding width of a language model [default: the hidden size]
    #[arg(long, help_heading = "Model")]
    pub embedding_size: Option<usize>,
    /// Dropout between recurrent layers (Zaremba et al.'s placement) [default: 0]
    #[arg(long, help_heading = "Model")]
    pub dropout: Option<f64>,
    /// Dropout on the embeddings [default: 0]
    #[arg(long, help_heading = "Model")]
    pub embedding_dropout: Option<f64>,
    /// Dropout on the top layer's output, before the head [default: 0]
    #[arg(long, help_heading = "Model")]
    pub output_dropout: Option<f64>,
    /// Variational dropout on h_prev, one mask per sequence (Keras recurrent_dropout)
    /// [default: 0]
    #[arg(long, help_heading = "Model")]
    pub recurrent_dropout: Option<f64>,
    /// Zoneout on h (Krueger et al. 2017): each unit keeps its previous value with this
    /// probability at every training step; the expectation at inference (LSTM, GRU)
    /// [default: 0]
    #[arg(long, help_heading = "Model")]
    pub zoneout_h: Option<f64>,
    /// Zoneout on the LSTM's cell state c [default: 0]
    #[arg(long, help_heading = "Model")]
    pub zoneout_c: Option<f64>,
    /// Tie the embedding and the output weights (Press & Wolf 2017; needs embedding size =
    /// hidden size) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Model")]
    pub tied: Option<bool>,
    /// Initialise every weight uniformly in ±x (Zaremba et al. use 0.1; 0 keeps PyTorch's
    /// initialisation) [default: 0.1 for text, 0 otherwise]
    #[arg(long, help_heading = "Model")]
    pub init_range: Option<f64>,
    /// Added to the LSTM forget-gate bias (GRU: update gate) after initialisation
    /// [default: 3 for the adding problem, 0 otherwise]
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub forget_bias: Option<f64>,
    /// Chrono initialisation for dependencies up to T_MAX steps (Tallec & Ollivier 2018):
    /// LSTM forget bias ln u and input bias −ln u (GRU: update bias ln u), u ~ U(1, T_MAX − 1)
    /// per unit; replaces --forget-bias's default [default: off]
    #[arg(long, value_name = "T_MAX", help_heading = "Model")]
    pub chrono_init: Option<f64>,

    // ---- output-to-hidden recurrence ----
    /// --cell feedback: feed the model's own previous output back (instead of the target)
    /// with probability ε (Bengio et al. 2015): `EPS` (constant), `linear:EPS:K` (ε ramps
    /// from 0 to EPS over the first K steps) or `sigmoid:EPS:K` (ε = EPS·(1 − K/(K +
    /// exp(step/K))), the inverse-sigmoid decay of teacher forcing) [default: 0, teacher
    /// forcing]
    #[arg(
        long,
        value_name = "SCHEDULE",
        help_heading = "Output-to-hidden recurrence"
    )]
    pub scheduled_sampling: Option<String>,

    // ---- echo state network ----
    /// Echo state network (--cell esn): the reservoir's largest |eigenvalue| [default: 0.9]
    #[arg(long, help_heading = "Echo state network")]
    pub spectral_radius: Option<f64>,
    /// Input weights uniform in ±x [default: 1]
    #[arg(long, help_heading = "Echo state network")]
    pub input_scaling: Option<f64>,
    /// Bias weights uniform in ±x [default: 0.2]
    #[arg(long, help_heading = "Echo state network")]
    pub bias_scaling: Option<f64>,
    /// Leak rate a ∈ (0, 1] (1: plain tanh units) [default: 1]
    #[arg(long, help_heading = "Echo state network")]
    pub leak_rate: Option<f64>,
    /// Fraction of the reservoir's recurrent weights that are zero [default: 0.9]
    #[arg(long, help_heading = "Echo state network")]
    pub sparsity: Option<f64>,
    /// Ridge λ values to try, comma-separated; the readout keeps the best on validation
    /// [default: 1e-8,1e-6,1e-4,1e-2,1]
    #[arg(long, help_heading = "Echo state network")]
    pub ridge: Option<String>,
    /// Sequences of a generated task the readout is fitted on [default: 2000]
    #[arg(long, help_heading = "Echo state network")]
    pub esn_sequences: Option<usize>,
    /// Noise uniform in ±x added to the reservoir's states while the readout's training
    /// states are collected, drawn from --seed (Jaeger & Haas 2004) [default: 0]
    #[arg(long, help_heading = "Echo state network")]
    pub esn_noise: Option<f64>,

    // ---- optimizer ----
    /// Optimizer (PyTorch's update formulas) [default: sgd for text, adam
    /// otherwise]
    #[arg(long, value_enum, help_heading = "Optimizer")]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate [default: sgd 1 (text), 0.1 (otherwise); adam/adamw 0.001; rmsprop 0.01;
    /// adagrad 0.01]
    #[arg(long, help_heading = "Optimizer")]
    pub lr: Option<f64>,
    /// SGD or RMSprop momentum [default: 0; adding with sgd 0.9]
    #[arg(long, help_heading = "Optimizer")]
    pub momentum: Option<f64>,
    /// Nesterov momentum (SGD) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimizer")]
    pub nesterov: Option<bool>,
    /// Weight decay (L2 for sgd/adam/rmsprop/adagrad, decoupled for adamw) [default: 0;
    /// adamw 0.01]
    #[arg(long, help_heading = "Optimizer")]
    pub weight_decay: Option<f64>,
    /// Adam's β1,β2 [default: 0.9,0.999]
    #[arg(long, help_heading = "Optimizer")]
    pub betas: Option<String>,
    /// ε of adam/adamw/rmsprop/adagrad [default: PyTorch's: 1e-8, rmsprop 1e-8, adagrad
    /// 1e-10]
    #[arg(long, help_heading = "Optimizer")]
    pub eps: Option<f64>,
    /// RMSprop smoothing constant α [default: 0.99]
    #[arg(long, help_heading = "Optimizer")]
    pub alpha: Option<f64>,
    /// Clip the gradient to this global 2-norm (the norm before clipping is logged; 0 = no
    /// clipping) [default: 5 for text, 1 for adding, 0 otherwise]
    #[arg(long, alias = "clip", help_heading = "Optimizer")]
    pub clip_norm: Option<f64>,
    /// Clip each gradient value to ±x (0 = no clipping) [default: 0]
    #[arg(long, help_heading = "Optimizer")]
    pub clip_value: Option<f64>,

    // ---- schedule ----
    /// Learning-rate schedule: const; step (× --decay-factor each epoch after
    /// --decay-after, Zaremba's); exp (× --decay-factor every epoch); cosine (to --min-lr
    /// over the run); plateau (× --decay-factor when the validation loss does not improve
    /// for --patience epochs) [default: step for text with sgd, const otherwise]
    #[arg(long, value_enum, help_heading = "Schedule")]
    pub schedule: Option<ScheduleKind>,
    /// Epochs at the full learning rate before step decay starts [default: 4]
    #[arg(long, help_heading = "Schedule")]
    pub decay_after: Option<usize>,
    /// Learning-rate factor per decay [default: 0.5]
    #[arg(long, help_heading = "Schedule")]
    pub decay_factor: Option<f64>,
    /// Linear warm-up from 0 over this many steps [default: 0]
    #[arg(long, help_heading = "Schedule")]
    pub warmup_steps: Option<usize>,
    /// Plateau: epochs without improvement before a decay [default: 0]
    #[arg(long, help_heading = "Schedule")]
    pub patience: Option<usize>,
    /// Cosine: the final learning rate; every schedule: the floor [default: 0]
    #[arg(long, help_heading = "Schedule")]
    pub min_lr: Option<f64>,

    // ---- run ----
    /// Truncated-BPTT length of a language model's chunks [default: 20]
    #[arg(long, help_heading = "Run")]
    pub bptt: Option<usize>,
    /// Sequences (text: parallel streams) per step [default: 20 for text, 32 otherwise]
    #[arg(long, help_heading = "Run")]
    pub batch_size: Option<usize>,
    /// Streams when evaluating a language model (PyTorch's example uses 10; 1 reads each part
    /// as one stream) [default: 10]
    #[arg(long, help_heading = "Run")]
    pub eval_batch_size: Option<usize>,
    /// Passes over the training data [default: 13 for text, 20 for sequences]
    #[arg(long, help_heading = "Run", conflicts_with = "steps")]
    pub epochs: Option<usize>,
    /// Training steps instead of epochs (generated tasks: the only measure) [default:
    /// adding and multiplication 20000, the other generated tasks 5000]
    #[arg(long, help_heading = "Run")]
    pub steps: Option<usize>,
    /// Seed of the initial weights, dropout masks, shuffling and generated data [default: 0]
    #[arg(long, help_heading = "Run")]
    pub seed: Option<u64>,
    /// Worker threads of the matrix products (0 = one per core) [default: 0]
    #[arg(long, help_heading = "Run")]
    pub threads: Option<usize>,
    /// Operands of the recurrent layers' matrix products: f32, or bf16 (AVX-512 BF16: bf16
    /// operands, f32 sums; weights, optimizer, cell state and loss stay f32; see docs/cells.md)
    /// [default: f32]
    #[arg(long, value_enum, help_heading = "Run")]
    pub precision: Option<Precision>,
    /// mean: the loss is the mean over every target; sum-over-time: summed over the steps
    /// of a TBPTT chunk and averaged over the batch (Zaremba et al.'s, what SGD's lr 1 is
    /// for) [default: sum-over-time for text with sgd, mean otherwise]
    #[arg(long, value_enum, help_heading = "Run")]
    pub loss_reduction: Option<LossReduction>,
    /// Generated tasks: evaluate and print a line every this many steps [default: 1000]
    #[arg(long, help_heading = "Run")]
    pub eval_every: Option<usize>,
    /// Stop after N epochs (validations, in a run of steps) without a lower validation loss;
    /// the best weights are then the ones tested and kept in --checkpoint [default: off]
    #[arg(long, value_name = "N", help_heading = "Run")]
    pub early_stopping: Option<usize>,

    // ---- files ----
    /// TOML file giving any of these settings as `flag-name = value` (flags override it)
    #[arg(long, help_heading = "Files")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// JSONL log: one object per step (`"kind": "step"`: loss, ppl or acc, lr, grad norm,
    /// tokens/s, elapsed), per validation (`"epoch"`, or `"valid"` in a run of steps: train
    /// and `val_` figures) and for the test (`"test"`); `recur plot` draws it
    #[arg(long, help_heading = "Files")]
    pub log: Option<PathBuf>,
    /// CSV log, one row per epoch (validation) as Keras's CSVLogger writes it: epoch, loss,
    /// the task's figures, val_loss, val_ figures, lr
    #[arg(long, value_name = "FILE", help_heading = "Files")]
    pub csv_log: Option<PathBuf>,
    /// Checkpoint file (safetensors), written at every epoch's end, on Ctrl-C and at the end;
    /// the best model on validation goes to FILE with `.best` before the extension
    #[arg(long, help_heading = "Files")]
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every this many steps (0 = only at epoch ends) [default: 0]
    #[arg(long, help_heading = "Files")]
    pub save_every: Option<usize>,
    /// Continue the run saved in this checkpoint (same settings; the numbers are those of an
    /// uninterrupted run)
    #[arg(long, help_heading = "Files")]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// No progress bar even on a terminal
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Files")]
    pub quiet: Option<bool>,
    /// Read the data and print the model's parameters and the memory the run would need,
    /// then stop without training
    #[arg(long, help_heading = "Run", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    #[serde(skip)]
    pub dry_run: bool,
}

/// Built-in generated tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// The adding problem: sum the two marked values of a long sequence
    Adding,
    /// Copy (memory): read T symbols, wait, then write them back
    Copy,
    /// The multiplication problem: multiply the two marked values of a long sequence
    Multiplication,
    /// Temporal order: classify by the order of two far-apart symbols (4 classes)
    TemporalOrder,
    /// Temporal order with three relevant symbols (8 classes)
    #[value(name = "temporal-order-3")]
    #[serde(rename = "temporal-order-3")]
    TemporalOrder3,
    /// Embedded Reber grammar: predict the next symbol
    Reber,
    /// Timing: tell spikes T apart from spikes T − 1 apart
    Timing,
    /// Noisy sum of two sines: predict the next value at every step, then run free
    Sines,
}

/// Text tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Char,
    Word,
}

/// What a labelled sequence's label is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Classification,
    Regression,
}

/// What to do with a missing value in a CSV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingPolicy {
    Error,
    Drop,
    Ffill,
    Interpolate,
}

/// How a forecasting window's targets are levelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowScalingKind {
    None,
    Mean,
    Last,
}

/// The recurrent cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    Lstm,
    Gru,
    /// Elman RNN with tanh
    Rnn,
    /// Elman RNN with ReLU
    RnnRelu,
    /// Echo state network: a fixed random reservoir of tanh units and a linear readout fitted
    /// by ridge regression (no gradient training; --hidden-size is the reservoir's size)
    Esn,
    /// Output-to-hidden recurrence (form ii): the previous output (under teacher forcing the
    /// previous target) is all that reaches the tanh hidden units from the past; next-value
    /// prediction on --task sines or --csv
    Feedback,
}

/// The optimizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
    Adagrad,
}

/// The learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    Const,
    Step,
    Exp,
    Cosine,
    Plateau,
}

/// The operands of training's matrix products (`--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    pub fn format(self) -> recur::WeightFormat {
        match self {
            Precision::F32 => recur::WeightFormat::F32,
            Precision::Bf16 => recur::WeightFormat::Bf16,
        }
    }
}

/// How a language model's loss is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossReduction {
    Mean,
    SumOverTime,
}

/// What the settings train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Adding,
    Multiplication,
    TemporalOrder,
    TemporalOrder3,
    Reber,
    Timing,
    Copy,
    Text,
    Sequences,
    Forecast,
    /// next-value prediction of noisy sines (`--task sines`)
    Sines,
}

impl Source {
    /// Whether the data are drawn from a generator (counted in steps, not epochs).
    pub fn is_generated(self) -> bool {
        !matches!(self, Source::Text | Source::Sequences | Source::Forecast)
    }
}

impl TrainArgs {
    /// Which data the settings name.
    pub fn source(&self) -> Result<Source> {
        let text = self.text.is_some() || self.train.is_some();
        let seqs = self.sequences.is_some();
        if self.csv.is_some() {
            if self.task.is_some() || text || seqs {
                bail!("give one data source: --task, --text/--train, --sequences or --csv");
            }
            return Ok(Source::Forecast);
        }
        if self.valid.is_some() != self.train.is_some()
            || self.test.is_some() != self.train.is_some()
        {
            bail!("--train, --valid and --test go together");
        }
        match (self.task, text, seqs) {
            (Some(_), true, _) | (Some(_), _, true) | (None, true, true) => {
                bail!("give one data source: --task, --text/--train or --sequences")
            }
            (Some(Task::Adding) | None, false, false) => Ok(Source::Adding),
            (Some(Task::Copy), false, false) => Ok(Source::Copy),
            (Some(Task::Multiplication), false, false) => Ok(Source::Multiplication),
            (Some(Task::TemporalOrder), false, false) => Ok(Source::TemporalOrder),
            (Some(Task::TemporalOrder3), false, false) => Ok(Source::TemporalOrder3),
            (Some(Task::Reber), false, false) => Ok(Source::Reber),
            (Some(Task::Timing), false, false) => Ok(Source::Timing),
            (Some(Task::Sines), false, false) => Ok(Source::Sines),
            (None, true, false) => Ok(Source::Text),
            (None, false, true) => Ok(Source::Sequences),
        }
    }

    /// The settings from the command line, with the config file's (if any) under them.
    ///
    /// # Errors
    /// One line naming the file for a missing or unreadable file, a TOML syntax error, an
    /// unknown key (with its line) or a value of the wrong type.
    pub fn with_config_file(&self) -> Result<Self> {
        let Some(path) = &self.config else {
            return Ok(self.clone());
        };
        let file = read_config(path)?;
        merge(self, &file)
    }

    /// Settings saved earlier (a checkpoint's) under the command line's: every flag given
    /// now wins.
    pub fn over(&self, saved: &Self) -> Result<Self> {
        merge(self, saved)
    }
}

/// `top` with each of its unset fields taken from `under`.
fn merge(top: &TrainArgs, under: &TrainArgs) -> Result<TrainArgs> {
    let mut a = serde_json::to_value(top)?;
    let b = serde_json::to_value(under)?;
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            if a.get(k).is_none_or(serde_json::Value::is_null) {
                a.insert(k.clone(), v.clone());
            }
        }
    }
    let mut merged: TrainArgs = serde_json::from_value(a)?;
    merged.config.clone_from(&top.config);
    merged.resume.clone_from(&top.resume);
    Ok(merged)
}

/// Reads a TOML config file of `flag-name = value` lines.
fn read_config(path: &Path) -> Result<TrainArgs> {
    let name = path.display();
    let bytes = recur::io::read_limited(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    parse_config(&text, &name.to_string())
}

/// The settings of a TOML config file's `text`; `name` names it in errors.
pub fn parse_config(text: &str, name: &str) -> Result<TrainArgs> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{name}: {}", toml_message(text, &e)))?;
    let known = serde_json::to_value(TrainArgs::default())?;
    let known = known
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>());
    for key in table.keys() {
        if !known.as_ref().is_some_and(|k| k.contains(key)) {
            let line = key_line(text, key);
            bail!(
                "{name}:{line}: unknown key `{}` (keys are the flags of `recur train --help` without their --)",
                recur::excerpt(key)
            );
        }
    }
    TrainArgs::deserialize(table).map_err(|e| {
        anyhow::anyhow!(
            "{name}: {}",
            recur::excerpt_of(&one_line(&e.to_string()), 160)
        )
    })
}

/// The 1-based line where `key` is first set in a TOML text (0 if not found).
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = recur::excerpt_of(&one_line(e.message()), 160);
    match line {
        Some(l) => format!("line {l}: {msg}"),
        None => msg,
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `"a,b,c"` as numbers.
pub fn parse_list(flag: &str, s: &str, n: usize) -> Result<Vec<f64>> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{flag}: expected {n} comma-separated numbers, got `{s}`"))?;
    if v.len() != n {
        bail!("{flag}: expected {n} comma-separated numbers, got `{s}`");
    }
    Ok(v)
}
