//! Training checkpoints: a run saved halfway and resumed from the file continues bit for bit
//! as the run that never stopped; every part of the file is validated on loading.

use std::collections::HashMap;

use recur::io::{
    Checkpoint, CheckpointRef, OptimizerRef, Optimizers, TrainingProgress, checkpoint_bytes,
    load_checkpoint, load_checkpoint_bytes, save_checkpoint,
};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
};
use recur::optim::{
    AdamConfig, AnyOptimizer, LrScheduler, Optimizer, OptimizerConfig, PlateauConfig, Schedule,
    ScheduleConfig, SgdConfig, Warmup,
};
use recur::{Call, CellKind, Error, RecurrentConfig, Tensor};

const VOCAB: usize = 9;
const SEQ_LEN: usize = 6;
const BATCH: usize = 3;

fn lm_config() -> SequenceModelConfig {
    SequenceModelConfig {
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: VOCAB,
            embedding_dim: 4,
            padding_idx: None,
        }),
        rnn: RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 4,
            hidden_size: 4,
            num_layers: 2,
            dropout: 0.2,
            ..Default::default()
        },
        output: OutputForm::EveryStep,
        out_features: VOCAB,
        input_dropout: 0.1,
        output_dropout: 0.3,
        tie_weights: TieWeights::Tied,
        ..Default::default()
    }
}

/// The ids of batch `k` (a deterministic stream).
fn ids(k: u64) -> Vec<usize> {
    (0..SEQ_LEN * BATCH)
        .map(|i| ((i as u64 * 7 + k * 13 + (i as u64 * k) % 5) % VOCAB as u64) as usize)
        .collect()
}

/// The trainer's state besides the file: here only the model, optimizer, scheduler and
/// progress, so that "resume" means exactly "load the checkpoint".
struct Run<T> {
    model: SequenceModel<T>,
    optimizer: AnyOptimizer<T>,
    scheduler: Option<LrScheduler>,
    progress: TrainingProgress,
}

trait Real: recur::Float {
    fn of(v: f64) -> Self;
}
impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
}
impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
}

impl<T: Real> Run<T> {
    fn new(optimizer: OptimizerConfig, schedule: Option<ScheduleConfig>) -> Self {
        let model = SequenceModel::<T>::new(lm_config(), 5).unwrap();
        let lr = optimizer.lr();
        Run {
            optimizer: AnyOptimizer::new(optimizer, model.param_len()).unwrap(),
            scheduler: schedule.map(|s| LrScheduler::new(s, lr).unwrap()),
            model,
            progress: TrainingProgress {
                rng: vec![42, 7],
                ..Default::default()
            },
        }
    }

    /// One training step: cross-entropy-like gradient z − onehot, lr from the scheduler,
    /// 4 steps an epoch with a fake validation loss at each epoch's end.
    fn step(&mut self) {
        let p = &mut self.progress;
        let ids = ids(p.step);
        let input = ModelInput::Ids {
            ids: &ids,
            shape: [SEQ_LEN, BATCH],
        };
        let (out, tape) = self
            .model
            .forward_train(input, Call::new().seed(p.rng[0] ^ p.step))
            .unwrap();
        let mut dz = out.output.data().to_vec();
        for (row, &id) in ids.iter().enumerate() {
            dz[row * VOCAB + (id + 1) % VOCAB] -= T::one();
        }
        let scale = T::of(1.0 / (SEQ_LEN * BATCH) as f64);
        dz.iter_mut().for_each(|v| *v *= scale);
        let dz = Tensor::new(dz, out.output.shape()).unwrap();
        let mut grads = vec![T::zero(); self.model.param_len()];
        self.model.backward(&tape, &dz, &mut grads).unwrap();
        if let Some(s) = &self.scheduler {
            s.apply(&mut self.optimizer, p.step, p.epoch).unwrap();
        }
        self.model.update(&mut self.optimizer, &grads).unwrap();
        p.step += 1;
        p.data_position = vec![p.step % 4, 99];
        if p.step.is_multiple_of(4) {
            p.epoch += 1;
            if let Some(s) = &mut self.scheduler {
                // a validation loss that stalls, so that the plateau reduces
                s.on_epoch_end(1.0 + 1e-6 * p.epoch as f64);
            }
        }
    }

    fn as_ref<'a>(&'a self, run_config: &'a str) -> CheckpointRef<'a, T> {
        CheckpointRef {
            model: &self.model,
            optimizer: OptimizerRef::Flat(&self.optimizer),
            scheduler: self.scheduler.as_ref(),
            progress: &self.progress,
            run_config,
            extra_tensors: &[],
            extra_metadata: &[],
        }
    }

    fn from_checkpoint(c: Checkpoint<T>) -> Self {
        Run {
            model: c.model,
            optimizer: match c.optimizer {
                Optimizers::Flat(o) => o,
                Optimizers::Parts(_) => panic!("saved flat, loaded per part"),
            },
            scheduler: c.scheduler,
            progress: c.progress,
        }
    }
}

const RUN_CONFIG: &str = r#"{"task": "lm", "epochs": 3, "note": "ünïcode \"quoted\""}"#;

fn optimizers() -> Vec<(OptimizerConfig, Option<ScheduleConfig>)> {
    vec![
        (
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.5,
                momentum: 0.9,
                ..Default::default()
            }),
            Some(ScheduleConfig {
                schedule: Schedule::DecayAfter {
                    epochs: 1,
                    gamma: 0.5,
                },
                warmup: Some(Warmup {
                    start_factor: 0.5,
                    steps: 3,
                }),
            }),
        ),
        (
            OptimizerConfig::Adam(AdamConfig::adamw()),
            Some(ScheduleConfig {
                schedule: Schedule::Plateau(PlateauConfig {
                    patience: 0,
                    ..Default::default()
                }),
                warmup: None,
            }),
        ),
        (
            OptimizerConfig::Rmsprop(recur::optim::RmspropConfig {
                momentum: 0.5,
                ..Default::default()
            }),
            None,
        ),
        (OptimizerConfig::Adagrad(Default::default()), None),
    ]
}

fn resume_is_exact<T: Real>() {
    for (optimizer, schedule) in optimizers() {
        let kind = optimizer.kind();
        let mut straight = Run::<T>::new(optimizer.clone(), schedule.clone());
        for _ in 0..10 {
            straight.step();
        }
        let mut first = Run::<T>::new(optimizer, schedule);
        for _ in 0..5 {
            first.step();
        }
        // one directory per process, precision and optimizer: the tests run in parallel
        let dir = std::env::temp_dir().join(format!(
            "recur-ckpt-{}-{}-{kind}",
            std::process::id(),
            std::any::type_name::<T>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.ckpt");
        save_checkpoint(&path, first.as_ref(RUN_CONFIG)).unwrap();
        // saving again over it replaces it atomically and leaves nothing else behind
        save_checkpoint(&path, first.as_ref(RUN_CONFIG)).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        drop(first);
        let loaded = load_checkpoint::<T>(&path, Some(&lm_config())).unwrap();
        assert_eq!(loaded.run_config, RUN_CONFIG);
        assert_eq!(loaded.progress.step, 5);
        assert_eq!(loaded.progress.data_position, vec![1, 99]);
        // the file is what the loaded state writes again
        assert_eq!(
            loaded.to_bytes().unwrap(),
            std::fs::read(&path).unwrap(),
            "{kind}"
        );
        let mut resumed = Run::from_checkpoint(loaded);
        for _ in 0..5 {
            resumed.step();
        }
        assert_eq!(resumed.model.params(), straight.model.params(), "{kind}");
        assert_eq!(resumed.optimizer.lr(), straight.optimizer.lr(), "{kind}");
        assert_eq!(resumed.progress, straight.progress);
        assert_eq!(
            resumed.scheduler.as_ref().map(|s| s.state().clone()),
            straight.scheduler.as_ref().map(|s| s.state().clone())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn resume_is_bitwise_in_f32() {
    resume_is_exact::<f32>();
}

#[test]
fn resume_is_bitwise_in_f64() {
    resume_is_exact::<f64>();
}

/// The plateau schedule of the Adam case does reduce within the run, so its state matters.
#[test]
fn the_plateau_case_reduces() {
    let (optimizer, schedule) = optimizers().swap_remove(1);
    let mut run = Run::<f64>::new(optimizer, schedule);
    for _ in 0..10 {
        run.step();
    }
    assert!(run.scheduler.unwrap().lr_at(0, 0) < 1e-3 * 0.5);
}

#[test]
fn a_checkpoint_of_another_shape_is_refused() {
    let run = Run::<f64>::new(optimizers()[0].0.clone(), None);
    let bytes = checkpoint_bytes(run.as_ref("{}")).unwrap();
    let mut other = lm_config();
    other.rnn.hidden_size = 8;
    other.input = Input::Embedding(EmbeddingConfig {
        num_embeddings: VOCAB,
        embedding_dim: 8,
        padding_idx: None,
    });
    other.rnn.input_size = 8;
    let e = load_checkpoint_bytes::<f64>(&bytes, Some(&other)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<memory>: metadata `recur.model`: checkpoint of another shape: \
         input.embedding_dim: the file has 4, expected 8"
    );
    let e = checkpoint_bytes(run.as_ref("not json")).unwrap_err();
    assert!(
        matches!(&e, Error::Config { what, .. } if what == "run_config"),
        "{e}"
    );
    // an optimizer made for another model
    let small = AnyOptimizer::<f64>::new(
        OptimizerConfig::Adam(AdamConfig::default()),
        run.model.param_len() - 1,
    )
    .unwrap();
    let e = checkpoint_bytes(CheckpointRef {
        optimizer: OptimizerRef::Flat(&small),
        ..run.as_ref("{}")
    })
    .unwrap_err();
    assert!(matches!(e, Error::Length { .. }), "{e}");
}

/// A tensor's name, dtype, shape and bytes.
type RawTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Rebuilds a checkpoint with its tensors and metadata edited.
fn edit(
    good: &[u8],
    tensors: impl Fn(&mut Vec<RawTensor>),
    meta: impl Fn(&mut HashMap<String, String>),
) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(good).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(good).unwrap();
    let mut m = header.metadata().clone().unwrap();
    meta(&mut m);
    let mut t: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors(&mut t);
    let views: Vec<_> = t
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(m)).unwrap()
}

/// [`edit`] leaving the tensors as they are.
fn keep(_: &mut Vec<RawTensor>) {}

/// [`edit`] leaving the metadata as it is.
fn same(_: &mut HashMap<String, String>) {}

/// [`edit`]: without tensor `name`.
fn drop_tensor(name: &str) -> impl Fn(&mut Vec<RawTensor>) + '_ {
    move |t| t.retain(|x| x.0 != name)
}

/// [`edit`]: tensor `name` (1-D, f32) one element short.
fn shorten(name: &str) -> impl Fn(&mut Vec<RawTensor>) + '_ {
    move |t| {
        let b = t.iter_mut().find(|x| x.0 == name).unwrap();
        b.2 = vec![b.2[0] - 1];
        b.3.truncate(b.3.len() - 4);
    }
}

/// The error of loading an edited checkpoint.
fn load_err(bytes: Vec<u8>) -> Error {
    load_checkpoint_bytes::<f32>(&bytes, None).unwrap_err()
}

#[test]
fn hostile_checkpoints_are_typed_errors() {
    let mut run = Run::<f32>::new(optimizers()[1].0.clone(), optimizers()[1].1.clone());
    run.step();
    let good = checkpoint_bytes(run.as_ref(RUN_CONFIG)).unwrap();
    assert!(load_checkpoint_bytes::<f32>(&good, None).is_ok());
    assert!(load_checkpoint_bytes::<f32>(&edit(&good, keep, same), None).is_ok());

    let key_of = |bytes: Vec<u8>| match load_checkpoint_bytes::<f32>(&bytes, None) {
        Err(Error::Metadata { key, .. }) => key,
        other => panic!("expected a metadata error, got {other:?}"),
    };
    for (key, bad) in [
        ("recur.format", "checkpoint-1"),
        ("recur.model", "{}"),
        ("recur.optimizer", r#"{"kind": "lbfgs"}"#),
        ("recur.optimizer", r#"{"kind": "adam", "lr": -1}"#),
        ("recur.optimizer_step", "-3"),
        ("recur.optimizer_step", "many"),
        ("recur.scheduler", r#"{"config": 1}"#),
        ("recur.progress", r#"{"step": "x"}"#),
        ("recur.run_config", "{unclosed"),
    ] {
        let got = key_of(edit(&good, keep, |m| {
            m.insert(key.into(), bad.into());
        }));
        assert_eq!(got, key, "{key} = {bad}");
    }
    for key in [
        "recur.format",
        "recur.model",
        "recur.optimizer",
        "recur.optimizer_step",
        "recur.progress",
        "recur.run_config",
    ] {
        let got = key_of(edit(&good, keep, |m| {
            m.remove(key);
        }));
        assert_eq!(got, key);
    }
    // an SGD state in an Adam checkpoint, a missing moment, a buffer of the wrong length,
    // a stray tensor, an integer tensor
    let e = load_err(edit(&good, keep, |m| {
        m.insert("recur.optimizer".into(), r#"{"kind":"sgd","lr":0.1,"momentum":0.0,"dampening":0.0,"weight_decay":0.0,"nesterov":"disabled"}"#.into());
    }));
    assert!(
        matches!(&e, Error::UnexpectedTensor { name, .. } if name == "optimizer.exp_avg"),
        "{e}"
    );
    let e = load_err(edit(&good, drop_tensor("optimizer.exp_avg_sq"), same));
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "optimizer.exp_avg_sq"),
        "{e}"
    );
    let e = load_err(edit(&good, shorten("optimizer.exp_avg"), same));
    assert!(
        matches!(&e, Error::TensorShape { name, .. } if name == "optimizer.exp_avg"),
        "{e}"
    );
    let e = load_err(edit(
        &good,
        |t| t.push(("notes".into(), safetensors::Dtype::F32, vec![1], vec![0; 4])),
        same,
    ));
    assert!(
        matches!(&e, Error::UnexpectedTensor { name, .. } if name == "notes"),
        "{e}"
    );
    let e = load_err(edit(
        &good,
        |t| {
            let b = t.iter_mut().find(|x| x.0 == "model.head.bias").unwrap();
            b.1 = safetensors::Dtype::I32;
        },
        same,
    ));
    assert!(
        matches!(&e, Error::TensorDtype { name, .. } if name == "model.head.bias"),
        "{e}"
    );
    // a configuration far larger than the file: refused before anything of its size is
    // allocated (a 2^33-row embedding would need 256 GiB of Adam moments)
    let e = load_err(edit(&good, keep, |m| {
        let json =
            m["recur.model"].replace("\"num_embeddings\":9", "\"num_embeddings\":8589934592");
        let json = json.replace("\"out_features\":9", "\"out_features\":8589934592");
        m.insert("recur.model".into(), json);
    }));
    assert!(
        matches!(&e, Error::TensorShape { name, .. } if name == "model.embedding.weight"),
        "{e}"
    );
    // truncation and corruption
    for cut in [0, 8, 64, good.len() / 2, good.len() - 1] {
        assert!(matches!(
            load_checkpoint_bytes::<f32>(&good[..cut], None),
            Err(Error::Format { .. })
        ));
    }
    let mut flipped = good.clone();
    for k in (8..flipped.len()).step_by(61) {
        flipped[k] = flipped[k].wrapping_add(17);
        let _ = load_checkpoint_bytes::<f32>(&flipped, None); // an error or a model, no panic
    }
    let e = save_checkpoint(
        std::env::temp_dir().join("recur-no-such-dir/x/run.ckpt"),
        run.as_ref("{}"),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}

/// A trainer that keeps one optimizer per part of the model and updates the parts in place,
/// with the recurrent state it carries and strings of its own as extras.
struct PartsRun {
    model: SequenceModel<f32>,
    opts: [AnyOptimizer<f32>; 3],
    progress: TrainingProgress,
    state_h: Tensor<f32>,
}

impl PartsRun {
    fn new() -> Self {
        let model = SequenceModel::<f32>::new(lm_config(), 3).unwrap();
        let config = OptimizerConfig::Adam(AdamConfig::adamw());
        let opts = model
            .parts()
            .map(|p| AnyOptimizer::new(config.clone(), p.len()).unwrap());
        let state_h = Tensor::new(
            (0..2 * BATCH * 4).map(|i| i as f32 * 0.25).collect(),
            &[2, BATCH, 4],
        )
        .unwrap();
        PartsRun {
            model,
            opts,
            progress: TrainingProgress::default(),
            state_h,
        }
    }

    /// One update of every part with a deterministic gradient.
    fn step(&mut self) {
        let k = self.progress.step as f32;
        let [a, b, c] = &mut self.opts;
        for (part, o) in self.model.parts_mut().into_iter().zip([a, b, c]) {
            let g: Vec<f32> = (0..part.len())
                .map(|i| ((i as f32 * 0.37 + k).sin()) * 0.1)
                .collect();
            o.step(part, &g).unwrap();
        }
        self.progress.step += 1;
    }

    fn bytes(&self) -> Vec<u8> {
        let [a, b, c] = &self.opts;
        checkpoint_bytes(CheckpointRef {
            model: &self.model,
            optimizer: OptimizerRef::Parts([a, b, c]),
            scheduler: None,
            progress: &self.progress,
            run_config: "{}",
            extra_tensors: &[("state.h", &self.state_h)],
            extra_metadata: &[("kind", "text"), ("vocab", "a\nb\nc")],
        })
        .unwrap()
    }
}

#[test]
fn optimizers_per_part_and_extras_round_trip() {
    let mut run = PartsRun::new();
    for _ in 0..3 {
        run.step();
    }
    let bytes = run.bytes();
    let loaded = load_checkpoint_bytes::<f32>(&bytes, Some(&lm_config())).unwrap();
    assert_eq!(loaded.to_bytes().unwrap(), bytes);
    assert_eq!(loaded.extra_tensor("state.h").unwrap(), &run.state_h);
    assert_eq!(loaded.extra_metadata("kind").unwrap(), "text");
    assert_eq!(loaded.extra_metadata("vocab").unwrap(), "a\nb\nc");
    let Optimizers::Parts(opts) = loaded.optimizer else {
        panic!("saved per part, loaded flat")
    };
    let mut resumed = PartsRun {
        model: loaded.model,
        opts: *opts,
        progress: loaded.progress,
        state_h: run.state_h.clone(),
    };
    for _ in 0..3 {
        run.step();
        resumed.step();
    }
    assert_eq!(resumed.model.params(), run.model.params());
    for (a, b) in resumed.opts.iter().zip(&run.opts) {
        assert_eq!(a.step_count(), b.step_count());
        assert_eq!(a.state_buffers(), b.state_buffers());
    }
}

#[test]
fn a_missing_extra_is_an_error_naming_it() {
    let run = PartsRun::new();
    let path = std::env::temp_dir().join(format!("recur-ckpt-extra-{}.ckpt", std::process::id()));
    std::fs::write(&path, run.bytes()).unwrap();
    let loaded = load_checkpoint::<f32>(&path, None).unwrap();
    std::fs::remove_file(&path).unwrap();
    let e = loaded.extra_tensor("state.c").unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { file, name, .. }
            if name == "extra.state.c" && *file == path.display().to_string()),
        "{e}"
    );
    let e = loaded.extra_metadata("classes").unwrap_err();
    assert!(
        matches!(&e, Error::Metadata { key, .. } if key == "recur.extra.classes"),
        "{e}"
    );
}

#[test]
fn optimizer_parts_of_the_wrong_length_are_refused() {
    let mut run = PartsRun::new();
    run.step();
    let good = run.bytes();
    let meta_key = |bytes: Vec<u8>| match load_checkpoint_bytes::<f32>(&bytes, None) {
        Err(Error::Metadata { key, reason, .. }) => (key, reason),
        other => panic!("expected a metadata error, got {other:?}"),
    };
    // a part's declared length that is not the model's
    let rnn_len = run.model.parts()[1].len();
    let (key, reason) = meta_key(edit(&good, keep, |m| {
        let v = m["recur.optimizer_parts"].replace(
            &format!("\"len\":{rnn_len}"),
            &format!("\"len\":{}", rnn_len + 1),
        );
        m.insert("recur.optimizer_parts".into(), v);
    }));
    assert_eq!(key, "recur.optimizer_parts");
    assert!(reason.contains("`rnn`"), "{reason}");
    // parts out of order, too few, and both layouts at once
    let (key, _) = meta_key(edit(&good, keep, |m| {
        let v = m["recur.optimizer_parts"].replacen("\"embedding\"", "\"head\"", 1);
        m.insert("recur.optimizer_parts".into(), v);
    }));
    assert_eq!(key, "recur.optimizer_parts");
    let (key, _) = meta_key(edit(&good, keep, |m| {
        let v: Vec<serde_json::Value> = serde_json::from_str(&m["recur.optimizer_parts"]).unwrap();
        m.insert(
            "recur.optimizer_parts".into(),
            serde_json::to_string(&v[..2]).unwrap(),
        );
    }));
    assert_eq!(key, "recur.optimizer_parts");
    let (key, _) = meta_key(edit(&good, keep, |m| {
        m.insert("recur.optimizer".into(), r#"{"kind":"adam"}"#.into());
    }));
    assert_eq!(key, "recur.optimizer_parts");
    // a state buffer of the wrong length, and one missing
    let e = load_err(edit(&good, shorten("optimizer.rnn.exp_avg"), same));
    assert!(
        matches!(&e, Error::TensorShape { name, .. } if name == "optimizer.rnn.exp_avg"),
        "{e}"
    );
    let e = load_err(edit(&good, drop_tensor("optimizer.head.exp_avg_sq"), same));
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "optimizer.head.exp_avg_sq"),
        "{e}"
    );
    // saving an optimizer made for a part of another length
    let wrong = AnyOptimizer::<f32>::new(OptimizerConfig::Adam(AdamConfig::adamw()), 5).unwrap();
    let [a, _, c] = &run.opts;
    let e = checkpoint_bytes(CheckpointRef {
        model: &run.model,
        optimizer: OptimizerRef::Parts([a, &wrong, c]),
        scheduler: None,
        progress: &run.progress,
        run_config: "{}",
        extra_tensors: &[],
        extra_metadata: &[],
    })
    .unwrap_err();
    assert!(matches!(e, Error::Length { .. }), "{e}");
}
