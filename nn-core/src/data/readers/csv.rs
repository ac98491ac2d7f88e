//! CSV files with a header row (feature `csv`, the `csv` crate): numeric columns as
//! features, one column as the label.

use super::bad;
use crate::data::dataset::check_index;
use crate::data::Dataset;
use crate::{Result, Tensor};
use std::path::Path;

/// A CSV table of numbers: sample `i` is `(features f32 [F], label)` where the label
/// column holds class indices (integers) and every other column a number.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{readers::CsvDataset, Dataset};
/// let path = std::env::temp_dir().join(format!("doc-{}.csv", std::process::id()));
/// std::fs::write(&path, "x,y,class\n0.5,1,0\n2,3.5,1\n")?;
/// let ds = CsvDataset::read(&path, "class")?;
/// let (x, y) = ds.get(1)?;
/// assert_eq!((x.to_vec::<f32>()?, y), (vec![2.0, 3.5], 1));
/// assert_eq!(ds.feature_names(), &["x", "y"]);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CsvDataset {
    names: Vec<String>,
    features: Vec<f32>,
    labels: Vec<i64>,
}

impl CsvDataset {
    /// Reads `path`; `label` names the label column. A cell that is not a number (or,
    /// in the label column, not an integer) is an error naming the file, line and column.
    pub fn read(path: impl AsRef<Path>, label: &str) -> Result<CsvDataset> {
        let path = path.as_ref();
        let err = |e: ::csv::Error| match e.into_kind() {
            ::csv::ErrorKind::Io(io) => crate::Error::io(path, io),
            k => bad(path, format!("{k:?}")),
        };
        let mut r = ::csv::Reader::from_path(path).map_err(err)?;
        let header: Vec<String> = r
            .headers()
            .map_err(err)?
            .iter()
            .map(str::to_string)
            .collect();
        let Some(lab) = header.iter().position(|h| h == label) else {
            return Err(bad(
                path,
                format!("no column `{label}` in the header {header:?}"),
            ));
        };
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != lab)
            .map(|(_, h)| h.clone())
            .collect();
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for rec in r.records() {
            let rec = rec.map_err(err)?;
            let line = rec.position().map_or(0, |p| p.line());
            for (c, cell) in rec.iter().enumerate() {
                let cell = cell.trim();
                if c == lab {
                    let v = cell.parse::<i64>().map_err(|_| {
                        bad(
                            path,
                            format!(
                                "line {line}, column `{}`: label {cell:?} is not an integer",
                                header[c]
                            ),
                        )
                    })?;
                    labels.push(v);
                } else {
                    let v = cell.parse::<f32>().map_err(|_| {
                        bad(
                            path,
                            format!(
                                "line {line}, column `{}`: {cell:?} is not a number",
                                header[c]
                            ),
                        )
                    })?;
                    features.push(v);
                }
            }
        }
        Ok(CsvDataset {
            names,
            features,
            labels,
        })
    }

    /// The feature columns' names, in order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// All features `[N, F]` and labels `[N]`, as one [`crate::data::TensorDataset`] wants them.
    pub fn tensors(&self) -> Result<(Tensor, Tensor)> {
        let n = self.labels.len();
        Ok((
            Tensor::from_slice(&self.features, &[n, self.names.len()])?,
            Tensor::from_slice(&self.labels, &[n])?,
        ))
    }
}

impl Dataset for CsvDataset {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<(Tensor, i64)> {
        check_index("CsvDataset::get", index, self.labels.len())?;
        let f = self.names.len();
        Ok((
            Tensor::from_slice(&self.features[index * f..(index + 1) * f], &[f])?,
            self.labels[index],
        ))
    }
}
