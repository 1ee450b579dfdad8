//! `recur._recur`: the Rust side of the Python package `recur` (crates/recur-py/python).
//!
//! Three classes cross the boundary: [`Layer`] (a recurrent stack, f32 or f64, for inference
//! from numpy and as the engine of `recur.torch`'s modules), [`Tape`] (what a training
//! forward keeps for the backward) and [`Stepper`] (streaming inference), plus [`Model`]
//! (a whole sequence model from a model file or checkpoint, with what predicting needs
//! besides its weights: `recur::io::predict`, the library's one reading of it) and [`load`]. Every call that
//! computes releases the GIL. Arrays come in as numpy arrays of the layer's dtype, C
//! contiguous, and reach the library uncopied, as `recur::TensorView`s of numpy's buffers
//! (a wrong dtype is a `TypeError`, a non-contiguous array a `ValueError`); results leave as
//! numpy arrays that take over recur's buffers, uncopied. Library errors arrive as
//! `recur.RecurError` (a `ValueError`) with the library's message. [`engine_pointers`]
//! says where the buffers the library last read lie, so that the tests can check that no
//! copy was made.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use numpy::{
    Element, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use recur::data::series::SeriesTable;
use recur::io::predict::{self, PredictMeta, Role};
use recur::io::{
    ESN_FORMAT, LoadOptions, MODEL_FORMAT, load_checkpoint, load_esn, load_model, load_state_dict,
};
use recur::model::{Esn, Input, ModelInput, SequenceModel};
use recur::{Call, Float, OutputGrad, Recurrent, RecurrentConfig, StateView, Tensor, TensorView};

pyo3::create_exception!(
    _recur,
    RecurError,
    PyValueError,
    "An error reported by recur's library (bad configuration, shapes, lengths, files); the \
     message is the library's."
);

/// A numpy array handed to Python.
type Arr<'py> = Bound<'py, PyAny>;
/// `(output, h_n, c_n or None)`.
type Outputs<'py> = (Arr<'py>, Arr<'py>, Option<Arr<'py>>);

fn lib_err(e: recur::Error) -> PyErr {
    RecurError::new_err(e.to_string())
}

/// The element types a layer computes in.
trait Elem: Float + Element {
    const NAME: &'static str;
    fn of_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}
impl Elem for f32 {
    const NAME: &'static str = "float32";
    fn of_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}
impl Elem for f64 {
    const NAME: &'static str = "float64";
    fn of_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// A C-contiguous numpy array of `T`, borrowed in place: its values and shape.
fn array<'py, T: Elem>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a numpy array of {}, got {}",
            T::NAME,
            obj.get_type().name()?
        )));
    };
    let Ok(typed) = untyped.cast::<PyArrayDyn<T>>() else {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected dtype {}, got {} (convert with .astype(numpy.{}))",
            T::NAME,
            untyped.dtype(),
            T::NAME
        )));
    };
    if !untyped.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{what}: the array is not C-contiguous (strides {:?}); pass \
             numpy.ascontiguousarray({what}) to copy it",
            untyped.strides()
        )));
    }
    Ok(typed.readonly())
}

thread_local! {
    /// The address of each buffer the library read in this thread's last call, by argument
    /// name (see [`engine_pointers`]).
    static SEEN: RefCell<HashMap<&'static str, usize>> = RefCell::new(HashMap::new());
}

/// Notes that the library is handed `data` as the argument `what` (for [`engine_pointers`]).
fn seen<T>(what: &'static str, data: &[T]) {
    SEEN.with(|s| s.borrow_mut().insert(what, data.as_ptr() as usize));
}

/// A new call: forgets the buffers of the last one.
fn forget_seen() {
    SEEN.with(|s| s.borrow_mut().clear());
}

/// The addresses of the buffers the library read in this thread's last call (`x`, `h0`,
/// `c0`, `params`, `grad_output`, `grad_h`, `grad_c`, as given): equal to the numpy
/// arrays' `ctypes.data` when they crossed without a copy. For tests.
#[pyfunction]
fn engine_pointers() -> HashMap<&'static str, usize> {
    SEEN.with(|s| s.borrow().clone())
}

/// A contiguous array as the library reads it: a view of numpy's buffer, no copy.
fn view<'a, T: Elem>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    what: &'static str,
) -> PyResult<TensorView<'a, T>> {
    let data = a
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    seen(what, data);
    TensorView::new(data, a.shape()).map_err(lib_err)
}

/// `array`, for an optional argument (None: absent).
fn opt_array<'py, T: Elem>(
    obj: Option<&Bound<'py, PyAny>>,
    what: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    match obj {
        Some(o) if !o.is_none() => Ok(Some(array::<T>(o, what)?)),
        _ => Ok(None),
    }
}

fn opt_view<'a, T: Elem>(
    a: Option<&'a PyReadonlyArrayDyn<'_, T>>,
    what: &'static str,
) -> PyResult<Option<TensorView<'a, T>>> {
    a.map(|a| view(a, what)).transpose()
}

/// A tensor handed to numpy without a copy.
fn to_numpy<'py, T: Elem>(py: Python<'py>, t: Tensor<T>) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape().to_vec();
    let flat = PyArray1::from_vec(py, t.into_data());
    Ok(flat.reshape(shape)?.into_any())
}

fn flat_to_numpy<'py, T: Elem>(py: Python<'py>, v: Vec<T>) -> Bound<'py, PyAny> {
    PyArray1::from_vec(py, v).into_any()
}

/// The arrays of an initial state `(h0, c0)`, borrowed from numpy.
struct StateArrays<'py, T: Elem> {
    h: Option<PyReadonlyArrayDyn<'py, T>>,
    c: Option<PyReadonlyArrayDyn<'py, T>>,
}

impl<'py, T: Elem> StateArrays<'py, T> {
    fn new(h0: Option<&Bound<'py, PyAny>>, c0: Option<&Bound<'py, PyAny>>) -> PyResult<Self> {
        let (h, c) = (opt_array::<T>(h0, "h0")?, opt_array::<T>(c0, "c0")?);
        if h.is_none() && c.is_some() {
            return Err(PyValueError::new_err("c0 given without h0"));
        }
        Ok(Self { h, c })
    }

    /// The state as the library reads it (None: zero), no copy.
    fn view(&self) -> PyResult<Option<StateView<'_, T>>> {
        let Some(h) = opt_view(self.h.as_ref(), "h0")? else {
            return Ok(None);
        };
        let c = opt_view(self.c.as_ref(), "c0")?;
        Ok(Some(StateView { h, c }))
    }
}

fn lengths_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<usize>>> {
    match obj {
        Some(o) if !o.is_none() => {
            let v: Vec<i64> = o.extract().map_err(|_| {
                PyTypeError::new_err("lengths: expected a sequence of integers (one per sequence)")
            })?;
            v.into_iter()
                .map(|n| {
                    usize::try_from(n)
                        .map_err(|_| PyValueError::new_err(format!("lengths: {n} is negative")))
                })
                .collect::<PyResult<Vec<_>>>()
                .map(Some)
        }
        _ => Ok(None),
    }
}

/// Sets the layer's parameters to `params` unless they are equal already (so that the
/// packed weights are kept while the parameters do not change).
fn sync_params<T: Elem>(net: &mut Arc<Recurrent<T>>, params: &[T]) -> PyResult<()> {
    if net.params().len() != params.len() {
        return Err(PyValueError::new_err(format!(
            "params: expected {} values (the layout's length), got {}",
            net.params().len(),
            params.len()
        )));
    }
    if net.params() != params {
        Arc::make_mut(net).params_mut().copy_from_slice(params);
    }
    Ok(())
}

enum Net {
    F32(Arc<Recurrent<f32>>),
    F64(Arc<Recurrent<f64>>),
}

/// Runs `$body` with `$n` bound to the layer's `Arc<Recurrent<T>>` and `$t` to `T`.
macro_rules! on_net {
    ($net:expr, $n:ident, $t:ident => $body:expr) => {
        match $net {
            Net::F32($n) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            Net::F64($n) => {
                #[allow(dead_code)]
                type $t = f64;
                $body
            }
        }
    };
}

fn dtype_of(name: &str) -> PyResult<bool> {
    match name {
        "float32" | "f32" => Ok(false),
        "float64" | "f64" => Ok(true),
        _ => Err(PyValueError::new_err(format!(
            "dtype: expected 'float32' or 'float64', got {name:?}"
        ))),
    }
}

/// A recurrent stack (`recur::Recurrent`) of float32 or float64.
#[pyclass(module = "recur._recur")]
struct Layer {
    net: Net,
}

#[pymethods]
impl Layer {
    /// A stack of the configuration `config_json` (recur's one JSON schema) with
    /// PyTorch's initialisation drawn from `seed`.
    #[new]
    #[pyo3(signature = (config_json, dtype = "float32", seed = 0))]
    fn new(config_json: &str, dtype: &str, seed: u64) -> PyResult<Self> {
        let config = RecurrentConfig::from_json(config_json).map_err(lib_err)?;
        let net = if dtype_of(dtype)? {
            Net::F64(Arc::new(Recurrent::new(config, seed).map_err(lib_err)?))
        } else {
            Net::F32(Arc::new(Recurrent::new(config, seed).map_err(lib_err)?))
        };
        Ok(Self { net })
    }

    /// The configuration as recur's JSON.
    #[getter]
    fn config_json(&self) -> String {
        on_net!(&self.net, n, T => n.config().to_json())
    }

    /// "float32" or "float64".
    #[getter]
    fn dtype(&self) -> &'static str {
        on_net!(&self.net, _n, T => <T as Elem>::NAME)
    }

    /// The parameters in the flat buffer: `(name, shape, offset, len)` in buffer order,
    /// PyTorch's names.
    fn layout(&self) -> Vec<(String, Vec<usize>, usize, usize)> {
        on_net!(&self.net, n, T => n
            .layout()
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone(), e.offset, e.len))
            .collect())
    }

    /// A copy of the flat parameter buffer.
    fn get_params<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        on_net!(&self.net, n, T => flat_to_numpy::<T>(py, n.params().to_vec()))
    }

    /// Sets the flat parameter buffer (a 1-D array of the layout's length).
    fn set_params(&mut self, params: &Bound<'_, PyAny>) -> PyResult<()> {
        on_net!(&mut self.net, n, T => {
            let p = array::<T>(params, "params")?;
            sync_params(n, p.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?)
        })
    }

    /// Inference: `(output, h_n, c_n or None)`.
    #[pyo3(signature = (x, h0 = None, c0 = None, lengths = None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        h0: Option<&Bound<'py, PyAny>>,
        c0: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Outputs<'py>> {
        let lengths = lengths_from(lengths)?;
        forget_seen();
        on_net!(&self.net, n, T => {
            let xa = array::<T>(x, "x")?;
            let x = view(&xa, "x")?;
            let state = StateArrays::<T>::new(h0, c0)?;
            let state = state.view()?;
            let net: &Recurrent<T> = n;
            let out = py
                .detach(|| {
                    let mut call = Call::new().state(state);
                    if let Some(l) = &lengths {
                        call = call.lengths(l);
                    }
                    net.forward(x, call)
                })
                .map_err(lib_err)?;
            let c = out.state.c.map(|c| to_numpy(py, c)).transpose()?;
            Ok((to_numpy(py, out.output)?, to_numpy(py, out.state.h)?, c))
        })
    }

    /// Training forward with the parameters `params` (set first, when they differ):
    /// `(output, h_n, c_n or None, tape)`. `seed` draws the dropout masks.
    #[pyo3(signature = (params, x, h0 = None, c0 = None, lengths = None, seed = None))]
    #[allow(clippy::too_many_arguments)]
    fn forward_train<'py>(
        &mut self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        h0: Option<&Bound<'py, PyAny>>,
        c0: Option<&Bound<'py, PyAny>>,
        lengths: Option<&Bound<'py, PyAny>>,
        seed: Option<u64>,
    ) -> PyResult<(Arr<'py>, Arr<'py>, Option<Arr<'py>>, Tape)> {
        let lengths = lengths_from(lengths)?;
        forget_seen();
        on_net!(&mut self.net, n, T => {
            let pa = array::<T>(params, "params")?;
            let p = view(&pa, "params")?.data();
            let xa = array::<T>(x, "x")?;
            let x = view(&xa, "x")?;
            let state = StateArrays::<T>::new(h0, c0)?;
            let state = state.view()?;
            let (out, tape) = py
                .detach(|| {
                    sync_params(n, p)?;
                    let mut call = Call::new().state(state);
                    if let Some(l) = &lengths {
                        call = call.lengths(l);
                    }
                    if let Some(s) = seed {
                        call = call.seed(s);
                    }
                    n.forward_train(x, call).map_err(lib_err)
                })?;
            let c = out.state.c.map(|c| to_numpy(py, c)).transpose()?;
            Ok((
                to_numpy(py, out.output)?,
                to_numpy(py, out.state.h)?,
                c,
                Tape { tape: Some(TapeAny::from(tape)) },
            ))
        })
    }

    /// BPTT of a training forward's `tape` with the parameters `params`, given the
    /// gradients of the output and the final states (any may be None):
    /// `(grad x, grad h0, grad c0 or None, grad params)`, the last flat as the layout.
    #[pyo3(signature = (tape, params, grad_output = None, grad_h = None, grad_c = None))]
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        tape: &Tape,
        params: &Bound<'py, PyAny>,
        grad_output: Option<&Bound<'py, PyAny>>,
        grad_h: Option<&Bound<'py, PyAny>>,
        grad_c: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Arr<'py>, Arr<'py>, Option<Arr<'py>>, Arr<'py>)> {
        on_net!(&mut self.net, n, T => {
            let Some(tape) = <TapeAny as TapeOf<T>>::get(tape.tape.as_ref()) else {
                return Err(PyValueError::new_err(
                    "tape: recorded by a layer of another dtype, or already released",
                ));
            };
            forget_seen();
            let pa = array::<T>(params, "params")?;
            let p = view(&pa, "params")?.data();
            let dya = opt_array::<T>(grad_output, "grad_output")?;
            let dha = opt_array::<T>(grad_h, "grad_h")?;
            let dca = opt_array::<T>(grad_c, "grad_c")?;
            let grad = OutputGrad {
                output: opt_view(dya.as_ref(), "grad_output")?,
                h: opt_view(dha.as_ref(), "grad_h")?,
                c: opt_view(dca.as_ref(), "grad_c")?,
            };
            let (dx, grads) = py.detach(|| {
                sync_params(n, p)?;
                let mut grads = vec![T::default(); n.params().len()];
                let dx = n.backward(tape, grad, &mut grads).map_err(lib_err)?;
                Ok::<_, PyErr>((dx, grads))
            })?;
            let dc0 = dx.state.c.map(|c| to_numpy(py, c)).transpose()?;
            Ok((
                to_numpy(py, dx.input)?,
                to_numpy(py, dx.state.h)?,
                dc0,
                flat_to_numpy(py, grads),
            ))
        })
    }

    /// A streaming session for `batch` sequences from the zero state (forward stacks).
    fn stepper(&self, batch: usize) -> PyResult<Stepper> {
        let inner = match &self.net {
            Net::F32(n) => StepperAny::F32(
                Stepper32::try_new(n.clone(), |m| m.stepper(batch)).map_err(lib_err)?,
            ),
            Net::F64(n) => StepperAny::F64(
                Stepper64::try_new(n.clone(), |m| m.stepper(batch)).map_err(lib_err)?,
            ),
        };
        Ok(Stepper { inner })
    }

    fn __repr__(&self) -> String {
        format!("Layer({}, dtype={})", self.config_json(), self.dtype())
    }
}

enum TapeAny {
    F32(recur::Tape<f32>),
    F64(recur::Tape<f64>),
}

impl From<recur::Tape<f32>> for TapeAny {
    fn from(t: recur::Tape<f32>) -> Self {
        TapeAny::F32(t)
    }
}

impl From<recur::Tape<f64>> for TapeAny {
    fn from(t: recur::Tape<f64>) -> Self {
        TapeAny::F64(t)
    }
}

trait TapeOf<T> {
    fn get(t: Option<&Self>) -> Option<&recur::Tape<T>>;
}

impl TapeOf<f32> for TapeAny {
    fn get(t: Option<&Self>) -> Option<&recur::Tape<f32>> {
        match t {
            Some(TapeAny::F32(t)) => Some(t),
            _ => None,
        }
    }
}

impl TapeOf<f64> for TapeAny {
    fn get(t: Option<&Self>) -> Option<&recur::Tape<f64>> {
        match t {
            Some(TapeAny::F64(t)) => Some(t),
            _ => None,
        }
    }
}

/// What a training forward kept for the backward.
#[pyclass(module = "recur._recur")]
struct Tape {
    tape: Option<TapeAny>,
}

#[pymethods]
impl Tape {
    /// Bytes held (0 once released).
    #[getter]
    fn bytes(&self) -> usize {
        match &self.tape {
            Some(TapeAny::F32(t)) => t.bytes(),
            Some(TapeAny::F64(t)) => t.bytes(),
            None => 0,
        }
    }

    /// Frees what the tape holds (a backward afterwards is an error).
    fn release(&mut self) {
        self.tape = None;
    }
}

type RecurStepper32<'a> = recur::Stepper<'a, f32>;
type RecurStepper64<'a> = recur::Stepper<'a, f64>;

self_cell::self_cell!(
    struct Stepper32 {
        owner: Arc<Recurrent<f32>>,
        #[not_covariant]
        dependent: RecurStepper32,
    }
);

self_cell::self_cell!(
    struct Stepper64 {
        owner: Arc<Recurrent<f64>>,
        #[not_covariant]
        dependent: RecurStepper64,
    }
);

enum StepperAny {
    F32(Stepper32),
    F64(Stepper64),
}

/// Streaming inference: one step at a time, the state carried between calls.
#[pyclass(module = "recur._recur")]
struct Stepper {
    inner: StepperAny,
}

fn step_generic<'py, T: Elem>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    batch: usize,
    h_out: usize,
    run: impl FnOnce(&[T], &mut [T]) -> recur::Result<()> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    let x = array::<T>(x, "x")?;
    if x.shape().len() != 2 {
        return Err(PyValueError::new_err(format!(
            "x: expected shape [batch, input_size], got {:?}",
            x.shape()
        )));
    }
    forget_seen();
    let xs = view(&x, "x")?.data();
    let mut out = vec![T::zero(); batch * h_out];
    py.detach(|| run(xs, &mut out)).map_err(lib_err)?;
    Ok(PyArray1::from_vec(py, out)
        .reshape([batch, h_out])?
        .into_any())
}

#[pymethods]
impl Stepper {
    /// One step: `x` is `[batch, input_size]`; returns the top layer's output
    /// `[batch, H_out]`.
    fn step<'py>(&mut self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match &mut self.inner {
            StepperAny::F32(s) => {
                let b = s.borrow_owner().config().h_out();
                let batch = s.with_dependent(|_, d| d.batch());
                step_generic::<f32>(py, x, batch, b, |x, o| {
                    s.with_dependent_mut(|_, d| d.step(x, o))
                })
            }
            StepperAny::F64(s) => {
                let b = s.borrow_owner().config().h_out();
                let batch = s.with_dependent(|_, d| d.batch());
                step_generic::<f64>(py, x, batch, b, |x, o| {
                    s.with_dependent_mut(|_, d| d.step(x, o))
                })
            }
        }
    }

    /// The current state `(h, c or None)`, `[num_layers, batch, ·]`.
    fn state<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        match &self.inner {
            StepperAny::F32(s) => {
                let st = s.with_dependent(|_, d| d.state());
                Ok((
                    to_numpy(py, st.h)?,
                    st.c.map(|c| to_numpy(py, c)).transpose()?,
                ))
            }
            StepperAny::F64(s) => {
                let st = s.with_dependent(|_, d| d.state());
                Ok((
                    to_numpy(py, st.h)?,
                    st.c.map(|c| to_numpy(py, c)).transpose()?,
                ))
            }
        }
    }

    /// Continues from the state `(h, c)` (c for an LSTM only).
    #[pyo3(signature = (h, c = None))]
    fn set_state(&mut self, h: &Bound<'_, PyAny>, c: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        match &mut self.inner {
            StepperAny::F32(s) => {
                forget_seen();
                let st = StateArrays::<f32>::new(Some(h), c)?;
                let st = st.view()?.expect("h given");
                s.with_dependent_mut(|_, d| d.set_state(st))
                    .map_err(lib_err)
            }
            StepperAny::F64(s) => {
                forget_seen();
                let st = StateArrays::<f64>::new(Some(h), c)?;
                let st = st.view()?.expect("h given");
                s.with_dependent_mut(|_, d| d.set_state(st))
                    .map_err(lib_err)
            }
        }
    }

    /// Back to the zero state.
    fn reset(&mut self) {
        match &mut self.inner {
            StepperAny::F32(s) => s.with_dependent_mut(|_, d| d.reset()),
            StepperAny::F64(s) => s.with_dependent_mut(|_, d| d.reset()),
        }
    }

    /// The number of sequences stepped together.
    #[getter]
    fn batch(&self) -> usize {
        match &self.inner {
            StepperAny::F32(s) => s.with_dependent(|_, d| d.batch()),
            StepperAny::F64(s) => s.with_dependent(|_, d| d.batch()),
        }
    }
}

enum ModelAny {
    F32(SequenceModel<f32>),
    F64(SequenceModel<f64>),
    /// an echo state network (`recur train --cell esn`), always float64
    Esn(Box<Esn>),
}

/// A whole sequence model (embedding or dense input, recurrent stack, linear head) from a
/// model file or checkpoint, or an echo state network's file.
#[pyclass(module = "recur._recur")]
struct Model {
    model: ModelAny,
    /// the checkpoint's or file's string metadata (recur.* keys and extras)
    metadata: Vec<(String, String)>,
    /// what predicting needs besides the weights, read from `metadata`
    meta: PredictMeta,
    /// the file, for messages
    file: String,
}

fn model_predict<'py, T: Elem>(
    py: Python<'py>,
    m: &SequenceModel<T>,
    x: &Bound<'py, PyAny>,
    lengths: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyAny>> {
    to_numpy(py, model_outputs(py, m, x, lengths)?)
}

/// The head's outputs for `x` (see [`Model::predict_raw`]).
fn model_outputs<'py, T: Elem>(
    py: Python<'py>,
    m: &SequenceModel<T>,
    x: &Bound<'py, PyAny>,
    lengths: Option<Vec<usize>>,
) -> PyResult<Tensor<T>> {
    let run = |input: ModelInput<'_, T>| {
        let mut call = Call::new();
        if let Some(l) = &lengths {
            call = call.lengths(l);
        }
        m.forward(input, call).map_err(lib_err)
    };
    let out = match &m.config().input {
        Input::Embedding(_) => {
            let ids: PyReadonlyArrayDyn<'py, i64> = x
                .cast::<PyArrayDyn<i64>>()
                .map_err(|_| {
                    PyTypeError::new_err(
                        "x: this model reads token ids: expected a numpy array of int64",
                    )
                })?
                .try_readonly()?;
            let shape = ids.shape().to_vec();
            if shape.len() != 2 {
                return Err(PyValueError::new_err(format!(
                    "x: expected token ids of shape [seq_len, batch] (or batch-first), got {shape:?}"
                )));
            }
            let ids: Vec<usize> = ids
                .as_array()
                .iter()
                .map(|&i| {
                    usize::try_from(i)
                        .map_err(|_| PyValueError::new_err(format!("x: token id {i} is negative")))
                })
                .collect::<PyResult<_>>()?;
            py.detach(|| {
                run(ModelInput::Ids {
                    ids: &ids,
                    shape: [shape[0], shape[1]],
                })
            })?
        }
        Input::Dense => {
            forget_seen();
            let xa = array::<T>(x, "x")?;
            let t = view(&xa, "x")?;
            py.detach(|| run(ModelInput::Features(t)))?
        }
    };
    Ok(out.output)
}

/// An echo state network's readout for `x` (float64 `[seq_len, batch, inputs]`).
fn esn_outputs(
    py: Python<'_>,
    esn: &Esn,
    x: &Bound<'_, PyAny>,
    lengths: Option<Vec<usize>>,
) -> PyResult<Tensor<f64>> {
    let a = array::<f64>(x, "x")?;
    let t = view(&a, "x")?.to_tensor();
    py.detach(|| esn.predict(&t, lengths.as_deref()))
        .map_err(lib_err)
}

/// An echo state network forecaster's output for one window, as f32 (as `recur predict`
/// rounds it, for the library's decoding).
fn esn_forecast_outputs(esn: &Esn, x: &Tensor<f32>) -> recur::Result<Vec<f32>> {
    let xt = Tensor::new(x.data().iter().map(|&v| f64::from(v)).collect(), x.shape())?;
    let out = esn.predict(&xt, None)?;
    Ok(out.data().iter().map(|&v| v as f32).collect())
}

/// A forecaster's output for one window `x` `[window, 1, input_size]`, as f32 (the
/// library's decoding reads f32 outputs; a float64 model's are rounded to them).
fn forecast_outputs<T: Elem>(m: &SequenceModel<T>, x: &Tensor<f32>) -> recur::Result<Vec<f32>> {
    let xt: Vec<T> = x.data().iter().map(|&v| <T as Elem>::of_f32(v)).collect();
    let xt = Tensor::new(xt, x.shape())?;
    let out = m.forward(ModelInput::Features(xt.view()), Call::new())?;
    Ok(out.output.data().iter().map(|&v| v.to_f32()).collect())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Classifier => "classifier",
        Role::Regressor => "regressor",
        Role::Forecaster => "forecaster",
        Role::LanguageModel => "language_model",
        Role::Other => "other",
        Role::Unknown => "unknown",
    }
}

#[pymethods]
impl Model {
    /// The head's outputs for `x` (token ids as int64 for a model with an embedding, else
    /// features of the model's dtype): `[seq_len, batch, out]` for a model that predicts at
    /// every step, `[batch, out]` for one that reads each sequence's final state.
    #[pyo3(signature = (x, lengths = None))]
    fn predict_raw<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        lengths: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lengths = lengths_from(lengths)?;
        match &self.model {
            ModelAny::F32(m) => model_predict(py, m, x, lengths),
            ModelAny::F64(m) => model_predict(py, m, x, lengths),
            ModelAny::Esn(e) => to_numpy(py, esn_outputs(py, e, x, lengths)?),
        }
    }

    /// A classifier's classes for `x`: `(indices int64 [N], probabilities float64 [N, C])`,
    /// the columns in the order of [`Model::classes`].
    #[pyo3(signature = (x, lengths = None))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        lengths: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Arr<'py>, Arr<'py>)> {
        let Some(classes) = &self.meta.classes else {
            return Err(RecurError::new_err(format!(
                "{}: {}, not a classifier: it has no class probabilities",
                self.file,
                self.meta.role().describe()
            )));
        };
        let lengths = lengths_from(lengths)?;
        let logits: Vec<f64> = match &self.model {
            ModelAny::F32(m) => model_outputs(py, m, x, lengths)?
                .data()
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
            ModelAny::F64(m) => model_outputs(py, m, x, lengths)?.into_data(),
            ModelAny::Esn(e) => esn_outputs(py, e, x, lengths)?.into_data(),
        };
        let c = classes.len();
        let proba = predict::class_probabilities(&logits, c).map_err(lib_err)?;
        let ids: Vec<i64> = predict::best_classes(&proba, c)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        let n = ids.len();
        Ok((
            PyArray1::from_vec(py, ids).into_any(),
            PyArray1::from_vec(py, proba).reshape([n, c])?.into_any(),
        ))
    }

    /// A forecaster's forecast of the steps after each series' last row of a history in CSV
    /// (a file at `path`, or the bytes `data`): `(header, series ids or None, times or None,
    /// values float64 [series × horizon, targets])`, the rows as `recur predict` writes them.
    #[pyo3(signature = (path = None, data = None))]
    #[allow(clippy::type_complexity)]
    fn forecast_csv<'py>(
        &self,
        py: Python<'py>,
        path: Option<std::path::PathBuf>,
        data: Option<Vec<u8>>,
    ) -> PyResult<(
        Vec<String>,
        Option<Vec<String>>,
        Option<Vec<String>>,
        Arr<'py>,
    )> {
        let Some(spec) = &self.meta.forecast else {
            return Err(RecurError::new_err(format!(
                "{}: {}, not a forecaster",
                self.file,
                self.meta.role().describe()
            )));
        };
        if path.is_some() == data.is_some() {
            return Err(PyValueError::new_err(
                "history: give a CSV file (path) or its bytes (data), one of them",
            ));
        }
        let columns = spec.csv_columns();
        let f = py
            .detach(|| {
                let table = match (&path, &data) {
                    (Some(p), _) => SeriesTable::read_csv(p, &columns)?,
                    (None, d) => SeriesTable::parse_csv(
                        d.as_deref().unwrap_or_default(),
                        "history",
                        &columns,
                    )?,
                };
                match &self.model {
                    ModelAny::F32(m) => predict::forecast(spec, &table, |x| forecast_outputs(m, x)),
                    ModelAny::F64(m) => predict::forecast(spec, &table, |x| forecast_outputs(m, x)),
                    ModelAny::Esn(e) => {
                        predict::forecast(spec, &table, |x| esn_forecast_outputs(e, x))
                    }
                }
            })
            .map_err(lib_err)?;
        let (h, nt) = (spec.horizon, spec.targets.len());
        let repeat = |each: &dyn Fn(&predict::SeriesForecast) -> Vec<String>| -> Vec<String> {
            f.series.iter().flat_map(each).collect()
        };
        let ids = spec
            .series_column
            .as_ref()
            .map(|_| repeat(&|s| vec![s.id.clone().unwrap_or_default(); h]));
        let times = predict::Forecast::has_times(spec).then(|| repeat(&|s| s.times.clone()));
        let n = f.series.len() * h;
        let values = PyArray1::from_vec(py, f.values())
            .reshape([n, nt])?
            .into_any();
        Ok((predict::Forecast::header(spec), ids, times, values))
    }

    /// What the model predicts: `classifier`, `regressor`, `forecaster`, `language_model`,
    /// `other` (a generated task's) or `unknown` (the file records no kind).
    #[getter]
    fn role(&self) -> &'static str {
        role_name(self.meta.role())
    }

    /// The kind of run the file records (`sequences`, `forecast`, `text`, ...), or None.
    #[getter]
    fn kind(&self) -> Option<String> {
        self.meta.kind.clone()
    }

    /// A classifier's class names in the order of its outputs, or None.
    #[getter]
    fn classes(&self) -> Option<Vec<String>> {
        self.meta.classes.clone()
    }

    /// The value of metadata key `key` (one of `recur.extra.<key>`), or None.
    fn extra(&self, key: &str) -> Option<String> {
        let full = format!("{}{key}", predict::SAFETENSORS_META_PREFIX);
        self.metadata
            .iter()
            .find(|(k, _)| *k == full)
            .map(|(_, v)| v.clone())
    }

    /// The recurrent stack alone, as a [`Layer`] (a copy); an echo state network has none.
    fn rnn(&self) -> PyResult<Layer> {
        match &self.model {
            ModelAny::F32(m) => Ok(Layer {
                net: Net::F32(Arc::new(m.rnn().clone())),
            }),
            ModelAny::F64(m) => Ok(Layer {
                net: Net::F64(Arc::new(m.rnn().clone())),
            }),
            ModelAny::Esn(_) => Err(RecurError::new_err(format!(
                "{}: an echo state network: its reservoir is not a recurrent stack",
                self.file
            ))),
        }
    }

    /// The model's configuration as recur's JSON (an echo state network's: the file's
    /// `recur.esn`).
    #[getter]
    fn config_json(&self) -> String {
        match &self.model {
            ModelAny::F32(m) => recur::io::model_config_to_json(m.config()),
            ModelAny::F64(m) => recur::io::model_config_to_json(m.config()),
            ModelAny::Esn(_) => self
                .metadata
                .iter()
                .find(|(k, _)| k == "recur.esn")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }

    /// The file's string metadata.
    #[getter]
    fn metadata(&self) -> Vec<(String, String)> {
        self.metadata.clone()
    }
}

/// What a safetensors file says it is (`recur.format`), or None for a file that is not
/// safetensors (ONNX is then tried).
fn safetensors_metadata(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let mut v: Vec<(String, String)> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    v.sort();
    Some(v)
}

/// Opens a checkpoint or model file (a [`Model`]), a PyTorch state_dict as safetensors or
/// an ONNX file holding one recurrent stack (a [`Layer`]).
#[pyfunction]
#[pyo3(signature = (path, dtype = "float32"))]
fn load(py: Python<'_>, path: std::path::PathBuf, dtype: &str) -> PyResult<Py<PyAny>> {
    let f64_ = dtype_of(dtype)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| RecurError::new_err(format!("{}: {e}", path.display())))?;
    let Some(meta) = safetensors_metadata(&bytes) else {
        if f64_ {
            return Err(PyValueError::new_err("an ONNX file loads as float32 only"));
        }
        let layer = py
            .detach(|| {
                let model = recur::onnx::OnnxModel::load(&path)?;
                recur::onnx::import_recurrent(&model)
            })
            .map_err(lib_err)?;
        return Ok(Py::new(
            py,
            Layer {
                net: Net::F32(Arc::new(layer)),
            },
        )?
        .into_any());
    };
    let format = meta
        .iter()
        .find(|(k, _)| k == "recur.format")
        .map(|(_, v)| v.as_str());
    let file = path.display().to_string();
    let predict_meta =
        PredictMeta::from_safetensors(&file, meta.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(lib_err)?;
    let model = match format {
        Some(f) if f == recur::io::CHECKPOINT_FORMAT => {
            if f64_ {
                ModelAny::F64(load_checkpoint::<f64>(&path, None).map_err(lib_err)?.model)
            } else {
                ModelAny::F32(load_checkpoint::<f32>(&path, None).map_err(lib_err)?.model)
            }
        }
        Some(f) if f == ESN_FORMAT => ModelAny::Esn(Box::new(load_esn(&path).map_err(lib_err)?.0)),
        Some(f) if f == MODEL_FORMAT => {
            if f64_ {
                ModelAny::F64(load_model::<f64>(&path).map_err(lib_err)?)
            } else {
                ModelAny::F32(load_model::<f32>(&path).map_err(lib_err)?)
            }
        }
        _ => {
            let options = LoadOptions::default();
            let net = if f64_ {
                Net::F64(Arc::new(
                    load_state_dict::<f64>(&path, &options).map_err(lib_err)?,
                ))
            } else {
                Net::F32(Arc::new(
                    load_state_dict::<f32>(&path, &options).map_err(lib_err)?,
                ))
            };
            return Ok(Py::new(py, Layer { net })?.into_any());
        }
    };
    Ok(Py::new(
        py,
        Model {
            model,
            metadata: meta,
            meta: predict_meta,
            file,
        },
    )?
    .into_any())
}

/// Writes a layer's parameters as a PyTorch state_dict (safetensors, with recur's
/// configuration in the metadata).
#[pyfunction]
fn save_state_dict(layer: &Layer, path: std::path::PathBuf) -> PyResult<()> {
    let options = recur::io::SaveOptions::default();
    on_net!(&layer.net, n, T => recur::io::save_state_dict::<T>(n, &path, &options).map_err(lib_err))
}

#[pymodule]
fn _recur(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RecurError", m.py().get_type::<RecurError>())?;
    m.add_class::<Layer>()?;
    m.add_class::<Tape>()?;
    m.add_class::<Stepper>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(save_state_dict, m)?)?;
    m.add_function(wrap_pyfunction!(engine_pointers, m)?)?;
    Ok(())
}
