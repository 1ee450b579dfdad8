//! A CSV file of series (`recur train --csv`, `recur predict`), under every missing-value
//! policy, with and without a time and a series column; every value read is finite.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::series::{CsvColumns, Missing, SeriesTable};

fuzz_target!(|data: &[u8]| {
    for missing in [Missing::Error, Missing::Drop, Missing::Ffill, Missing::Interpolate] {
        for (time, series) in [(None, None), (Some("t"), None), (Some("t"), Some("id"))] {
            let columns = CsvColumns {
                targets: vec!["y".into()],
                features: vec!["x".into()],
                time: time.map(Into::into),
                series: series.map(Into::into),
                missing,
            };
            let _ = SeriesTable::parse_csv(data, "fuzz.csv", &columns);
        }
    }
});
