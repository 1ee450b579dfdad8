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

use anyhow::{Context, Result, bail};
use recur::data::{Corpus, SplitFractions, Streams, TokenLevel, Vocabulary, batchify};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
    bits_per_character, cross_entropy_in_place, cross_entropy_sums, perplexity,
};
use recur::{Call, State};

use super::args::{Level, LossReduction, TrainArgs};
use super::checkpoint::Checkpoint;
use super::core::{Progress, check_model};
use super::optim::describe;
use super::report::{EvalReport, Figures};
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};
use super::{check_fits, dropout_seed, initialise};

impl Level {
    pub fn token_level(self) -> TokenLevel {
        match self {
            Level::Char => TokenLevel::Char,
            Level::Word => TokenLevel::Word,
        }
    }
}

/// The vocabulary a checkpoint records; an error in it names the entry, not a line of the
/// checkpoint file.
fn checkpoint_vocabulary(ck: &Checkpoint) -> Result<Vocabulary> {
    Vocabulary::from_text(ck.meta("vocab")?, &ck.file).map_err(|e| match e {
        recur::Error::Parse { file, line, reason } => {
            anyhow::anyhow!("{file}: metadata `vocab`, entry {line} (1 is its header): {reason}")
        }
        other => other.into(),
    })
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
    check_fits(&config, s, s.bptt, "--batch-size or --bptt")?;
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
            Call::new().state(state.as_ref().map(State::view)),
        )?;
        let sums = cross_entropy_sums(&out.output, chunk.target)?;
        loss += sums.loss;
        count += chunk.target.len();
        state = Some(out.state);
    }
    Ok((loss / count.max(1) as f64, count))
}

/// The logs' figures of a mean loss per token, `val_` ones for a validation: the loss and
/// the perplexity (words) or bits per character (characters).
pub fn log_figures(level: Level, loss: f64, valid: bool, out: &mut Figures) {
    let (l, ppl, bpc) = if valid {
        ("val_loss", "val_ppl", "val_bpc")
    } else {
        ("loss", "ppl", "bpc")
    };
    out.push((l, loss));
    match level {
        Level::Word => out.push((ppl, perplexity(loss))),
        Level::Char => out.push((bpc, bits_per_character(loss))),
    }
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

/// A language model on a text: TBPTT over the training part's streams.
struct Text {
    model: SequenceModel<f32>,
    train: Streams,
    corpus: Corpus,
    /// carried between chunks, cut at every epoch's end
    state: Option<State<f32>>,
    meta: [(&'static str, String); 1],
    /// the last validation's or the test's, for the log
    figures: Figures,
    valid_name: String,
    test_name: String,
    plan: Plan,
    level: Level,
    reduction: LossReduction,
    batch: usize,
    eval_batch: usize,
    bptt: usize,
    seed: u64,
}

impl Task for Text {
    fn kind(&self) -> &'static str {
        "text"
    }

    fn plan(&self) -> Plan {
        self.plan
    }

    fn model(&self) -> Option<&SequenceModel<f32>> {
        Some(&self.model)
    }

    fn model_mut(&mut self) -> Option<&mut SequenceModel<f32>> {
        Some(&mut self.model)
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        self.model.parts_mut()
    }

    fn has_batch(&self, position: usize) -> bool {
        position < self.train.n_steps() - 1
    }

    fn batches_done(&self, position: usize) -> usize {
        position / self.bptt
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let Some(chunk) = self.train.chunks_from(prog.position, self.bptt)?.next() else {
            bail!("no chunk at step {} of the streams", prog.position);
        };
        let (mut out, tape) = self.model.forward_train(
            ModelInput::Ids {
                ids: chunk.input,
                shape: [chunk.seq_len, self.batch],
            },
            Call {
                state: self.state.as_ref().map(State::view),
                seed: Some(dropout_seed(self.seed, prog.step)),
                ..Call::new()
            },
        )?;
        let n = chunk.target.len();
        // dL/dℓ for each target: 1/(seq_len·batch) (mean) or 1/batch (sum over time)
        let dl = match self.reduction {
            LossReduction::Mean => 1.0 / n as f32,
            LossReduction::SumOverTime => 1.0 / self.batch as f32,
        };
        let sums = cross_entropy_in_place(&mut out.output, chunk.target, dl)?;
        self.model.backward(&tape, &out.output, grads)?;
        drop(tape);
        self.state = Some(out.state);
        let loss = sums.loss / n as f64;
        Ok(Batch {
            loss,
            loss_sum: sums.loss,
            targets: n,
            ppl: Some(perplexity(loss)),
            tokens: n,
            position: chunk.start + chunk.seq_len,
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        let running = prog.loss_sum / prog.targets as f64;
        format!("loss {running:.4} {}", figure(self.level, running))
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let train_loss = prog.loss_sum / prog.targets.max(1) as f64;
        let (valid_loss, _) = evaluate(
            &self.model,
            &self.corpus.valid,
            self.eval_batch,
            self.bptt,
            &self.valid_name,
        )?;
        let line = format!(
            "epoch {:>3}{}  lr {:.6}  train loss {train_loss:.4} {}  valid loss \
             {valid_loss:.4} {}  |grad| {:.3}  {:.0} tok/s  {:.1} s",
            at.epoch,
            if at.partial { " (part)" } else { "" },
            at.lr,
            figure(self.level, train_loss),
            figure(self.level, valid_loss),
            at.grad_norm,
            at.tokens_per_s,
            at.elapsed_s
        );
        self.figures.clear();
        log_figures(self.level, train_loss, false, &mut self.figures);
        log_figures(self.level, valid_loss, true, &mut self.figures);
        Ok((valid_loss, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let (test_loss, test_tokens) = evaluate(
            &self.model,
            &self.corpus.test,
            self.eval_batch,
            self.bptt,
            &self.test_name,
        )?;
        println!(
            "test: loss {test_loss:.4} {} over {test_tokens} tokens; {} steps in {elapsed_s:.1} s",
            figure(self.level, test_loss),
            prog.step,
        );
        self.figures.clear();
        log_figures(self.level, test_loss, false, &mut self.figures);
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }

    fn checkpoint_meta(&self) -> &[(&'static str, String)] {
        &self.meta
    }

    fn state(&self) -> Option<&State<f32>> {
        self.state.as_ref()
    }

    fn set_state(&mut self, state: Option<State<f32>>) {
        self.state = state;
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
        let saved = checkpoint_vocabulary(ck)?;
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
    let plan = Plan::epochs(s, n_chunks);
    let Plan::Epochs { epochs, .. } = plan else {
        unreachable!("a plan of epochs")
    };
    let n_params = model.param_len();
    let header = format!(
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
    let task = Text {
        model,
        train,
        meta: [("vocab", vocab.to_text())],
        figures: Figures::new(),
        corpus,
        state: None,
        valid_name: part_name(args, "validation"),
        test_name: part_name(args, "test"),
        plan,
        level: s.level,
        reduction: s.loss_reduction,
        batch: s.batch_size,
        eval_batch: s.eval_batch_size,
        bptt: s.bptt,
        seed: s.seed,
    };
    let mut trainer = Trainer::new(task, s, args)?;
    if let Some(ck) = &resume {
        trainer.resume(ck)?;
    }
    println!("{header}");
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
        let prog = trainer.progress();
        println!(
            "  resumed from {} after {} finished epoch(s) and {} steps",
            ck.file, prog.epoch, prog.step
        );
    }
    trainer.run()
}

/// The model, settings and vocabulary of a language model's checkpoint.
pub fn load_checkpoint(ck: &Checkpoint) -> Result<(SequenceModel<f32>, Settings, Vocabulary)> {
    if ck.meta("kind")? != "text" {
        bail!("{}: not a language model's checkpoint", ck.file);
    }
    let args = ck.args()?;
    let s = Settings::resolve(&args)
        .with_context(|| format!("{}: metadata `recur.run_config`", ck.file))?;
    let vocab = checkpoint_vocabulary(ck)?;
    check_model(ck, &build_model(&s, vocab.len())?)?;
    Ok((ck.inner.model.clone(), s, vocab))
}

/// `recur eval` of a language model: on `file`, or on the test part it was trained with.
pub fn eval_command(
    ck: &Checkpoint,
    file: Option<&PathBuf>,
    batch: Option<usize>,
) -> Result<EvalReport> {
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
    let mut figures = Figures::new();
    log_figures(s.level, loss, false, &mut figures);
    figures.push(("unknown", unk as f64));
    Ok(EvalReport {
        line: format!(
            "{name}: loss {loss:.4} {} over {count} tokens ({unk} unknown, counted as {})",
            figure(s.level, loss),
            recur::data::UNK
        ),
        data: name,
        counted: ("tokens", count),
        figures,
    })
}
