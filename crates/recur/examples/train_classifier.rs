//! Train a sequence classifier with the library alone: an LSTM reads each whole sequence
//! (variable lengths in one batch), a linear head on its final state gives the class scores,
//! and softmax cross-entropy, BPTT, gradient clipping and Adam train it.
//!
//! The data is generated: a noisy sine wave whose frequency (one of three) is the class,
//! with a random phase and a length between 12 and 24 steps.
//!
//! ```sh
//! cargo run --release -p recur --example train_classifier
//! ```

use recur::model::{
    CrossEntropyConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig,
    cross_entropy,
};
use recur::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use recur::{Call, CellKind, RecurrentConfig, Tensor};

const CLASSES: usize = 3;
const FREQUENCIES: [f32; CLASSES] = [0.25, 0.6, 1.2];
const MAX_LEN: usize = 24;

/// A small deterministic generator (xorshift64*), so the example needs no other crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One batch: inputs `[MAX_LEN, batch, 1]` (zero past each end), lengths and labels.
fn batch(rng: &mut Rng, size: usize) -> recur::Result<(Tensor<f32>, Vec<usize>, Vec<usize>)> {
    let mut x = vec![0.0f32; MAX_LEN * size];
    let mut lengths = Vec::with_capacity(size);
    let mut labels = Vec::with_capacity(size);
    for b in 0..size {
        let label = rng.below(CLASSES);
        let len = 12 + rng.below(MAX_LEN - 12 + 1);
        let phase = rng.uniform() * std::f32::consts::TAU;
        for t in 0..len {
            let noise = 0.2 * (rng.uniform() - 0.5);
            x[t * size + b] = (FREQUENCIES[label] * t as f32 + phase).sin() + noise;
        }
        lengths.push(len);
        labels.push(label);
    }
    Ok((Tensor::new(x, &[MAX_LEN, size, 1])?, lengths, labels))
}

fn main() -> recur::Result<()> {
    let config = SequenceModelConfig {
        input: Input::Dense,
        rnn: RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 1,
            hidden_size: 24,
            ..Default::default()
        },
        output: OutputForm::Last, // the head reads each sequence's final state
        out_features: CLASSES,
        ..Default::default()
    };
    let mut model = SequenceModel::<f32>::new(config, 0)?;
    let mut adam = Adam::new(
        AdamConfig {
            lr: 0.01,
            ..Default::default()
        },
        model.param_len(),
    )?;
    let loss_config = CrossEntropyConfig::default(); // mean over the batch, as PyTorch
    let mut grads = vec![0.0f32; model.param_len()];
    let mut rng = Rng(0x5eed);

    for step in 0..=300u64 {
        let (x, lengths, labels) = batch(&mut rng, 32)?;
        let (out, tape) = model.forward_train(
            ModelInput::Features(x.view()),
            Call::new().lengths(&lengths),
        )?;
        // out.output: [batch, CLASSES] logits; the loss gives their gradient in the same pass.
        let loss = cross_entropy(&out.output, &labels, &loss_config, 1.0)?;
        grads.fill(0.0); // backward accumulates, as PyTorch's .grad
        model.backward(&tape, &loss.grad, &mut grads)?;
        let norm = clip_grad_norm(&mut grads, 1.0)?;
        model.update(&mut adam, &grads)?;
        if step % 50 == 0 {
            println!(
                "step {step:4}  loss {:.4}  batch accuracy {:5.1}%  |grad| {norm:.3}  lr {}",
                loss.loss,
                100.0 * loss.accuracy(),
                adam.lr()
            );
        }
    }

    // Fresh sequences, never trained on.
    let (x, lengths, labels) = batch(&mut Rng(0x7e57), 1000)?;
    let out = model.forward(
        ModelInput::Features(x.view()),
        Call::new().lengths(&lengths),
    )?;
    let test = cross_entropy(&out.output, &labels, &loss_config, 1.0)?;
    println!(
        "test: {} fresh sequences, loss {:.4}, accuracy {:.1}% (chance {:.1}%)",
        labels.len(),
        test.loss,
        100.0 * test.accuracy(),
        100.0 / CLASSES as f64
    );
    Ok(())
}
