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

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::data::{Corpus, SplitFractions, TokenLevel, Vocabulary, batchify};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
    bits_per_character, cross_entropy_in_place, cross_entropy_sums, perplexity,
};
#[cfg(test)]
use recur::optim::clip_grad_norm;
use recur::optim::clip_grad_value;
use recur::{Call, State};

use super::args::{Level, LossReduction, TrainArgs};
use super::checkpoint::{Checkpoint, best_path};
use super::core::{Core, Progress, check_model};
use super::optim::describe;
use super::report::{Reporter, StepRecord};
use super::settings::Settings;
use super::{INTERRUPTED, dropout_seed, initialise};

impl Level {
    pub fn token_level(self) -> TokenLevel {
        match self {
            Level::Char => TokenLevel::Char,
            Level::Word => TokenLevel::Word,
        }
    }
}

/// The model of a language model over `vocab` tokens.
pub fn build_model(s: &Settings, vocab: usize) -> Result<SequenceModel<f32>> {
    let config = SequenceModelConfig {
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: vocab,
            embedding_dim: s.embedding_size,
            padding_idx: None,
        }),
        rnn: s.rnn_config(s.embedding_size),
        output: OutputForm::EveryStep,
        out_features: vocab,
        input_dropout: s.embedding_dropout,
        output_dropout: s.output_dropout,
        tie_weights: if s.tied {
            TieWeights::Tied
        } else {
            TieWeights::Untied
        },
        ..Default::default()
    };
    let mut model = SequenceModel::new(config, s.seed).context("model")?;
    initialise(&mut model, s)?;
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

/// How errors name a part: its file, or the part of the one text.
fn part_name(a: &TrainArgs, part: &str) -> String {
    let file = match part {
        "validation" => a.valid.as_ref(),
        _ => a.test.as_ref(),
    };
    match (file, &a.text) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(t)) => format!("{} ({part} part)", t.display()),
        (None, None) => format!("the {part} part"),
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
    let streams = batchify(ids, batch).with_context(|| part.to_string())?;
    let mut state: Option<State<f32>> = None;
    let (mut loss, mut count) = (0.0f64, 0usize);
    for chunk in streams.chunks(bptt)? {
        let out = model.forward(
            ModelInput::Ids {
                ids: chunk.input,
                shape: [chunk.seq_len, batch],
            },
            Call::new().state(state.as_ref()),
        )?;
        let sums = cross_entropy_sums(&out.output, chunk.target)?;
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
    let model = build_model(s, v)?;
    let train = batchify(&corpus.train, s.batch_size)
        .with_context(|| format!("{}: the training part", data_name(args)))?;
    let n_chunks = train.num_chunks(s.bptt);
    let (epochs, total_steps) = match (s.epochs, s.steps) {
        (Some(e), _) => (e, e * n_chunks),
        (None, Some(st)) => (st.div_ceil(n_chunks), st),
        (None, None) => unreachable!("settings give epochs or steps"),
    };
    let mut core = Core::new(model, s, epochs)?;
    let mut prog = Progress::default();
    let mut state: Option<State<f32>> = None;
    if let Some(ck) = &resume {
        (prog, state) = core.restore(ck, "text")?;
    }
    let vocab_meta = [("vocab", vocab.to_text())];
    let n_params = core.model.param_len();
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
        describe(&s.opt),
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
            "  resumed from {} after {} finished epoch(s) and {} steps",
            ck.file, prog.epoch, prog.step
        );
    }

    let mut reporter = Reporter::new(args.log.as_deref(), s.quiet, resume.is_some())?;
    let run_start = Instant::now();
    let elapsed = |p: &Progress| p.elapsed_s + run_start.elapsed().as_secs_f64();
    let mut stopped = false;
    let valid_batch = s.eval_batch_size;
    let mut last_lr = s.opt.lr();
    while prog.epoch < epochs && prog.step < total_steps {
        let epoch = prog.epoch + 1;
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
            let lr = core.set_lr(&prog)?;
            last_lr = lr;
            prog.step += 1;
            let shape = [chunk.seq_len, s.batch_size];
            let (mut out, tape) = core.model.forward_train(
                ModelInput::Ids {
                    ids: chunk.input,
                    shape,
                },
                Call {
                    state: state.as_ref(),
                    seed: Some(dropout_seed(s.seed, prog.step)),
                    ..Call::new()
                },
            )?;
            let n = chunk.target.len();
            // dL/dℓ for each target: 1/(seq_len·batch) (mean) or 1/batch (sum over time)
            let dl = match s.loss_reduction {
                LossReduction::Mean => 1.0 / n as f32,
                LossReduction::SumOverTime => 1.0 / s.batch_size as f32,
            };
            let sums = cross_entropy_in_place(&mut out.output, chunk.target, dl)?;
            core.zero_grads();
            core.model.backward(&tape, &out.output, &mut core.grads)?;
            drop(tape);
            let norm = core.update(s)?;
            let mean_loss = sums.loss / n as f64;
            if !mean_loss.is_finite() || !norm.is_finite() {
                bail!(
                    "training diverged at step {} (loss {mean_loss}, gradient norm {norm}); try a \
                     smaller --lr or a --clip-norm",
                    prog.step
                );
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
            let running = prog.loss_sum / prog.targets as f64;
            reporter.step(
                &rec,
                &format!("loss {running:.4} {}", figure(s.level, running)),
            )?;
            let interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if let Some(path) = &args.checkpoint
                && (interrupted || (s.save_every > 0 && prog.step.is_multiple_of(s.save_every)))
            {
                let mut p = prog.clone();
                p.elapsed_s = elapsed(&prog);
                core.save(path, "text", args, &vocab_meta, state.as_ref(), &p)?;
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
        // The epoch is done, or --steps ended the run inside it: validate, report, save.
        let partial = prog.position < train.n_steps() - 1;
        let train_loss = prog.loss_sum / prog.targets.max(1) as f64;
        let (valid_loss, _) = evaluate(
            &core.model,
            &corpus.valid,
            valid_batch,
            s.bptt,
            &part_name(args, "validation"),
        )?;
        let secs = epoch_start.elapsed().as_secs_f64();
        reporter.println(&format!(
            "epoch {epoch:>3}{}  lr {last_lr:.6}  train loss {train_loss:.4} {}  valid loss \
             {valid_loss:.4} {}  |grad| {:.3}  {:.0} tok/s  {:.1} s",
            if partial { " (part)" } else { "" },
            figure(s.level, train_loss),
            figure(s.level, valid_loss),
            prog.norm_sum / prog.steps.max(1) as f64,
            (prog.targets - epoch_tokens_before) as f64 / secs.max(1e-9),
            elapsed(&prog)
        ));
        if partial {
            // a later `--resume` with more steps or epochs continues inside this epoch
            if let Some(path) = &args.checkpoint {
                let mut p = prog.clone();
                p.elapsed_s = elapsed(&prog);
                core.save(path, "text", args, &vocab_meta, state.as_ref(), &p)?;
            }
            break;
        }
        core.sched.on_epoch_end(valid_loss);
        let improved = prog.best_valid.is_none_or(|b| valid_loss < b);
        if improved {
            prog.best_valid = Some(valid_loss);
        }
        prog.next_epoch();
        state = None;
        reporter.flush()?;
        if let Some(path) = &args.checkpoint {
            let mut p = prog.clone();
            p.elapsed_s = elapsed(&prog);
            core.save(path, "text", args, &vocab_meta, None, &p)?;
            if improved {
                core.save(&best_path(path), "text", args, &vocab_meta, None, &p)?;
            }
        }
    }
    reporter.finish()?;
    let (test_loss, test_tokens) = evaluate(
        &core.model,
        &corpus.test,
        valid_batch,
        s.bptt,
        &part_name(args, "test"),
    )?;
    println!(
        "test: loss {test_loss:.4} {} over {test_tokens} tokens; {} steps in {:.1} s",
        figure(s.level, test_loss),
        prog.step,
        elapsed(&prog)
    );
    Ok(())
}

/// Values per parallel task of [`clip`].
const CLIP_CHUNK: usize = 1 << 16;

/// Clips as asked and returns the global norm before clipping: the library's
/// [`recur::optim::clip_grad_norm`] (PyTorch's formula, the scale `max / (norm + 1e-6)`
/// applied when below 1), with the norm summed and the scaling done on every core.
pub fn clip(grads: &mut [f32], norm: f64, value: f64) -> Result<f64> {
    use rayon::prelude::*;
    let n = grads
        .par_chunks(CLIP_CHUNK)
        .map(|c| c.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let k = norm / (n + CLIP_NORM_EPS);
        if k < 1.0 || k.is_nan() {
            let k = k as f32;
            grads
                .par_chunks_mut(CLIP_CHUNK)
                .for_each(|c| c.iter_mut().for_each(|g| *g *= k));
        }
    }
    if value > 0.0 {
        clip_grad_value(grads, value)?;
    }
    Ok(n)
}

/// The ε of PyTorch's `clip_grad_norm_` (and the library's).
const CLIP_NORM_EPS: f64 = 1e-6;

/// The model, settings and vocabulary of a language model's checkpoint.
pub fn load_checkpoint(ck: &Checkpoint) -> Result<(SequenceModel<f32>, Settings, Vocabulary)> {
    if ck.meta("kind")? != "text" {
        bail!("{}: not a language model's checkpoint", ck.file);
    }
    let args = ck.args()?;
    let s = Settings::resolve(&args)
        .with_context(|| format!("{}: metadata `recur.run_config`", ck.file))?;
    let vocab = Vocabulary::from_text(ck.meta("vocab")?, &ck.file)?;
    check_model(ck, &build_model(&s, vocab.len())?)?;
    Ok((ck.inner.model.clone(), s, vocab))
}

/// `recur eval` of a language model: on `file`, or on the test part it was trained with.
pub fn eval_command(ck: &Checkpoint, file: Option<&PathBuf>, batch: Option<usize>) -> Result<()> {
    let (model, s, vocab) = load_checkpoint(ck)?;
    let (name, ids) = match file {
        Some(path) => {
            let text = super::read_text(path)?;
            (path.display().to_string(), vocab.encode(&text))
        }
        None => {
            let args = ck.args()?;
            let corpus = load_corpus(&args, &s)?;
            ("the test part".to_string(), corpus.test)
        }
    };
    if ids.len() < 2 {
        bail!("{name}: {} token(s), too few to evaluate on", ids.len());
    }
    let unk = ids.iter().filter(|&&i| i == vocab.unk_id()).count();
    let (loss, count) = evaluate(&model, &ids, batch.unwrap_or(10), s.bptt, &name)?;
    println!(
        "{name}: loss {loss:.4} {} over {count} tokens ({unk} unknown, counted as {})",
        figure(s.level, loss),
        recur::data::UNK
    );
    Ok(())
}

/// `recur sample`: the prime, then `length` drawn tokens, as text.
pub fn sample_command(a: &crate::cmd::sample::SampleArgs) -> Result<String> {
    let ck = Checkpoint::load(&a.checkpoint)?;
    let (model, _, vocab) = load_checkpoint(&ck)?;
    let mut prime = vocab.encode(&a.prime);
    if vocab.level() == TokenLevel::Word && !a.prime.ends_with('\n') {
        // encode ends every line with <eos>; a prime without a line end continues its line
        prime.pop();
    }
    if prime.is_empty() {
        // start as after a line end: <eos> (words) or "\n" (characters), else token 0
        let start = vocab
            .eos_id()
            .or_else(|| vocab.tokens().iter().position(|t| t == "\n"))
            .unwrap_or(0);
        prime.push(start);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut state: Option<State<f32>> = None;
    // Read the prime in one pass; its last token's output gives the first draw.
    let out = model.forward(
        ModelInput::Ids {
            ids: &prime,
            shape: [prime.len(), 1],
        },
        Call::new(),
    )?;
    let v = vocab.len();
    let mut logits = out.output.data()[(prime.len() - 1) * v..].to_vec();
    state = Some(out.state).or(state);
    let mut drawn = Vec::with_capacity(a.length);
    for _ in 0..a.length {
        let id = draw(&logits, a.temperature, a.top_k, &mut rng);
        drawn.push(id);
        let out = model.forward(
            ModelInput::Ids {
                ids: &[id],
                shape: [1, 1],
            },
            Call::new().state(state.as_ref()),
        )?;
        logits.copy_from_slice(out.output.data());
        state = Some(out.state);
    }
    let mut text = if a.prime.is_empty() {
        String::new()
    } else {
        a.prime.clone()
    };
    let continuation = vocab.decode(&drawn)?;
    if vocab.level() == TokenLevel::Word
        && !text.is_empty()
        && !text.ends_with(['\n', ' '])
        && !continuation.starts_with('\n')
    {
        text.push(' ');
    }
    text.push_str(&continuation);
    Ok(text)
}

/// Draws a token from softmax(`logits` / `temperature`) among the `top_k` largest (0 =
/// all); temperature 0 takes the largest (the first on a tie).
pub fn draw(logits: &[f32], temperature: f64, top_k: usize, rng: &mut ChaCha8Rng) -> usize {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if top_k > 0 && top_k < logits.len() {
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        idx.truncate(top_k);
        idx.sort_unstable();
    }
    if temperature == 0.0 {
        return idx
            .iter()
            .copied()
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if logits[b] >= logits[i] => Some(b),
                _ => Some(i),
            })
            .unwrap_or(0);
    }
    let m = idx
        .iter()
        .map(|&i| f64::from(logits[i]))
        .fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((f64::from(logits[i]) - m) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (k, &wk) in w.iter().enumerate() {
        if u < wk {
            return idx[k];
        }
        u -= wk;
    }
    idx[idx.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel clip against the library's, on a buffer of several chunks.
    #[test]
    fn clip_matches_the_library() {
        let g: Vec<f32> = (0..3 * CLIP_CHUNK + 17)
            .map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5)
            .collect();
        for max in [1.0, 1e9] {
            let (mut a, mut b) = (g.clone(), g.clone());
            let na = clip(&mut a, max, 0.0).unwrap();
            let nb = clip_grad_norm(&mut b, max).unwrap();
            assert!((na - nb).abs() <= 1e-12 * nb, "{na} vs {nb}");
            assert_eq!(a, b);
        }
        let mut a = g.clone();
        assert!(
            (clip(&mut a, 0.0, 0.0).unwrap() - clip_grad_norm(&mut g.clone(), 1e9).unwrap()).abs()
                < 1e-9
        );
        assert_eq!(a, g, "norm 0: no clipping");
    }
}
