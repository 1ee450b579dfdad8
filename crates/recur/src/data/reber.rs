//! The embedded Reber grammar (Hochreiter & Schmidhuber 1997, "Long short-term memory", §5.1,
//! experiment 1, after Cleeremans, Servan-Schreiber & McClelland 1989): predict the next
//! symbol of a string of the grammar.
//!
//! Seven symbols `B T P S X V E`, one-hot. The Reber grammar is the automaton
//! ```text
//! 0 -B-> 1      1 -T-> 2   1 -P-> 3      2 -S-> 2   2 -X-> 4      3 -T-> 3   3 -V-> 5
//! 4 -X-> 3   4 -S-> 6      5 -P-> 4   5 -V-> 6      6 -E-> end
//! ```
//! each of two branches taken with probability 1/2; the embedded grammar wraps one Reber
//! string as `B T ‹reber› T E` or `B P ‹reber› P E`. The second symbol must be remembered
//! across the whole inner string to predict the second to last: the long lag.
//!
//! As in the paper, the model reads the string one symbol at a time and at each step predicts
//! the next one: the target after each prefix is the set of symbols the grammar allows next
//! (one or two), a 0/1 vector. A step counts as correct when the outputs of the allowed
//! symbols are the most active ones (the paper's criterion), a string when all its steps are.
//! A string of n symbols gives n − 1 steps: its last symbol E is never read.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Split;
use crate::error::{Error, Result, shape_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// One batch of embedded Reber strings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReberBatch<T> {
    /// One-hot symbols `[seq_len, batch, 7]`, every symbol of each string but its last; zero
    /// past each end.
    pub input: Tensor<T>,
    /// The symbols allowed next, 0/1 `[seq_len, batch, 7]`; zero past each end.
    pub target: Tensor<T>,
    /// Steps of each string (its length − 1).
    pub lengths: Vec<usize>,
}

/// A seeded, deterministic generator of embedded Reber strings.
///
/// ```
/// use recur::data::{EmbeddedReber, Split};
/// let mut g = EmbeddedReber::new(1, Split::Train);
/// let b = g.sample::<f32>(4)?;
/// assert_eq!(b.input.shape()[1..], [4, EmbeddedReber::SYMBOLS]);
/// assert!(b.lengths.iter().all(|&n| n >= 8)); // B T B T X S E T E at the shortest
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EmbeddedReber {
    rng: ChaCha8Rng,
}

/// `B T P S X V E`.
const ALPHABET: [char; 7] = ['B', 'T', 'P', 'S', 'X', 'V', 'E'];
const B: usize = 0;
const T: usize = 1;
const P: usize = 2;
const E: usize = 6;

/// The Reber grammar's branches: state → [(symbol, next state); 2] (state 6 emits E).
const REBER: [[(usize, usize); 2]; 6] = [
    [(B, 1), (B, 1)],
    [(T, 2), (P, 3)],
    [(3, 2), (4, 4)],
    [(T, 3), (5, 5)],
    [(4, 3), (3, 6)],
    [(P, 4), (5, 6)],
];

impl EmbeddedReber {
    /// Symbols, in and out.
    pub const SYMBOLS: usize = 7;

    /// A generator drawing from the stream of `split` of a ChaCha8 generator seeded with
    /// `seed`.
    pub fn new(seed: u64, split: Split) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Self { rng }
    }

    /// The symbols' letters, in index order.
    pub fn alphabet() -> [char; 7] {
        ALPHABET
    }

    /// One string and, after each of its prefixes but the whole, the set of symbols allowed
    /// next (as bit masks over the alphabet).
    fn string(&mut self) -> (Vec<usize>, Vec<u8>) {
        let bit = |s: usize| 1u8 << s;
        let branch = if self.rng.random_bool(0.5) { T } else { P };
        let mut s = vec![B, branch];
        let mut next = vec![bit(T) | bit(P), bit(B)];
        let mut state = 0;
        while state != 6 {
            let (sym, to) = REBER[state][usize::from(self.rng.random_bool(0.5))];
            s.push(sym);
            state = to;
            next.push(if state == 6 {
                bit(E)
            } else {
                REBER[state].iter().fold(0, |m, &(c, _)| m | bit(c))
            });
        }
        s.push(E);
        next.push(bit(branch));
        s.push(branch);
        next.push(bit(E));
        s.push(E);
        (s, next)
    }

    /// The next `batch` strings.
    ///
    /// # Errors
    /// [`Error::Empty`] when `batch` is 0.
    pub fn sample<F: Float>(&mut self, batch: usize) -> Result<ReberBatch<F>> {
        if batch == 0 {
            return Err(Error::Empty("an embedded Reber batch of 0 strings".into()));
        }
        let strings: Vec<(Vec<usize>, Vec<u8>)> = (0..batch).map(|_| self.string()).collect();
        let lengths: Vec<usize> = strings.iter().map(|(s, _)| s.len() - 1).collect();
        let n = lengths.iter().copied().max().unwrap_or(0);
        let k = Self::SYMBOLS;
        let mut x = vec![F::zero(); n * batch * k];
        let mut y = vec![F::zero(); n * batch * k];
        for (b, (s, next)) in strings.iter().enumerate() {
            for (t, (&sym, &mask)) in s.iter().zip(next).enumerate() {
                let row = (t * batch + b) * k;
                x[row + sym] = F::one();
                for c in 0..k {
                    if mask & (1 << c) != 0 {
                        y[row + c] = F::one();
                    }
                }
            }
        }
        Ok(ReberBatch {
            input: Tensor::new(x, &[n, batch, k])?,
            target: Tensor::new(y, &[n, batch, k])?,
            lengths,
        })
    }

    /// The paper's criterion on `outputs` `[seq_len, batch, 7]` for `batch`: (the share of
    /// steps whose allowed symbols have the highest outputs, the share of strings with every
    /// step so).
    ///
    /// # Errors
    /// [`Error::Shape`] when `outputs` is not shaped like the batch's target.
    pub fn accuracy<F: Float>(outputs: &Tensor<F>, batch: &ReberBatch<F>) -> Result<(f64, f64)> {
        if outputs.shape() != batch.target.shape() {
            return Err(shape_err("outputs", batch.target.shape(), outputs.shape()));
        }
        let k = Self::SYMBOLS;
        let nb = batch.lengths.len();
        let (z, y) = (outputs.data(), batch.target.data());
        let (mut steps, mut good_steps, mut good_strings) = (0usize, 0usize, 0usize);
        for (b, &len) in batch.lengths.iter().enumerate() {
            let mut all = true;
            for t in 0..len {
                let row = (t * nb + b) * k;
                let (z, y) = (&z[row..row + k], &y[row..row + k]);
                // every allowed output above every other one
                let low = (0..k).filter(|&c| y[c] > F::zero()).map(|c| z[c]);
                let high = (0..k).filter(|&c| y[c] == F::zero()).map(|c| z[c]);
                let min_allowed = low.fold(F::infinity(), F::min);
                let max_other = high.fold(F::neg_infinity(), F::max);
                let ok = min_allowed > max_other;
                steps += 1;
                good_steps += usize::from(ok);
                all &= ok;
            }
            good_strings += usize::from(all);
        }
        Ok((
            good_steps as f64 / steps.max(1) as f64,
            good_strings as f64 / nb as f64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar written out independently, as one automaton over the embedded strings'
    /// states (`o*` outer, `t*` / `p*` the inner automaton under the T or the P branch), and
    /// the set of allowed successors of a prefix found by running it on the prefix.
    fn oracle_next(prefix: &str) -> Option<String> {
        let inner = |q: &str| -> Vec<(char, String)> {
            let (br, st) = q.split_at(1);
            let e = |c: char, s: &str| (c, format!("{br}{s}"));
            match st {
                "0" => vec![e('B', "1")],
                "1" => vec![e('T', "2"), e('P', "3")],
                "2" => vec![e('S', "2"), e('X', "4")],
                "3" => vec![e('T', "3"), e('V', "5")],
                "4" => vec![e('X', "3"), e('S', "6")],
                "5" => vec![e('P', "4"), e('V', "6")],
                "6" => vec![e('E', "e")],
                "e" => vec![(br.to_uppercase().chars().next().unwrap(), "z".into())],
                _ => unreachable!(),
            }
        };
        let edges = |q: &str| -> Vec<(char, String)> {
            match q {
                "start" => vec![('B', "o1".into())],
                "o1" => vec![('T', "t0".into()), ('P', "p0".into())],
                "z" => vec![('E', "end".into())],
                "end" => vec![],
                q => inner(q),
            }
        };
        let mut q = "start".to_string();
        for c in prefix.chars() {
            q = edges(&q).into_iter().find(|(s, _)| *s == c)?.1;
        }
        let mut next: Vec<char> = edges(&q).into_iter().map(|(c, _)| c).collect();
        next.sort_unstable();
        Some(next.into_iter().collect())
    }

    #[test]
    fn targets_are_the_grammars_successors() {
        let mut g = EmbeddedReber::new(3, Split::Train);
        let batch = 300;
        let b = g.sample::<f64>(batch).unwrap();
        let n = b.input.shape()[0];
        let (mut tp, mut longest) = ([0usize; 2], 0);
        for s in 0..batch {
            let len = b.lengths[s];
            longest = longest.max(len);
            let row =
                |v: &[f64], t: usize| v[(t * batch + s) * 7..(t * batch + s + 1) * 7].to_vec();
            let mut prefix = String::new();
            for t in 0..len {
                let x = row(b.input.data(), t);
                assert_eq!(x.iter().sum::<f64>(), 1.0, "one-hot");
                let sym = x.iter().position(|&v| v == 1.0).unwrap();
                prefix.push(ALPHABET[sym]);
                let want = oracle_next(&prefix).expect("the string follows the grammar");
                let y = row(b.target.data(), t);
                let mut got: Vec<char> = (0..7)
                    .filter(|&c| y[c] == 1.0)
                    .map(|c| ALPHABET[c])
                    .collect();
                got.sort_unstable();
                assert_eq!(got.into_iter().collect::<String>(), want, "after {prefix}");
            }
            // the string's last symbol, E, is the only one allowed after the whole input
            assert_eq!(oracle_next(&prefix).unwrap(), "E");
            tp[usize::from(prefix.as_bytes()[1] == b'P')] += 1;
            for t in len..n {
                assert!(row(b.input.data(), t).iter().all(|&v| v == 0.0));
                assert!(row(b.target.data(), t).iter().all(|&v| v == 0.0));
            }
        }
        assert!(tp.iter().all(|&c| c > 100), "{tp:?}");
        assert_eq!(longest, n);
    }

    #[test]
    fn the_criterion_and_the_seed() {
        let mut g = EmbeddedReber::new(0, Split::Valid);
        let b = g.sample::<f64>(5).unwrap();
        // the target itself is a perfect prediction
        assert_eq!(EmbeddedReber::accuracy(&b.target, &b).unwrap(), (1.0, 1.0));
        // one wrong step in string 2
        let mut z = b.target.clone();
        let row = 5 * 7 + 2 * 7; // step 1, string 2: only B allowed
        z.data_mut()[row + 6] = 2.0;
        let (steps, strings) = EmbeddedReber::accuracy(&z, &b).unwrap();
        let total: usize = b.lengths.iter().sum();
        assert_eq!(steps, (total - 1) as f64 / total as f64);
        assert_eq!(strings, 4.0 / 5.0);
        let flat = Tensor::new(vec![0.0; 7], &[1, 1, 7]).unwrap();
        assert!(EmbeddedReber::accuracy(&flat, &b).is_err());
        assert!(g.sample::<f32>(0).is_err());
        let draw = |seed, split| EmbeddedReber::new(seed, split).sample::<f32>(3).unwrap();
        assert_eq!(draw(1, Split::Train), draw(1, Split::Train));
        assert_ne!(draw(1, Split::Train), draw(1, Split::Test));
        assert_ne!(draw(1, Split::Train), draw(2, Split::Train));
    }
}
