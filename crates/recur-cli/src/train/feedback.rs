//! Next-value prediction of a series with an output at every step: `--cell feedback` (the
//! output-to-hidden network, form ii, [`recur::model::Feedback`]) or a recurrent stack with a
//! linear head at every step (form i: `--cell rnn|rnn-relu|lstm|gru`), on `--task sines`
//! ([`recur::data::NoisySines`]) or on the target column(s) of a `--csv` file.
//!
//! A sequence is W + H consecutive values s_0 … s_{W+H−1} (`--window` W, `--horizon` H), and
//! step t (t = 0 … W+H−2) predicts s_{t+1}:
//! ```text
//! form ii: a_t = W_xh x_t + W_yh ŷ_{t−1} + b_h,   x_0 = s_0, x_t = 0 after; ŷ_{t−1} = s_t (teacher
//!          forcing) or y_{t−1} (own output, with probability ε: --scheduled-sampling)
//! form i:  the stack reads x_t = s_t;  y_t = head(h_t)
//! ℓ = mean over steps, sequences and targets of (y_t − s_{t+1})²     (scaled values)
//! ```
//! Training is teacher-forced over the whole sequence (form ii: with scheduled sampling if
//! asked). Validation and test score the last H steps of each sequence two ways:
//! **one step ahead** (teacher forced: every step reads the true past) and **free running**
//! (the model reads the first W values, then its own outputs: form ii feeds y_{t−1} back,
//! form i reads it as its next input), as RMSE in the data's units. The validation loss (the
//! scheduler's, early stopping's) is the free-running mean squared error on scaled values.
//!
//! `--csv`: the windows, chronological split and per-series standardisation of the
//! forecaster ([`recur::data::forecast`], no window levelling); the H scored values of a
//! validation or test window lie in its part, its W values before them are the history
//! known at its origin. `--task sines`: fresh sequences from the seed's training stream at
//! every step, a fixed validation set and a fresh test set, unscaled.
//!
//! `--cell feedback --checkpoint FILE` writes the network ([`recur::io::save_feedback`]) with
//! the run's settings and, for `--csv`, the forecast spec (window, horizon, scaling), which
//! `recur eval`, `recur predict` and `recur summary` read.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use recur::data::forecast::{ForecastData, ForecastSpec, Part, Window};
use recur::data::{NoisySines, Split};
use recur::model::{
    Feed, Feedback, FeedbackConfig, ModelInput, OutputForm, Reduction, SequenceModel, mse_loss,
    mse_loss_backward,
};
use recur::{Call, Tensor};

use super::args::{Cell, Source, TrainArgs, WindowScalingKind};
use super::core::Progress;
use super::optim::describe;
use super::report::Figures;
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};
use super::{dropout_seed, init_uniform};

/// Sequences of the fixed validation set of `--task sines`.
pub const VALID_SEQUENCES: usize = 256;
/// Sequences of the fresh test set of `--task sines`.
pub const TEST_SEQUENCES: usize = 1_024;
/// Sequences per evaluation batch.
const EVAL_BATCH: usize = 256;
/// `--task sines`: W and H when not given.
pub const SINES_WINDOW: usize = 50;
pub const SINES_HORIZON: usize = 50;
/// The longest sequence (W + H) accepted: bounds every set held in memory.
pub const MAX_STEPS: usize = 10_000;

/// Metadata keys of a saved network.
const RUN_KEY: &str = "recur-cli.run_config";
const SPEC_KEY: &str = "recur-cli.forecast";

/// `--scheduled-sampling`: ε, the probability that a step reads the model's own previous
/// output instead of the target, over training.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Sampling {
    /// teacher forcing throughout (ε = 0)
    #[default]
    Off,
    Constant(f64),
    /// ε = EPS · min(step / K, 1)
    Linear {
        eps: f64,
        k: f64,
    },
    /// ε = EPS · (1 − K / (K + exp(step / K)))
    Sigmoid {
        eps: f64,
        k: f64,
    },
}

impl Sampling {
    /// `EPS`, `linear:EPS:K` or `sigmoid:EPS:K`, EPS in [0, 1] and K ≥ 1.
    ///
    /// # Errors
    /// One line quoting the flag's grammar.
    pub fn parse(spec: &str) -> Result<Self> {
        let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let eps = |s: &str| num(s).filter(|e| (0.0..=1.0).contains(e));
        let k = |s: &str| num(s).filter(|k| *k >= 1.0);
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let parsed = match parts.as_slice() {
            [e] => eps(e).map(|e| {
                if e == 0.0 {
                    Self::Off
                } else {
                    Self::Constant(e)
                }
            }),
            ["linear", e, n] => eps(e).zip(k(n)).map(|(eps, k)| Self::Linear { eps, k }),
            ["sigmoid", e, n] => eps(e).zip(k(n)).map(|(eps, k)| Self::Sigmoid { eps, k }),
            _ => None,
        };
        parsed.ok_or_else(|| {
            anyhow!(
                "--scheduled-sampling: expected EPS, linear:EPS:K or sigmoid:EPS:K with EPS in \
                 [0, 1] and K ≥ 1, got `{}`",
                recur::excerpt(spec)
            )
        })
    }

    /// ε at training step `step` (the first is 1).
    pub fn epsilon(&self, step: usize) -> f64 {
        let i = step as f64;
        match *self {
            Self::Off => 0.0,
            Self::Constant(e) => e,
            Self::Linear { eps, k } => eps * (i / k).min(1.0),
            Self::Sigmoid { eps, k } => eps * (1.0 - k / (k + (i / k).exp())),
        }
    }

    fn describe(&self) -> String {
        match *self {
            Self::Off => "teacher forcing".into(),
            Self::Constant(e) => format!("scheduled sampling ε = {e}"),
            Self::Linear { eps, k } => format!("scheduled sampling ε 0 → {eps} over {k} steps"),
            Self::Sigmoid { eps, k } => {
                format!("scheduled sampling ε = {eps}·(1 − {k}/({k} + exp(step/{k})))")
            }
        }
    }
}

/// The network: form ii or form i.
enum Net {
    Feedback(Feedback<f32>),
    Rnn(Box<SequenceModel<f32>>),
}

/// A batch of sequences: values `[W + H, batch, M]` (scaled) and, per sequence and target,
/// the factor that puts a scaled difference in the data's units.
struct Seqs {
    z: Vec<f64>,
    scale: Vec<f64>,
    batch: usize,
}

/// Where the sequences come from.
enum Data {
    Sines {
        train: Box<NoisySines>,
        valid: Vec<Seqs>,
        test: Vec<Seqs>,
    },
    Csv {
        data: Box<ForecastData>,
        train: Vec<Window>,
        valid: Vec<Window>,
        test: Vec<Window>,
        order: Vec<Window>,
    },
}

fn sines_seqs(g: &mut NoisySines, n: usize) -> Result<Seqs> {
    let b = g.sample(n)?;
    Ok(Seqs {
        z: b.values,
        scale: vec![1.0; n],
        batch: n,
    })
}

/// `n` sequences of a split in batches of at most [`EVAL_BATCH`].
fn sines_set(len: usize, seed: u64, split: Split, n: usize) -> Result<Vec<Seqs>> {
    let mut g = NoisySines::new(len, seed, split)?;
    (0..n.div_ceil(EVAL_BATCH))
        .map(|i| sines_seqs(&mut g, EVAL_BATCH.min(n - i * EVAL_BATCH)))
        .collect()
}

/// The windows' W + H target rows, scaled with their series' training statistics.
fn csv_seqs(data: &ForecastData, windows: &[Window]) -> Seqs {
    let spec = &data.spec;
    let (w, h, m, nc) = (
        spec.window,
        spec.horizon,
        spec.targets.len(),
        spec.input_size(),
    );
    let (len, nb) = (w + h, windows.len());
    let mut z = vec![0.0; len * nb * m];
    let mut scale = vec![0.0; nb * m];
    for (b, win) in windows.iter().enumerate() {
        let series = &data.table.series[win.series];
        let scaling = &spec.scaling[win.series];
        for k in 0..m {
            let sc = scaling.columns[k];
            scale[b * m + k] = sc.std;
            for t in 0..len {
                let row = win.origin - w + t;
                z[(t * nb + b) * m + k] = (series.values[row * nc + k] - sc.mean) / sc.std;
            }
        }
    }
    Seqs {
        z,
        scale,
        batch: nb,
    }
}

/// Inputs and targets `[W + H − 1, batch, M]` of a batch for `net`: targets s_{t+1}; form ii
/// reads s_0 at step 0 and zeros after, form i reads s_t.
fn tensors(net: &Net, s: &Seqs, m: usize) -> Result<(Tensor<f32>, Tensor<f32>)> {
    let row = s.batch * m;
    let steps = s.z.len() / row - 1;
    let y: Vec<f32> = s.z[row..].iter().map(|&v| v as f32).collect();
    let x: Vec<f32> = match net {
        Net::Feedback(_) => (0..steps * row)
            .map(|i| if i < row { s.z[i] as f32 } else { 0.0 })
            .collect(),
        Net::Rnn(_) => s.z[..steps * row].iter().map(|&v| v as f32).collect(),
    };
    Ok((
        Tensor::new(x, &[steps, s.batch, m])?,
        Tensor::new(y, &[steps, s.batch, m])?,
    ))
}

/// Form ii run free for `horizon` steps after `history` (`[W, batch, M]`, scaled): step 0
/// reads s_0 as input, steps 1 … W − 1 read the true s_t fed back, every later step its own
/// previous output. The H outputs `[H, batch, M]` predict the H values after the history.
pub fn generate(net: &Feedback<f32>, history: &Tensor<f32>, horizon: usize) -> Result<Vec<f32>> {
    let (w, nb, m) = match *history.shape() {
        [w, b, m] if w >= 1 && m == net.config().output_size => (w, b, m),
        _ => bail!(
            "a history of shape {:?}: the network reads [window ≥ 1, batch, {}]",
            history.shape(),
            net.config().output_size
        ),
    };
    let row = nb * m;
    let hist = history.data();
    let zeros = vec![0.0f32; row];
    let mut stepper = net.stepper(nb)?;
    let mut out = Vec::with_capacity(horizon.saturating_mul(row));
    for t in 0..w + horizon - 1 {
        let x = if t == 0 { &hist[..row] } else { &zeros[..] };
        if (1..w).contains(&t) {
            stepper.set_previous(&hist[t * row..(t + 1) * row])?;
        }
        let y = stepper.step(net, x)?;
        if t + 1 >= w {
            out.extend_from_slice(y);
        }
    }
    Ok(out)
}

/// Form i run free: reads the history, then each output as its next input.
fn generate_rnn(
    model: &SequenceModel<f32>,
    history: &Tensor<f32>,
    horizon: usize,
) -> Result<Vec<f32>> {
    let row: usize = history.shape()[1..].iter().product();
    let w = history.shape()[0];
    let out = model.forward(ModelInput::Features(history.view()), Call::new())?;
    let mut state = out.state;
    let mut last = out.output.data()[(w - 1) * row..w * row].to_vec();
    let mut all = Vec::with_capacity(horizon.saturating_mul(row));
    all.extend_from_slice(&last);
    for _ in 1..horizon {
        let x = Tensor::new(last, &[1, history.shape()[1], history.shape()[2]])?;
        let o = model.forward(ModelInput::Features(x.view()), Call::new().state(&state))?;
        state = o.state;
        last = o.output.data().to_vec();
        all.extend_from_slice(&last);
    }
    Ok(all)
}

/// Sums of squared errors over the last H steps of sets of sequences.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    /// one step ahead, free running, naive (the last known value held): data units
    tf: f64,
    free: f64,
    naive: f64,
    /// free running, scaled values
    free_scaled: f64,
    count: usize,
}

/// What a set scored.
#[derive(Clone, Copy, Debug)]
struct Scores {
    rmse_tf: f64,
    rmse_free: f64,
    rmse_naive: f64,
    mse_free_scaled: f64,
    sequences: usize,
}

impl Sums {
    fn add(&mut self, net: &Net, s: &Seqs, w: usize, h: usize, m: usize) -> Result<()> {
        let row = s.batch * m;
        let (x, y) = tensors(net, s, m)?;
        let tf = match net {
            Net::Feedback(f) => f.forward(&x, Some(&y), Feed::TeacherForcing)?.0,
            Net::Rnn(r) => {
                r.forward(ModelInput::Features(x.view()), Call::new())?
                    .output
            }
        };
        let hist: Vec<f32> = s.z[..w * row].iter().map(|&v| v as f32).collect();
        let hist = Tensor::new(hist, &[w, s.batch, m])?;
        let free = match net {
            Net::Feedback(f) => generate(f, &hist, h)?,
            Net::Rnn(r) => generate_rnn(r, &hist, h)?,
        };
        let (tf, yd) = (tf.data(), y.data());
        for j in 0..h {
            // step W − 1 + j predicts s_{W + j}
            let step = w - 1 + j;
            for i in 0..row {
                let scale = s.scale[i];
                let truth = f64::from(yd[step * row + i]);
                let d_tf = f64::from(tf[step * row + i]) - truth;
                let d_free = f64::from(free[j * row + i]) - truth;
                let d_naive = s.z[(w - 1) * row + i] - truth;
                self.tf += (d_tf * scale).powi(2);
                self.free += (d_free * scale).powi(2);
                self.naive += (d_naive * scale).powi(2);
                self.free_scaled += d_free * d_free;
            }
        }
        self.count += h * row;
        Ok(())
    }

    fn scores(&self, sequences: usize) -> Scores {
        let n = self.count.max(1) as f64;
        Scores {
            rmse_tf: (self.tf / n).sqrt(),
            rmse_free: (self.free / n).sqrt(),
            rmse_naive: (self.naive / n).sqrt(),
            mse_free_scaled: self.free_scaled / n,
            sequences,
        }
    }
}

/// The next-value task.
struct NextValue {
    net: Net,
    data: Data,
    sampling: Sampling,
    plan: Plan,
    batch: usize,
    seed: u64,
    window: usize,
    horizon: usize,
    m: usize,
    /// the kind shown on the progress bar
    label: &'static str,
    /// `--cell feedback --checkpoint`: where the network goes after the test, and the
    /// metadata it carries
    save: Option<(std::path::PathBuf, Vec<(&'static str, String)>)>,
    figures: Figures,
}

impl NextValue {
    fn score(&self, part: Part) -> Result<Scores> {
        let (w, h, m) = (self.window, self.horizon, self.m);
        let mut sums = Sums::default();
        let mut n = 0;
        match &self.data {
            Data::Sines { valid, test, .. } => {
                for s in if part == Part::Valid { valid } else { test } {
                    sums.add(&self.net, s, w, h, m)?;
                    n += s.batch;
                }
            }
            Data::Csv {
                data, valid, test, ..
            } => {
                let set = if part == Part::Valid { valid } else { test };
                for chunk in set.chunks(EVAL_BATCH) {
                    sums.add(&self.net, &csv_seqs(data, chunk), w, h, m)?;
                    n += chunk.len();
                }
            }
        }
        Ok(sums.scores(n))
    }
}

impl Task for NextValue {
    fn kind(&self) -> &'static str {
        self.label
    }

    fn plan(&self) -> Plan {
        self.plan
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        match &mut self.net {
            Net::Feedback(f) => [f.params_mut(), &mut [], &mut []],
            Net::Rnn(r) => r.parts_mut(),
        }
    }

    /// The training windows of a CSV file in a permutation drawn from (seed, epoch).
    fn start_epoch(&mut self, epoch: usize) {
        if let Data::Csv { train, order, .. } = &mut self.data {
            order.clear();
            order.extend_from_slice(train);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                self.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ));
        }
    }

    fn has_batch(&self, position: usize) -> bool {
        match &self.data {
            Data::Sines { .. } => true,
            Data::Csv { train, .. } => position < train.len().div_ceil(self.batch),
        }
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let (seqs, position) = match &mut self.data {
            Data::Sines { train, .. } => (sines_seqs(train, self.batch)?, 0),
            Data::Csv { data, order, .. } => {
                let k = prog.position;
                let idx = &order[k * self.batch..((k + 1) * self.batch).min(order.len())];
                (csv_seqs(data, idx), k + 1)
            }
        };
        let (x, y) = tensors(&self.net, &seqs, self.m)?;
        let seed = dropout_seed(self.seed, prog.step);
        let z = match &self.net {
            Net::Feedback(f) => {
                let feed = match self.sampling.epsilon(prog.step) {
                    e if e > 0.0 => Feed::Scheduled { epsilon: e, seed },
                    _ => Feed::TeacherForcing,
                };
                let (z, tape) = f.forward(&x, Some(&y), feed)?;
                let grad = mse_loss_backward(&z, &y, Reduction::Mean, 1.0f32)?;
                f.backward(&tape, &grad, grads)?;
                z
            }
            Net::Rnn(r) => {
                let (out, tape) =
                    r.forward_train(ModelInput::Features(x.view()), Call::new().seed(seed))?;
                let grad = mse_loss_backward(&out.output, &y, Reduction::Mean, 1.0f32)?;
                r.backward(&tape, &grad, grads)?;
                out.output
            }
        };
        let loss = f64::from(mse_loss(&z, &y, Reduction::Mean)?);
        let n = seqs.batch;
        let epochs = matches!(self.plan, Plan::Epochs { .. });
        Ok(Batch {
            loss,
            // epochs sum over windows, steps take the mean
            loss_sum: if epochs { loss * n as f64 } else { loss },
            targets: n,
            tokens: n * (self.window + self.horizon - 1),
            position,
            nonfinite_inputs: seqs.z.iter().any(|v| !v.is_finite()),
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        format!("mse {:.5}", train_mse(self.plan, prog))
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let v = self.score(Part::Valid)?;
        let train = train_mse(self.plan, prog);
        self.figures = vec![
            ("loss", train),
            ("val_loss", v.mse_free_scaled),
            ("val_rmse_one_step", v.rmse_tf),
            ("val_rmse_free", v.rmse_free),
        ];
        let at_str = match self.plan {
            Plan::Steps { .. } => format!("step {:>6}", prog.step),
            Plan::Epochs { .. } => format!("epoch {:>3}", at.epoch),
        };
        let eps = match self.net {
            Net::Feedback(_) if self.sampling != Sampling::Off => {
                format!("  ε {:.3}", self.sampling.epsilon(prog.step))
            }
            _ => String::new(),
        };
        let line = format!(
            "{at_str}  train mse {train:.5}  |grad| {:.3}  valid rmse: one step {:.5}, free \
             running {:.5}{eps}  {:.1} s",
            at.grad_norm, v.rmse_tf, v.rmse_free, at.elapsed_s
        );
        Ok((v.mse_free_scaled, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let t = self.score(Part::Test)?;
        println!("done: {} steps in {elapsed_s:.1} s", prog.step);
        println!("{}", test_line(&t, self.window, self.horizon));
        self.figures = vec![
            ("loss", t.mse_free_scaled),
            ("rmse_one_step", t.rmse_tf),
            ("rmse_free", t.rmse_free),
            ("rmse_naive", t.rmse_naive),
        ];
        if let (Some((path, meta)), Net::Feedback(f)) = (&self.save, &self.net) {
            let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
            recur::io::save_feedback(f, path, &meta)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("saved to {}", path.display());
        }
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }
}

fn train_mse(plan: Plan, prog: &Progress) -> f64 {
    match plan {
        Plan::Steps { .. } => prog.loss_sum / prog.steps.max(1) as f64,
        Plan::Epochs { .. } => prog.loss_sum / prog.targets.max(1) as f64,
    }
}

fn test_line(t: &Scores, w: usize, h: usize) -> String {
    format!(
        "test: {} sequences, {h} steps after {w}: rmse one step ahead {:.5}, free running \
         {:.5}, naive (last value held) {:.5}, in data units",
        t.sequences, t.rmse_tf, t.rmse_free, t.rmse_naive
    )
}

/// The data of a run, its window and horizon checked.
fn data_of(args: &TrainArgs, s: &Settings) -> Result<(Data, usize, usize, usize)> {
    match s.source {
        Source::Sines => {
            if args.seq_len.is_some() {
                bail!(
                    "--seq-len: --task sines reads --window values, then runs free for \
                     --horizon steps"
                );
            }
            let (w, h) = (
                args.window.unwrap_or(SINES_WINDOW),
                args.horizon.unwrap_or(SINES_HORIZON),
            );
            let len = check_len(w, h)?;
            let data = Data::Sines {
                train: Box::new(NoisySines::new(len, s.seed, Split::Train)?),
                valid: sines_set(len, s.seed, Split::Valid, VALID_SEQUENCES)?,
                test: sines_set(len, s.seed, Split::Test, TEST_SEQUENCES)?,
            };
            Ok((data, w, h, 1))
        }
        Source::Forecast => {
            if args.features.is_some() {
                bail!(
                    "--features: next-value prediction runs free on the target column(s) alone \
                     (no future values of other columns); leave --features out"
                );
            }
            let mut a = args.clone();
            match a.window_scaling {
                None | Some(WindowScalingKind::None) => {
                    a.window_scaling = Some(WindowScalingKind::None);
                }
                Some(_) => bail!(
                    "--window-scaling: next-value prediction reads each series standardised on \
                     its training rows, without window levelling (leave the flag out)"
                ),
            }
            if let (Some(w), Some(h)) = (a.window, a.horizon) {
                check_len(w, h)?;
            }
            let data = super::forecast::load_data(&a, s)?;
            let (w, h) = (data.spec.window, data.spec.horizon);
            let m = data.spec.targets.len();
            let (train, valid, test) = (
                data.windows(Part::Train),
                data.windows(Part::Valid),
                data.windows(Part::Test),
            );
            ensure!(
                !train.is_empty() && !valid.is_empty() && !test.is_empty(),
                "--csv: every part needs a window of {w} + {h} rows"
            );
            let data = Data::Csv {
                data: Box::new(data),
                order: Vec::with_capacity(train.len()),
                train,
                valid,
                test,
            };
            Ok((data, w, h, m))
        }
        _ => bail!(
            "--cell {}: next-value prediction with an output at every step runs on --task \
             sines or --csv; this data has no output at every step to feed back",
            cell_name(s.cell)
        ),
    }
}

fn cell_name(c: Cell) -> String {
    clap::ValueEnum::to_possible_value(&c).map_or_else(String::new, |p| p.get_name().to_owned())
}

/// W + H, each at least 1 and the sum at most [`MAX_STEPS`].
fn check_len(w: usize, h: usize) -> Result<usize> {
    ensure!(
        w >= 1 && h >= 1,
        "--window and --horizon must be at least 1"
    );
    w.checked_add(h)
        .filter(|&l| l <= MAX_STEPS)
        .ok_or_else(|| anyhow!("--window + --horizon: at most {MAX_STEPS} steps a sequence"))
}

/// The network of a run.
fn build_net(args: &TrainArgs, s: &Settings, m: usize, len: usize) -> Result<Net> {
    match s.cell {
        Cell::Feedback => {
            if s.num_layers != 1 || s.bidirectional {
                bail!("--cell feedback: one layer read forward (no --num-layers, --bidirectional)");
            }
            let dropouts = [
                s.dropout,
                s.embedding_dropout,
                s.output_dropout,
                s.recurrent_dropout,
            ];
            if dropouts.iter().any(|&p| p > 0.0) || s.chrono_init > 0.0 {
                bail!("--cell feedback: dropout and --chrono-init are not offered");
            }
            let config = FeedbackConfig {
                input_size: m,
                hidden_size: s.hidden_size,
                output_size: m,
                activation: "tanh".into(),
            };
            let mut net = Feedback::new(config, s.seed).context("--cell feedback")?;
            if s.init_range > 0.0 {
                init_uniform(net.params_mut(), s.init_range, s.seed);
            }
            Ok(Net::Feedback(net))
        }
        Cell::Esn => bail!(
            "--cell esn: next-value prediction (--task sines, --next-value) is trained by \
             gradient; the echo state network is not offered on it"
        ),
        _ => {
            if s.bidirectional {
                bail!("--bidirectional: a next-value predictor reads left to right only");
            }
            if args.checkpoint.is_some() {
                bail!(
                    "--checkpoint: form i's next-value run is for comparison and writes no \
                     file; --cell feedback saves its network"
                );
            }
            let model =
                super::seq::build_model(s, m, m, OutputForm::EveryStep, len.saturating_sub(1))?;
            Ok(Net::Rnn(Box::new(model)))
        }
    }
}

/// Runs `recur train` on next-value prediction.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    if args.resume.is_some() {
        bail!("--resume is not offered for next-value prediction (--cell feedback, --task sines)");
    }
    let (data, w, h, m) = data_of(args, s)?;
    let net = build_net(args, s, m, w + h)?;
    let (plan, what, label) = match &data {
        Data::Sines { .. } => (
            Plan::Steps {
                steps: s.steps.unwrap_or(5_000),
                eval_every: s.eval_every,
            },
            format!(
                "noisy sines (P = {}, {}; noise ±{})",
                NoisySines::PERIOD_1,
                NoisySines::PERIOD_2,
                NoisySines::NOISE
            ),
            "sines",
        ),
        Data::Csv { data, train, .. } => (
            Plan::epochs(s, train.len().div_ceil(s.batch_size)),
            format!(
                "{} of {} ({} series, scaled on their training rows)",
                data.spec.targets.join(","),
                args.csv
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                data.table.series.len()
            ),
            "next-value",
        ),
    };
    let (form, params) = match &net {
        Net::Feedback(f) => (
            format!(
                "output-to-hidden network (form ii), {} tanh units",
                s.hidden_size
            ),
            f.params().len(),
        ),
        Net::Rnn(r) => (
            format!(
                "{} {} × {} layer(s) with an output every step (form i)",
                s.cell.kind().name(),
                s.hidden_size,
                s.num_layers
            ),
            r.param_len(),
        ),
    };
    println!(
        "recur train: next-value prediction of {what}; {form}, {params} parameters, trained \
         with {}; scored on the {h} steps after {w} values",
        match net {
            Net::Feedback(_) => s.sampling.describe(),
            Net::Rnn(_) => "teacher forcing".into(),
        }
    );
    println!(
        "  batches of {}, {}, clip {}, seed {}",
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed
    );
    let save = match (&args.checkpoint, &net) {
        (Some(path), Net::Feedback(_)) => {
            let mut run = args.clone();
            run.checkpoint = None;
            let mut meta = vec![(RUN_KEY, serde_json::to_string(&run)?)];
            if let Data::Csv { data, .. } = &data {
                meta.push((SPEC_KEY, serde_json::to_string(&data.spec)?));
            }
            Some((path.clone(), meta))
        }
        _ => None,
    };
    let task = NextValue {
        net,
        data,
        sampling: s.sampling,
        plan,
        batch: s.batch_size,
        seed: s.seed,
        window: w,
        horizon: h,
        m,
        label,
        save,
        figures: Figures::new(),
    };
    let start = Instant::now();
    let v = task.score(Part::Valid)?;
    println!(
        "untrained: valid rmse one step {:.5}, free running {:.5}  {:.1} s",
        v.rmse_tf,
        v.rmse_free,
        start.elapsed().as_secs_f64()
    );
    Trainer::new(task, s, args)?.run()
}

/// Whether `path` is an output-to-hidden network file (a missing, unreadable or other file
/// is left to the other readers' errors).
pub fn is_feedback_file(path: &Path) -> bool {
    match recur::io::load_feedback::<f32>(path) {
        Ok(_) => true,
        Err(recur::Error::Io { .. } | recur::Error::Format { .. }) => false,
        Err(recur::Error::Metadata { key, .. }) => key != "recur.format",
        Err(_) => true,
    }
}

/// A saved network, the settings of its run and its forecast spec (`--csv` runs).
pub struct Saved {
    pub net: Feedback<f32>,
    pub args: TrainArgs,
    pub spec: Option<ForecastSpec>,
}

/// Reads a file written by `recur train --cell feedback --checkpoint`.
pub fn load(path: &Path) -> Result<Saved> {
    let name = path.display();
    let (net, meta) = recur::io::load_feedback::<f32>(path)?;
    let run = meta
        .get(RUN_KEY)
        .with_context(|| format!("{name}: metadata `{RUN_KEY}` is missing"))?;
    let args: TrainArgs =
        serde_json::from_str(run).with_context(|| format!("{name}: metadata `{RUN_KEY}`"))?;
    let spec = meta
        .get(SPEC_KEY)
        .map(|j| serde_json::from_str::<ForecastSpec>(j))
        .transpose()
        .with_context(|| format!("{name}: metadata `{SPEC_KEY}`"))?;
    if let Some(spec) = &spec {
        spec.validate()
            .with_context(|| format!("{name}: metadata `{SPEC_KEY}`"))?;
        ensure!(
            spec.targets.len() == net.config().output_size,
            "{name}: the spec forecasts {} target(s), the network outputs {}",
            spec.targets.len(),
            net.config().output_size
        );
    }
    Ok(Saved { net, args, spec })
}

/// `recur eval` of a saved network: its run's test set (the generated one, or the CSV file's
/// test windows read again), scored one step ahead and free running.
pub fn eval_command(path: &Path) -> Result<()> {
    let saved = load(path)?;
    let s = Settings::resolve(&saved.args)?;
    let (data, w, h, m) = data_of(&saved.args, &s)?;
    if let (Data::Csv { data, .. }, Some(spec)) = (&data, &saved.spec)
        && data.spec.scaling != spec.scaling
    {
        bail!(
            "{}: the CSV file's training rows have changed since the network was trained (its \
             scaling differs)",
            path.display()
        );
    }
    ensure!(
        m == saved.net.config().output_size,
        "{}: the data has {m} target(s), the network {}",
        path.display(),
        saved.net.config().output_size
    );
    let task = NextValue {
        net: Net::Feedback(saved.net),
        data,
        sampling: Sampling::Off,
        plan: Plan::Steps {
            steps: 0,
            eval_every: 1,
        },
        batch: 1,
        seed: s.seed,
        window: w,
        horizon: h,
        m,
        label: "",
        save: None,
        figures: Figures::new(),
    };
    println!("{}", test_line(&task.score(Part::Test)?, w, h));
    Ok(())
}
