//! Borrowed tensors (`TensorView`, `StateView`): every entry point that reads a tensor reads
//! a view of values the caller owns, with the same numbers and the same errors as from an
//! owned `Tensor`.
//!
//! - `TensorView::new` refuses values that do not fill the shape, as `Tensor::new` does;
//! - forward, forward_train and backward (output and state gradients), the initial state,
//!   a one-call step and a stepper's state give bit for bit what owned tensors give, when
//!   the views are pieces of larger buffers (not at the start of an allocation);
//! - a view of the wrong shape is refused with the error an owned tensor of that shape
//!   gets.

use recur::model::{ModelInput, SequenceModel, SequenceModelConfig};
use recur::{
    Call, CellKind, Direction, Error, OutputGrad, Recurrent, RecurrentConfig, State, StateView,
    Tensor, TensorView,
};

const SEQ_LEN: usize = 5;
const BATCH: usize = 3;
const INPUT: usize = 4;
const HIDDEN: usize = 6;

fn values(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 / 500.0 - 1.0)
        .collect()
}

/// `n` values at offset 7 of a larger buffer, which the views borrow.
struct Buffer {
    all: Vec<f64>,
    n: usize,
}

impl Buffer {
    fn new(n: usize, seed: u64) -> Self {
        Self {
            all: values(n + 11, seed),
            n,
        }
    }
    fn slice(&self) -> &[f64] {
        &self.all[7..7 + self.n]
    }
    fn tensor(&self, shape: &[usize]) -> Tensor<f64> {
        Tensor::new(self.slice().to_vec(), shape).unwrap()
    }
}

fn lstm() -> Recurrent<f64> {
    let config = RecurrentConfig {
        cell: CellKind::lstm(),
        input_size: INPUT,
        hidden_size: HIDDEN,
        num_layers: 2,
        direction: Direction::Bidirectional,
        ..Default::default()
    };
    Recurrent::new(config, 3).unwrap()
}

#[test]
fn a_view_must_fill_its_shape() {
    let v = values(11, 0);
    let view = TensorView::new(&v, &[3, 4]).unwrap_err();
    let owned = Tensor::new(v.clone(), &[3, 4]).unwrap_err();
    assert!(matches!(view, Error::Length { len: 11, .. }), "{view}");
    assert_eq!(view.to_string(), owned.to_string());
    assert!(TensorView::new(&v, &[usize::MAX, 2]).is_err());
    let ok = TensorView::new(&v[..10], &[2, 5]).unwrap();
    assert_eq!(ok.shape(), &[2, 5]);
    assert_eq!(ok.data().as_ptr(), v.as_ptr());
    assert_eq!(
        ok.to_tensor(),
        Tensor::new(v[..10].to_vec(), &[2, 5]).unwrap()
    );
}

#[test]
fn views_give_what_owned_tensors_give_forward_and_backward() {
    let m = lstm();
    let ld = 4;
    let (xs, ys) = ([SEQ_LEN, BATCH, INPUT], [SEQ_LEN, BATCH, 2 * HIDDEN]);
    let ss = [ld, BATCH, HIDDEN];
    let x = Buffer::new(SEQ_LEN * BATCH * INPUT, 1);
    let (h0, c0) = (
        Buffer::new(ld * BATCH * HIDDEN, 2),
        Buffer::new(ld * BATCH * HIDDEN, 3),
    );
    let dy = Buffer::new(SEQ_LEN * BATCH * 2 * HIDDEN, 4);
    let (dh, dc) = (
        Buffer::new(ld * BATCH * HIDDEN, 5),
        Buffer::new(ld * BATCH * HIDDEN, 6),
    );
    let lengths = [5, 2, 4];

    let owned_state = State {
        h: h0.tensor(&ss),
        c: Some(c0.tensor(&ss)),
    };
    let view_state = StateView {
        h: TensorView::new(h0.slice(), &ss).unwrap(),
        c: Some(TensorView::new(c0.slice(), &ss).unwrap()),
    };
    let xv = TensorView::new(x.slice(), &xs).unwrap();
    let xt = x.tensor(&xs);

    let a = m
        .forward(xv, Call::new().state(view_state).lengths(&lengths))
        .unwrap();
    let b = m
        .forward(&xt, Call::new().state(&owned_state).lengths(&lengths))
        .unwrap();
    assert_eq!(a, b);

    let (out_a, tape_a) = m
        .forward_train(xv, Call::new().state(view_state).lengths(&lengths))
        .unwrap();
    let (out_b, tape_b) = m
        .forward_train(&xt, Call::new().state(&owned_state).lengths(&lengths))
        .unwrap();
    assert_eq!(out_a, out_b);
    assert_eq!(out_a.output, a.output);

    let mut ga = vec![0.0; m.params().len()];
    let mut gb = vec![0.0; m.params().len()];
    let grad_a = OutputGrad {
        output: Some(TensorView::new(dy.slice(), &ys).unwrap()),
        h: Some(TensorView::new(dh.slice(), &ss).unwrap()),
        c: Some(TensorView::new(dc.slice(), &ss).unwrap()),
    };
    let (dyt, dht, dct) = (dy.tensor(&ys), dh.tensor(&ss), dc.tensor(&ss));
    let grad_b = OutputGrad {
        output: Some(dyt.view()),
        h: Some(dht.view()),
        c: Some(dct.view()),
    };
    let dx_a = m.backward(&tape_a, grad_a, &mut ga).unwrap();
    let dx_b = m.backward(&tape_b, grad_b, &mut gb).unwrap();
    assert_eq!(dx_a, dx_b);
    assert_eq!(ga, gb);
    assert!(ga.iter().any(|&g| g != 0.0));
}

#[test]
fn a_step_and_a_stepper_read_views() {
    let config = RecurrentConfig {
        cell: CellKind::gru(),
        input_size: INPUT,
        hidden_size: HIDDEN,
        num_layers: 2,
        ..Default::default()
    };
    let m = Recurrent::<f64>::new(config, 5).unwrap();
    let ss = [2, BATCH, HIDDEN];
    let x = Buffer::new(BATCH * INPUT, 1);
    let h0 = Buffer::new(2 * BATCH * HIDDEN, 2);
    let mut s1 = State {
        h: h0.tensor(&ss),
        c: None,
    };
    let mut s2 = s1.clone();
    let y1 = m
        .step(
            TensorView::new(x.slice(), &[BATCH, INPUT]).unwrap(),
            &mut s1,
        )
        .unwrap();
    let y2 = m.step(&x.tensor(&[BATCH, INPUT]), &mut s2).unwrap();
    assert_eq!((y1, &s1), (y2, &s2));

    let mut st = m.stepper(BATCH).unwrap();
    let view = StateView {
        h: TensorView::new(h0.slice(), &ss).unwrap(),
        c: None,
    };
    st.set_state(view).unwrap();
    assert_eq!(st.state().h.data(), h0.slice());
    st.set_state(&s1).unwrap();
    assert_eq!(st.state(), s1);
}

#[test]
fn a_view_of_the_wrong_shape_gets_an_owned_tensors_error() {
    let m = lstm();
    let x = Buffer::new(SEQ_LEN * BATCH * (INPUT + 1), 1);
    let shape = [SEQ_LEN, BATCH, INPUT + 1];
    let view = m
        .forward(TensorView::new(x.slice(), &shape).unwrap(), Call::new())
        .unwrap_err();
    let owned = m.forward(&x.tensor(&shape), Call::new()).unwrap_err();
    assert!(matches!(view, Error::Shape { .. }), "{view}");
    assert_eq!(view.to_string(), owned.to_string());

    // an initial state of the wrong batch
    let xs = [SEQ_LEN, BATCH, INPUT];
    let x = Buffer::new(SEQ_LEN * BATCH * INPUT, 1);
    let h = Buffer::new(4 * 2 * HIDDEN, 2);
    let bad = [4, 2, HIDDEN];
    let hv = TensorView::new(h.slice(), &bad).unwrap();
    let err = m
        .forward(
            TensorView::new(x.slice(), &xs).unwrap(),
            Call::new().state(StateView { h: hv, c: Some(hv) }),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "h0"),
        "{err}"
    );

    // a gradient of the wrong shape
    let (_, tape) = m
        .forward_train(TensorView::new(x.slice(), &xs).unwrap(), Call::new())
        .unwrap();
    let dy = Buffer::new(SEQ_LEN * BATCH * HIDDEN, 3);
    let mut g = vec![0.0; m.params().len()];
    let grad = OutputGrad {
        output: Some(TensorView::new(dy.slice(), &[SEQ_LEN, BATCH, HIDDEN]).unwrap()),
        ..Default::default()
    };
    let err = m.backward(&tape, grad, &mut g).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "grad output"),
        "{err}"
    );
}

#[test]
fn a_model_reads_features_as_a_view() {
    let config = SequenceModelConfig {
        rnn: RecurrentConfig {
            input_size: INPUT,
            hidden_size: HIDDEN,
            ..Default::default()
        },
        out_features: 2,
        ..Default::default()
    };
    let model = SequenceModel::<f64>::new(config, 1).unwrap();
    let x = Buffer::new(SEQ_LEN * BATCH * INPUT, 1);
    let xs = [SEQ_LEN, BATCH, INPUT];
    let a = model
        .forward(
            ModelInput::Features(TensorView::new(x.slice(), &xs).unwrap()),
            Call::new(),
        )
        .unwrap();
    let b = model
        .forward(ModelInput::Features(x.tensor(&xs).view()), Call::new())
        .unwrap();
    assert_eq!(a, b);
}
