//! [`TrainArgs`] with every default of its data source filled in and every value checked.

use anyhow::{Result, bail, ensure};
use recur::optim::{
    AdagradConfig, AdamConfig, Centered, Nesterov, OptimizerConfig, RmspropConfig, SgdConfig,
    WeightDecay,
};
use recur::{CellKind, Direction, Peepholes, RecurrentConfig};

use super::args::{
    Cell, Level, LossReduction, OptimizerKind, Precision, ScheduleKind, Source, Target, TrainArgs,
    parse_list,
};

/// A comma-separated list of λ ≥ 0.
fn parse_grid(s: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--ridge: expected comma-separated numbers, got `{s}`"))?;
    ensure!(
        v.iter().all(|l| l.is_finite() && *l >= 0.0),
        "--ridge: every λ must be finite and ≥ 0, got `{s}`"
    );
    Ok(v)
}

/// Concrete settings of a run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub source: Source,
    pub seq_len: usize,
    pub split: [f64; 3],
    pub level: Level,
    pub target: Target,
    pub cell: Cell,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub bidirectional: bool,
    pub proj_size: usize,
    pub peepholes: bool,
    pub layer_norm: bool,
    pub embedding_size: usize,
    pub dropout: f64,
    pub embedding_dropout: f64,
    pub output_dropout: f64,
    pub recurrent_dropout: f64,
    pub zoneout_h: f64,
    pub zoneout_c: f64,
    pub tied: bool,
    pub init_range: f64,
    pub forget_bias: f64,
    /// 0: off.
    pub chrono_init: f64,
    pub opt: OptimizerConfig,
    pub clip_norm: f64,
    pub clip_value: f64,
    pub schedule: ScheduleKind,
    pub decay_after: usize,
    pub decay_factor: f64,
    pub warmup_steps: usize,
    pub patience: usize,
    pub min_lr: f64,
    pub bptt: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// epochs, or None when the run is counted in steps
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub seed: u64,
    pub threads: usize,
    /// the operands of the recurrent layers' training products
    pub precision: Precision,
    pub loss_reduction: LossReduction,
    pub eval_every: usize,
    /// validations without a lower validation loss before the run stops (0: off)
    pub early_stopping: usize,
    pub save_every: usize,
    pub quiet: bool,
    pub esn: EsnSettings,
    /// next-value prediction with an output every step (`--next-value`, `--cell feedback`,
    /// `--task sines`)
    pub next_value: bool,
    /// `--scheduled-sampling` (`--cell feedback`)
    pub sampling: super::feedback::Sampling,
    /// `--dry-run`: stop after the model's summary and memory estimate
    pub dry_run: bool,
}

/// The echo state network's settings (`--cell esn`).
#[derive(Clone, Debug)]
pub struct EsnSettings {
    pub spectral_radius: f64,
    pub input_scaling: f64,
    pub bias_scaling: f64,
    pub leak_rate: f64,
    pub sparsity: f64,
    /// the λ grid
    pub ridge: Vec<f64>,
    pub sequences: usize,
    /// state noise while the training states are collected
    pub noise: f64,
}

impl Cell {
    pub fn kind(self) -> CellKind {
        match self {
            Cell::Lstm => CellKind::lstm(),
            Cell::Gru => CellKind::gru(),
            Cell::Rnn => CellKind::rnn_tanh(),
            Cell::RnnRelu => CellKind::rnn_relu(),
            // the reservoir's units are tanh RNN units; no `Recurrent` is built for an ESN
            Cell::Esn => CellKind::rnn_tanh(),
            // the hidden units of the output-to-hidden network are tanh units (no `Recurrent`)
            Cell::Feedback => CellKind::rnn_tanh(),
        }
    }
}

impl Settings {
    /// Resolves `a` for its data source.
    pub fn resolve(a: &TrainArgs) -> Result<Self> {
        let source = a.source()?;
        let text = source == Source::Text;
        let adding = matches!(source, Source::Adding | Source::Multiplication);
        let generated = source.is_generated();
        let esn = a.cell == Some(Cell::Esn);
        let hidden_size = a.hidden_size.unwrap_or(match source {
            _ if esn => 500,
            Source::Text => 200,
            _ => 64,
        });
        let optimizer = a.optimizer.unwrap_or(match source {
            Source::Text => OptimizerKind::Sgd,
            _ => OptimizerKind::Adam,
        });
        let lr = a.lr.unwrap_or(match optimizer {
            OptimizerKind::Sgd if text => 1.0,
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Adam | OptimizerKind::Adamw => 1e-3,
            OptimizerKind::Rmsprop | OptimizerKind::Adagrad => 1e-2,
        });
        // a language model trained with SGD: Zaremba et al.'s schedule and loss
        let zaremba = text && optimizer == OptimizerKind::Sgd;
        let betas = match &a.betas {
            Some(s) => {
                let v = parse_list("--betas", s, 2)?;
                (v[0], v[1])
            }
            None => (0.9, 0.999),
        };
        let weight_decay = a.weight_decay.unwrap_or(match optimizer {
            OptimizerKind::Adamw => 0.01,
            _ => 0.0,
        });
        let momentum = a
            .momentum
            .unwrap_or(if adding && optimizer == OptimizerKind::Sgd {
                0.9
            } else {
                0.0
            });
        ensure!(
            momentum.is_finite() && (0.0..1.0).contains(&momentum),
            "--momentum must lie in [0, 1), got {momentum}"
        );
        let nesterov = a.nesterov.unwrap_or(false);
        let opt = match optimizer {
            OptimizerKind::Sgd => OptimizerConfig::Sgd(SgdConfig {
                lr,
                momentum,
                weight_decay,
                nesterov: if nesterov {
                    Nesterov::Enabled
                } else {
                    Nesterov::Disabled
                },
                ..Default::default()
            }),
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let base = if optimizer == OptimizerKind::Adamw {
                    AdamConfig::adamw()
                } else {
                    AdamConfig {
                        weight_decay_kind: WeightDecay::L2,
                        ..Default::default()
                    }
                };
                OptimizerConfig::Adam(AdamConfig {
                    lr,
                    betas,
                    eps: a.eps.unwrap_or(base.eps),
                    weight_decay,
                    ..base
                })
            }
            OptimizerKind::Rmsprop => {
                let base = RmspropConfig::default();
                OptimizerConfig::Rmsprop(RmspropConfig {
                    lr,
                    alpha: a.alpha.unwrap_or(base.alpha),
                    eps: a.eps.unwrap_or(base.eps),
                    weight_decay,
                    momentum,
                    centered: Centered::Disabled,
                })
            }
            OptimizerKind::Adagrad => {
                let base = AdagradConfig::default();
                OptimizerConfig::Adagrad(AdagradConfig {
                    lr,
                    eps: a.eps.unwrap_or(base.eps),
                    weight_decay,
                    ..base
                })
            }
        };
        opt.validate()?;
        if nesterov && optimizer != OptimizerKind::Sgd {
            bail!("--nesterov is an option of --optimizer sgd");
        }
        let split = match &a.split {
            Some(s) => {
                let v = parse_list("--split", s, 3)?;
                [v[0], v[1], v[2]]
            }
            None if source == Source::Forecast => [0.8, 0.1, 0.1],
            None => [0.9, 0.05, 0.05],
        };
        let (epochs, steps) = match (a.epochs, a.steps) {
            (Some(e), _) => (Some(e), None),
            (None, Some(s)) => (None, Some(s)),
            (None, None) => match source {
                Source::Text => (Some(13), None),
                Source::Sequences => (Some(20), None),
                Source::Forecast => (Some(100), None),
                _ if adding => (None, Some(20_000)),
                _ => (None, Some(5_000)),
            },
        };
        if a.early_stopping == Some(0) {
            bail!("--early-stopping must be at least 1 (leave it out to train every epoch)");
        }
        if generated && epochs.is_some() {
            bail!("a generated task is counted in --steps, not --epochs");
        }
        let s = Self {
            source,
            seq_len: a.seq_len.unwrap_or(match source {
                Source::Copy => 10,
                Source::Timing => 50,
                _ => 100,
            }),
            split,
            level: a.level.unwrap_or(Level::Char),
            target: match (source, a.target.as_deref()) {
                (Source::Sequences, Some("classification")) | (_, None) => Target::Classification,
                (Source::Sequences, Some("regression")) => Target::Regression,
                (Source::Sequences, Some(other)) => bail!(
                    "--target: labelled sequences are `classification` or `regression`, not `{other}`"
                ),
                (Source::Forecast, Some(_)) => Target::Regression,
                (_, Some(_)) => bail!("--target is for --sequences and --csv"),
            },
            cell: a.cell.unwrap_or(Cell::Lstm),
            hidden_size,
            num_layers: a.num_layers.unwrap_or(if text { 2 } else { 1 }),
            bidirectional: a.bidirectional.unwrap_or(false),
            proj_size: a.proj_size.unwrap_or(0),
            peepholes: a.peepholes.unwrap_or(false),
            layer_norm: a.layer_norm.unwrap_or(false),
            embedding_size: a.embedding_size.unwrap_or(hidden_size),
            dropout: a.dropout.unwrap_or(0.0),
            embedding_dropout: a.embedding_dropout.unwrap_or(0.0),
            output_dropout: a.output_dropout.unwrap_or(0.0),
            recurrent_dropout: a.recurrent_dropout.unwrap_or(0.0),
            zoneout_h: a.zoneout_h.unwrap_or(0.0),
            zoneout_c: a.zoneout_c.unwrap_or(0.0),
            tied: a.tied.unwrap_or(false),
            init_range: a.init_range.unwrap_or(if text { 0.1 } else { 0.0 }),
            forget_bias: a
                .forget_bias
                .unwrap_or(if adding && a.chrono_init.is_none() {
                    3.0
                } else {
                    0.0
                }),
            chrono_init: a.chrono_init.unwrap_or(0.0),
            opt,
            clip_norm: a.clip_norm.unwrap_or(match source {
                Source::Text => 5.0,
                _ if adding => 1.0,
                _ => 0.0,
            }),
            clip_value: a.clip_value.unwrap_or(0.0),
            // Zaremba et al.'s step decay and summed loss are tuned for SGD at lr 1; with an
            // adaptive optimizer they shrink its steps to nothing
            schedule: a.schedule.unwrap_or(if zaremba {
                ScheduleKind::Step
            } else {
                ScheduleKind::Const
            }),
            decay_after: a.decay_after.unwrap_or(4),
            decay_factor: a.decay_factor.unwrap_or(0.5),
            warmup_steps: a.warmup_steps.unwrap_or(0),
            patience: a.patience.unwrap_or(0),
            min_lr: a.min_lr.unwrap_or(0.0),
            bptt: a.bptt.unwrap_or(20),
            batch_size: a.batch_size.unwrap_or(if text { 20 } else { 32 }),
            eval_batch_size: a.eval_batch_size.unwrap_or(10),
            epochs,
            steps,
            seed: a.seed.unwrap_or(0),
            threads: a.threads.unwrap_or(0),
            precision: a.precision.unwrap_or(Precision::F32),
            loss_reduction: a.loss_reduction.unwrap_or(if zaremba {
                LossReduction::SumOverTime
            } else {
                LossReduction::Mean
            }),
            eval_every: a.eval_every.unwrap_or(1000),
            early_stopping: a.early_stopping.unwrap_or(0),
            save_every: a.save_every.unwrap_or(0),
            quiet: a.quiet.unwrap_or(false),
            esn: EsnSettings {
                spectral_radius: a.spectral_radius.unwrap_or(0.9),
                input_scaling: a.input_scaling.unwrap_or(1.0),
                bias_scaling: a.bias_scaling.unwrap_or(0.2),
                leak_rate: a.leak_rate.unwrap_or(1.0),
                sparsity: a.sparsity.unwrap_or(0.9),
                ridge: match &a.ridge {
                    Some(r) => parse_grid(r)?,
                    None => vec![1e-8, 1e-6, 1e-4, 1e-2, 1.0],
                },
                sequences: a.esn_sequences.unwrap_or(2000),
                noise: a.esn_noise.unwrap_or(0.0),
            },
            next_value: a.next_value.unwrap_or(false)
                || a.cell == Some(Cell::Feedback)
                || source == Source::Sines,
            sampling: match &a.scheduled_sampling {
                Some(spec) if a.cell == Some(Cell::Feedback) => {
                    super::feedback::Sampling::parse(spec)?
                }
                Some(_) => bail!(
                    "--scheduled-sampling feeds back the model's own outputs: an option of \
                     --cell feedback"
                ),
                None => super::feedback::Sampling::default(),
            },
            dry_run: a.dry_run,
        };
        if a.next_value == Some(true) && !matches!(source, Source::Forecast | Source::Sines) {
            bail!("--next-value is next-value prediction of a series: give --csv or --task sines");
        }
        let esn_flags = [
            a.spectral_radius.is_some(),
            a.input_scaling.is_some(),
            a.bias_scaling.is_some(),
            a.leak_rate.is_some(),
            a.sparsity.is_some(),
            a.ridge.is_some(),
            a.esn_sequences.is_some(),
            a.esn_noise.is_some(),
        ];
        if !esn && esn_flags.iter().any(|&f| f) {
            bail!(
                "--spectral-radius, --input-scaling, --bias-scaling, --leak-rate, --sparsity, --ridge, --esn-sequences and --esn-noise are options of --cell esn"
            );
        }
        if esn {
            if s.num_layers != 1 || s.bidirectional {
                bail!("--cell esn: one reservoir read forward (no --num-layers, --bidirectional)");
            }
            ensure!(s.esn.sequences >= 1, "--esn-sequences must be at least 1");
            ensure!(
                s.esn.noise.is_finite() && s.esn.noise >= 0.0,
                "--esn-noise must be finite and ≥ 0, got {}",
                s.esn.noise
            );
            ensure!(
                s.precision == Precision::F32,
                "--precision: an echo state network fits its readout by ridge regression; \
                 there are no recurrent products to train"
            );
        }
        if source == Source::Reber && a.seq_len.is_some() {
            bail!("--seq-len: the embedded Reber grammar's strings have their own lengths");
        }
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        let at_least_one = [
            ("--hidden-size", self.hidden_size),
            ("--num-layers", self.num_layers),
            ("--batch-size", self.batch_size),
            ("--eval-batch-size", self.eval_batch_size),
            ("--bptt", self.bptt),
            ("--eval-every", self.eval_every),
            ("--embedding-size", self.embedding_size),
            ("--seq-len", self.seq_len),
        ];
        for (flag, v) in at_least_one {
            ensure!(v >= 1, "{flag} must be at least 1, got {v}");
        }
        if let Some(e) = self.epochs {
            ensure!(e >= 1, "--epochs must be at least 1, got {e}");
        }
        if let Some(s) = self.steps {
            ensure!(s >= 1, "--steps must be at least 1, got {s}");
        }
        for (flag, p) in [
            ("--dropout", self.dropout),
            ("--embedding-dropout", self.embedding_dropout),
            ("--output-dropout", self.output_dropout),
            ("--recurrent-dropout", self.recurrent_dropout),
            ("--zoneout-h", self.zoneout_h),
            ("--zoneout-c", self.zoneout_c),
        ] {
            ensure!(
                (0.0..1.0).contains(&p),
                "{flag} must lie in [0, 1), got {p}"
            );
        }
        for (flag, v) in [
            ("--init-range", self.init_range),
            ("--clip-norm", self.clip_norm),
            ("--clip-value", self.clip_value),
            ("--min-lr", self.min_lr),
        ] {
            ensure!(
                v.is_finite() && v >= 0.0,
                "{flag} must be a finite number ≥ 0, got {v}"
            );
        }
        ensure!(
            self.chrono_init == 0.0 || (self.chrono_init.is_finite() && self.chrono_init > 2.0),
            "--chrono-init must be a number of steps above 2, got {}",
            self.chrono_init
        );
        if self.chrono_init > 0.0 && matches!(self.cell, Cell::Rnn | Cell::RnnRelu) {
            bail!("--chrono-init sets gate biases; a plain RNN has no gates");
        }
        ensure!(
            self.forget_bias.is_finite(),
            "--forget-bias must be a finite number, got {}",
            self.forget_bias
        );
        ensure!(
            self.decay_factor.is_finite() && self.decay_factor > 0.0 && self.decay_factor <= 1.0,
            "--decay-factor must lie in (0, 1], got {}",
            self.decay_factor
        );
        if self.source == Source::Text && self.bidirectional {
            bail!("--bidirectional: a language model reads left to right only");
        }
        if self.proj_size > 0 && self.cell != Cell::Lstm {
            bail!("--proj-size is an LSTM option");
        }
        if self.peepholes && self.cell != Cell::Lstm {
            bail!("--peepholes is an LSTM option");
        }
        if self.zoneout_h > 0.0 && !matches!(self.cell, Cell::Lstm | Cell::Gru) {
            bail!("--zoneout-h is an LSTM and GRU option");
        }
        if self.zoneout_c > 0.0 && self.cell != Cell::Lstm {
            bail!("--zoneout-c is an LSTM option (only an LSTM has a cell state)");
        }
        if self.zoneout_c > 0.0 && self.peepholes {
            bail!("--zoneout-c: the output peephole reads the new cell state before its zoneout");
        }
        if self.layer_norm && !matches!(self.cell, Cell::Lstm | Cell::Gru) {
            bail!("--layer-norm is an LSTM and GRU option");
        }
        if self.layer_norm && self.proj_size > 0 {
            bail!("--layer-norm: a layer-normalised LSTM has no projection (--proj-size 0)");
        }
        if self.tied {
            if self.source != Source::Text {
                bail!("--tied ties a language model's embedding and output weights");
            }
            let out = if self.proj_size > 0 {
                self.proj_size
            } else {
                self.hidden_size
            };
            ensure!(
                self.embedding_size == out,
                "--tied needs --embedding-size ({}) equal to the top layer's output size ({out})",
                self.embedding_size
            );
        }
        Ok(())
    }

    /// The recurrent stack reading `input_size` features.
    pub fn rnn_config(&self, input_size: usize) -> RecurrentConfig {
        let mut cell = self.cell.kind();
        if let CellKind::Lstm(lstm) = &mut cell {
            lstm.proj_size = self.proj_size;
            if self.peepholes {
                lstm.peepholes = Peepholes::ALL;
            }
            lstm.layer_norm = self.layer_norm;
        }
        if let CellKind::Gru(gru) = &mut cell {
            gru.layer_norm = self.layer_norm;
        }
        RecurrentConfig {
            cell,
            input_size,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            direction: if self.bidirectional {
                Direction::Bidirectional
            } else {
                Direction::Forward
            },
            dropout: self.dropout,
            recurrent_dropout: self.recurrent_dropout,
            zoneout_h: self.zoneout_h,
            zoneout_c: self.zoneout_c,
            ..Default::default()
        }
    }
}
