//! Language models: embedding → recurrent stack → softmax over the vocabulary at every step,
//! trained by truncated BPTT over B contiguous streams with the state carried across chunks
//! (Zaremba et al. 2014; PyTorch's word_language_model).
//!
//! One training step on a chunk of `seq_len` steps:
//! ```text
//! z, state = model(input ids, state)         z: [seq_len, batch, V]; state carried, cut from the graph
//! L = Σ_t mean_b ℓ(z[t, b], target[t, b])    --loss-reduction sum-over-time (Zaremba)
//! L = mean_{t,b} ℓ(z[t, b], target[t, b])    --loss-reduction mean
//! g = ∇L;  n = ‖g‖ (logged);  g ← g · min(1, clip / n);  θ ← optimizer(θ, g, lr(epoch, step))
//! ```
//! Perplexity is exp of the mean loss per target token, whatever the reduction.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use recur::data::{Corpus, SplitFractions, TokenLevel, Vocabulary, batchify};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig,
    bits_per_character, perplexity,
};
use recur::optim::{clip_grad_norm, clip_grad_value};
use recur::{State, Tensor};
use serde::{Deserialize, Serialize};

use super::args::{Level, LossReduction, TrainArgs};
use super::checkpoint::{Checkpoint, Writer, best_path};
use super::optim::{Opt, Schedule};
use super::report::{Reporter, StepRecord};
use super::settings::Settings;
use super::xent::{xent_in_place, xent_loss};
use super::{INTERRUPTED, dropout_seed, init_uniform, raise_forget_bias};

impl Level {
    pub fn token_level(self) -> TokenLevel {
        match self {
            Level::Char => TokenLevel::Char,
            Level::Word => TokenLevel::Word,
        }
    }
}

/// Where a run is: what a checkpoint needs besides weights to continue exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// the epoch under way (1-based)
    pub epoch: usize,
    /// steps done over the whole run
    pub step: usize,
    /// the stream step the next chunk of this epoch starts at
    pub position: usize,
    /// sums over the epoch so far: loss over targets, targets, gradient norms, steps
    pub loss_sum: f64,
    pub targets: usize,
    pub norm_sum: f64,
    pub steps: usize,
    /// seconds of training before this process
    pub elapsed_s: f64,
    pub best_valid: Option<f64>,
    pub plateau_decays: u32,
    pub plateau_best: Option<f64>,
    pub bad_epochs: usize,
    pub opt_steps: [u64; 3],
}

/// The model of a language model over `vocab` tokens.
pub fn build_model(s: &Settings, vocab: usize) -> Result<SequenceModel<f32>> {
    if s.embedding_dropout > 0.0 || s.output_dropout > 0.0 {
        bail!("--embedding-dropout / --output-dropout are not available in this build yet");
    }
    if s.recurrent_dropout > 0.0 {
        bail!("--recurrent-dropout is not available in this build yet");
    }
    if s.tied {
        bail!("--tied is not available in this build yet");
    }
    let config = SequenceModelConfig {
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: vocab,
            embedding_dim: s.embedding_size,
            padding_idx: None,
        }),
        rnn: s.rnn_config(s.embedding_size),
        output: OutputForm::EveryStep,
        out_features: vocab,
        ..Default::default()
    };
    let mut model = SequenceModel::new(config, s.seed).context("model")?;
    if s.init_range > 0.0 {
        let mut p = model.params();
        init_uniform(&mut p, s.init_range, s.seed);
        model.set_params(&p)?;
    }
    if s.forget_bias != 0.0 {
        raise_forget_bias(&mut model, s)?;
    }
    Ok(model)
}

/// The corpus the settings name.
fn load_corpus(a: &TrainArgs, s: &Settings) -> Result<Corpus> {
    let level = s.level.token_level();
    let corpus = if let Some(text) = &a.text {
        let [train, valid, test] = s.split;
        Corpus::from_split(text, SplitFractions { train, valid, test }, level)?
    } else {
        match (&a.train, &a.valid, &a.test) {
            (Some(tr), Some(va), Some(te)) => Corpus::from_files(tr, va, te, level)?,
            _ => bail!("--train, --valid and --test go together"),
        }
    };
    Ok(corpus)
}

/// The training data source named for messages.
fn data_name(a: &TrainArgs) -> String {
    match (&a.text, &a.train) {
        (Some(t), _) => t.display().to_string(),
        (None, Some(t)) => t.display().to_string(),
        _ => String::new(),
    }
}

/// A language model's loss over a whole part: (mean loss per token, tokens).
pub fn evaluate(
    model: &SequenceModel<f32>,
    ids: &[usize],
    batch: usize,
    bptt: usize,
    part: &str,
) -> Result<(f64, usize)> {
    let batch = batch.min(ids.len() / 2).max(1);
    let streams = batchify(ids, batch).with_context(|| format!("{part} part"))?;
    let vocab = model.config().out_features;
    let mut state: Option<State<f32>> = None;
    let (mut loss, mut count) = (0.0f64, 0usize);
    for chunk in streams.chunks(bptt)? {
        let out = model.forward(
            ModelInput::Ids {
                ids: chunk.input,
                shape: [chunk.seq_len, batch],
            },
            state.as_ref(),
            None,
        )?;
        let sums = xent_loss(out.output.data(), chunk.target, vocab)?;
        loss += sums.loss;
        count += chunk.target.len();
        state = Some(out.state);
    }
    Ok((loss / count.max(1) as f64, count))
}

/// The figure shown beside a loss: perplexity for words, bits per character for characters.
pub fn figure(level: Level, mean_loss: f64) -> String {
    match level {
        Level::Word => format!("ppl {:.2}", perplexity(mean_loss)),
        Level::Char => format!(
            "bpc {:.4} ppl {:.3}",
            bits_per_character(mean_loss),
            perplexity(mean_loss)
        ),
    }
}

/// Runs `recur train` on a text.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let corpus = load_corpus(args, s)?;
    let vocab = &corpus.vocab;
    if let Some(ck) = &resume {
        let saved = Vocabulary::from_text(ck.meta("vocab")?, &ck.file)?;
        if saved.tokens() != vocab.tokens() {
            bail!(
                "{}: its vocabulary ({} tokens) is not the one of {} ({} tokens)",
                ck.file,
                saved.len(),
                data_name(args),
                vocab.len()
            );
        }
    }
    let v = vocab.len();
    let mut model = build_model(s, v)?;
    let lens = model.parts().map(<[f32]>::len);
    let mut opts = [
        Opt::new(&s.opt, lens[0])?,
        Opt::new(&s.opt, lens[1])?,
        Opt::new(&s.opt, lens[2])?,
    ];
    let train = batchify(&corpus.train, s.batch_size)
        .with_context(|| format!("{}: the training part", data_name(args)))?;
    let n_chunks = train.num_chunks(s.bptt);
    let total_steps = match (s.epochs, s.steps) {
        (Some(e), _) => e * n_chunks,
        (None, Some(st)) => st,
        (None, None) => unreachable!("settings give epochs or steps"),
    };
    let epochs = s.epochs.unwrap_or_else(|| total_steps.div_ceil(n_chunks));
    let mut sched = Schedule {
        kind: s.schedule,
        base: s.opt.lr(),
        decay_after: s.decay_after,
        factor: s.decay_factor,
        warmup_steps: s.warmup_steps,
        patience: s.patience,
        min_lr: s.min_lr,
        total_steps,
        plateau_decays: 0,
        best: f64::INFINITY,
        bad_epochs: 0,
    };
    let mut prog = Progress {
        epoch: 1,
        ..Default::default()
    };
    let mut state: Option<State<f32>> = None;
    if let Some(ck) = &resume {
        prog = restore(ck, &mut model, &mut opts, &mut state)?;
        sched.plateau_decays = prog.plateau_decays;
        sched.best = prog.plateau_best.unwrap_or(f64::INFINITY);
        sched.bad_epochs = prog.bad_epochs;
    }

    let n_params = model.param_len();
    println!(
        "recur train: {} level, {} tokens in the vocabulary; train {} / valid {} / test {} tokens",
        match s.level {
            Level::Char => "character",
            Level::Word => "word",
        },
        v,
        corpus.train.len(),
        corpus.valid.len(),
        corpus.test.len()
    );
    println!(
        "  model: embedding {} → {} {} × {} layer(s) → {} outputs; {} parameters",
        s.embedding_size,
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        v,
        n_params
    );
    println!(
        "  {} epoch(s) of {} steps (batch {}, bptt {}); {}; schedule {:?}; clip norm {}; loss {}; seed {}",
        epochs,
        n_chunks,
        s.batch_size,
        s.bptt,
        s.opt.describe(),
        s.schedule,
        s.clip_norm,
        match s.loss_reduction {
            LossReduction::Mean => "mean",
            LossReduction::SumOverTime => "sum over time",
        },
        s.seed
    );
    if let Some(ck) = &resume {
        println!(
            "  resumed from {} at epoch {}, step {}",
            ck.file, prog.epoch, prog.step
        );
    }

    let mut reporter = Reporter::new(args.log.as_deref(), s.quiet, resume.is_some())?;
    let mut grads = vec![0.0f32; n_params];
    let run_start = Instant::now();
    let elapsed = |p: &Progress| p.elapsed_s + run_start.elapsed().as_secs_f64();
    let mut stopped = false;
    let valid_batch = s.eval_batch_size;
    let mut last_valid: Option<f64> = None;
    while prog.epoch <= epochs && prog.step < total_steps {
        let epoch = prog.epoch;
        let epoch_start = Instant::now();
        let epoch_tokens_before = prog.targets;
        reporter.start(
            format!("epoch {epoch}/{epochs}"),
            n_chunks as u64,
            (prog.position / s.bptt) as u64,
        );
        for chunk in train.chunks_from(prog.position, s.bptt)? {
            if prog.step >= total_steps {
                break;
            }
            prog.step += 1;
            let lr = sched.lr(epoch, prog.step);
            for o in &mut opts {
                o.set_lr(lr)?;
            }
            let shape = [chunk.seq_len, s.batch_size];
            let (mut out, tape) = model.forward_train(
                ModelInput::Ids {
                    ids: chunk.input,
                    shape,
                },
                state.as_ref(),
                None,
                dropout_seed(s.seed, prog.step),
            )?;
            let n = chunk.target.len();
            // dL/dℓ for each target: 1/(seq_len·batch) (mean) or 1/batch (sum over time)
            let dl = match s.loss_reduction {
                LossReduction::Mean => 1.0 / n as f32,
                LossReduction::SumOverTime => 1.0 / s.batch_size as f32,
            };
            let sums = xent_in_place(out.output.data_mut(), chunk.target, v, dl)?;
            grads.fill(0.0);
            model.backward(&tape, &out.output, &mut grads)?;
            drop(tape);
            let norm = clip(&mut grads, s.clip_norm, s.clip_value)?;
            let mean_loss = sums.loss / n as f64;
            if !mean_loss.is_finite() || !norm.is_finite() {
                bail!(
                    "training diverged at step {} (loss {mean_loss}, gradient norm {norm}); try a \
                     smaller --lr or a --clip-norm",
                    prog.step
                );
            }
            {
                let parts = model.parts_mut();
                let mut rest = &grads[..];
                for (o, p) in opts.iter_mut().zip(parts) {
                    let (g, tail) = rest.split_at(p.len());
                    o.step(p, g)?;
                    rest = tail;
                }
            }
            state = Some(out.state);
            prog.position = chunk.start + chunk.seq_len;
            prog.loss_sum += sums.loss;
            prog.targets += n;
            prog.norm_sum += norm;
            prog.steps += 1;
            let secs = epoch_start.elapsed().as_secs_f64();
            let rec = StepRecord {
                step: prog.step,
                epoch,
                loss: mean_loss,
                ppl: Some(perplexity(mean_loss)),
                acc: None,
                lr,
                grad_norm: norm,
                tokens_per_s: (prog.targets - epoch_tokens_before) as f64 / secs.max(1e-9),
                elapsed_s: elapsed(&prog),
            };
            reporter.step(&rec, &figure(s.level, prog.loss_sum / prog.targets as f64))?;
            let interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if let Some(path) = &args.checkpoint
                && (interrupted || (s.save_every > 0 && prog.step.is_multiple_of(s.save_every)))
            {
                prog.elapsed_s = elapsed(&prog);
                save(
                    path,
                    args,
                    vocab,
                    &model,
                    &opts,
                    state.as_ref(),
                    &prog,
                    &sched,
                )?;
                prog.elapsed_s -= run_start.elapsed().as_secs_f64();
            }
            if interrupted {
                stopped = true;
                break;
            }
        }
        if stopped {
            reporter.println(&format!(
                "interrupted at epoch {epoch}, step {}{}",
                prog.step,
                args.checkpoint
                    .as_ref()
                    .map(|p| format!("; checkpoint saved to {}", p.display()))
                    .unwrap_or_default()
            ));
            break;
        }
        // The epoch (or the run's last steps) is done: validate, report, save.
        let train_loss = prog.loss_sum / prog.targets.max(1) as f64;
        let (valid_loss, _) = evaluate(&model, &corpus.valid, valid_batch, s.bptt, "validation")?;
        last_valid = Some(valid_loss);
        sched.observe(valid_loss);
        let secs = epoch_start.elapsed().as_secs_f64();
        reporter.println(&format!(
            "epoch {epoch:>3}  lr {:.6}  train loss {train_loss:.4} {}  valid loss {valid_loss:.4} {}  |grad| {:.3}  {:.0} tok/s  {:.1} s",
            sched.lr(epoch, prog.step),
            figure(s.level, train_loss),
            figure(s.level, valid_loss),
            prog.norm_sum / prog.steps.max(1) as f64,
            (prog.targets - epoch_tokens_before) as f64 / secs.max(1e-9),
            elapsed(&prog)
        ));
        let improved = prog.best_valid.is_none_or(|b| valid_loss < b);
        if improved {
            prog.best_valid = Some(valid_loss);
        }
        prog.epoch += 1;
        prog.position = 0;
        prog.loss_sum = 0.0;
        prog.targets = 0;
        prog.norm_sum = 0.0;
        prog.steps = 0;
        state = None;
        reporter.flush()?;
        if let Some(path) = &args.checkpoint {
            prog.elapsed_s = elapsed(&prog);
            save(path, args, vocab, &model, &opts, None, &prog, &sched)?;
            if improved {
                save(
                    &best_path(path),
                    args,
                    vocab,
                    &model,
                    &opts,
                    None,
                    &prog,
                    &sched,
                )?;
            }
            prog.elapsed_s -= run_start.elapsed().as_secs_f64();
        }
    }
    reporter.finish()?;
    let _ = last_valid;
    let (test_loss, test_tokens) = evaluate(&model, &corpus.test, valid_batch, s.bptt, "test")?;
    println!(
        "test: loss {test_loss:.4} {} over {test_tokens} tokens; {} steps in {:.1} s",
        figure(s.level, test_loss),
        prog.step,
        elapsed(&prog)
    );
    Ok(())
}

/// Clips as asked and returns the global norm before clipping.
pub fn clip(grads: &mut [f32], norm: f64, value: f64) -> Result<f64> {
    let n = if norm > 0.0 {
        clip_grad_norm(grads, norm)?
    } else {
        grads
            .iter()
            .map(|&g| f64::from(g) * f64::from(g))
            .sum::<f64>()
            .sqrt()
    };
    if value > 0.0 {
        clip_grad_value(grads, value)?;
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
fn save(
    path: &Path,
    args: &TrainArgs,
    vocab: &Vocabulary,
    model: &SequenceModel<f32>,
    opts: &[Opt; 3],
    state: Option<&State<f32>>,
    prog: &Progress,
    sched: &Schedule,
) -> Result<()> {
    let mut w = Writer::default();
    write_model(&mut w, model);
    let mut prog = prog.clone();
    for (i, o) in opts.iter().enumerate() {
        let (bufs, count) = o.state();
        prog.opt_steps[i] = count;
        for (name, buf) in bufs {
            w.tensor(format!("optim.{i}.{name}"), &[buf.len()], buf);
        }
    }
    if let Some(st) = state {
        w.tensor("state.h", st.h.shape(), st.h.data());
        if let Some(c) = &st.c {
            w.tensor("state.c", c.shape(), c.data());
        }
    }
    prog.plateau_decays = sched.plateau_decays;
    prog.plateau_best = sched.best.is_finite().then_some(sched.best);
    prog.bad_epochs = sched.bad_epochs;
    w.meta("kind", "text");
    w.meta("args", serde_json::to_string(args)?);
    w.meta("vocab", vocab.to_text());
    w.meta("progress", serde_json::to_string(&prog)?);
    w.save(path)
}

/// Writes every parameter tensor of `model` as `model.<name>`.
pub fn write_model(w: &mut Writer, model: &SequenceModel<f32>) {
    let flat = model.params();
    for p in model.param_layout() {
        w.tensor(
            format!("model.{}", p.name),
            &p.shape,
            &flat[p.offset..p.offset + p.len],
        );
    }
}

/// Reads every parameter tensor of `model` from `ck`.
pub fn read_model(ck: &Checkpoint, model: &mut SequenceModel<f32>) -> Result<()> {
    let mut flat = model.params();
    for p in model.param_layout() {
        ck.read_into(
            &format!("model.{}", p.name),
            &p.shape,
            &mut flat[p.offset..p.offset + p.len],
        )?;
    }
    let expected: Vec<String> = model
        .param_layout()
        .iter()
        .map(|p| format!("model.{}", p.name))
        .collect();
    if let Some(extra) = ck
        .names_with("model.")
        .into_iter()
        .find(|n| !expected.iter().any(|e| e == n))
    {
        bail!(
            "{}: tensor `{extra}` has no place in this run's model (a checkpoint of another model?)",
            ck.file
        );
    }
    model.set_params(&flat)?;
    Ok(())
}

fn restore(
    ck: &Checkpoint,
    model: &mut SequenceModel<f32>,
    opts: &mut [Opt; 3],
    state: &mut Option<State<f32>>,
) -> Result<Progress> {
    if ck.meta("kind")? != "text" {
        bail!("{}: not a language model's checkpoint", ck.file);
    }
    read_model(ck, model)?;
    let prog: Progress = ck.meta_json("progress")?;
    for (i, o) in opts.iter_mut().enumerate() {
        o.restore(prog.opt_steps[i], |name, buf| {
            let key = format!("optim.{i}.{name}");
            if !ck.has(&key) {
                // a buffer the optimizer makes at its first step (SGD momentum)
                return Ok(());
            }
            ck.read_into(&key, &[buf.len()], buf)
        })?;
    }
    *state = match ck.tensor("state.h") {
        Some((shape, h)) => Some(State {
            h: Tensor::new(h.to_vec(), shape)?,
            c: ck
                .tensor("state.c")
                .map(|(s, c)| Tensor::new(c.to_vec(), s))
                .transpose()?,
        }),
        None => None,
    };
    Ok(prog)
}
