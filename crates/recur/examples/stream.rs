//! Streaming inference: a `Stepper` advances an LSTM one time step at a time, carrying the
//! state between calls, and gives the numbers of the whole-sequence call.
//!
//! ```sh
//! cargo run --release -p recur --example stream
//! ```

use recur::{Call, CellKind, Recurrent, RecurrentConfig, Tensor};

fn main() -> recur::Result<()> {
    let (input_size, hidden_size, num_layers) = (8, 32, 2);
    let (seq_len, batch) = (50, 1);
    let config = RecurrentConfig {
        cell: CellKind::lstm(),
        input_size,
        hidden_size,
        num_layers,
        ..Default::default()
    };
    let model = Recurrent::<f32>::new(config, 42)?;

    // A deterministic input signal, [seq_len, batch, input_size].
    let x: Vec<f32> = (0..seq_len * batch * input_size)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();

    // The whole sequence in one call.
    let whole = model.forward(
        &Tensor::new(x.clone(), &[seq_len, batch, input_size])?,
        Call::new(),
    )?;

    // The same sequence, one step at a time: the stepper packs the weights once, owns the
    // state and allocates nothing per step at batch 1.
    let mut stepper = model.stepper(batch)?;
    let step_len = batch * input_size;
    let out_len = batch * hidden_size;
    let mut y = vec![0.0f32; out_len];
    let mut max_diff = 0.0f32;
    for t in 0..seq_len {
        stepper.step(&x[t * step_len..(t + 1) * step_len], &mut y)?;
        let want = &whole.output.data()[t * out_len..(t + 1) * out_len];
        for (a, b) in y.iter().zip(want) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let state = stepper.state();
    let h_diff = state
        .h
        .data()
        .iter()
        .zip(whole.state.h.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);

    println!(
        "{num_layers}-layer LSTM, H = {hidden_size}: {seq_len} steps streamed at batch {batch}"
    );
    println!(
        "largest difference from the whole-sequence call: output {max_diff:e}, h_n {h_diff:e}"
    );
    // Bitwise when the product kernel blocks both row counts alike, else within the last bit.
    assert!(
        max_diff <= 1e-6 && h_diff <= 1e-6,
        "stepping diverged from the whole sequence"
    );

    // A new stream starts from zero state; set_state resumes from a saved one.
    stepper.reset();
    stepper.set_state(&state)?;
    stepper.step(&x[..step_len], &mut y)?;
    println!(
        "one more step after restoring the state: y[0] = {:.6}",
        y[0]
    );
    Ok(())
}
