//! What a source hands to the writer: validated series with their samples,
//! exemplars and metadata, plus what it had to reject and why.

use std::sync::Arc;

use comet_schema::rows::ExemplarRow;
use comet_schema::{Labels, Metadata, NativeHistogram, Sample};

use crate::series::Series;

/// One series and its samples, already validated.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    /// Shared with every other batch naming the same series.
    pub series: Arc<Series>,
    /// In timestamp order.
    pub samples: Vec<Sample>,
}

impl SeriesSamples {
    pub fn new(series: Arc<Series>, samples: Vec<Sample>) -> Self {
        Self { series, samples }
    }

    pub fn labels(&self) -> &Labels {
        self.series.labels()
    }

    pub fn fingerprint(&self) -> u64 {
        self.series.fingerprint()
    }
}

/// One series and its native histogram samples, already validated.
#[derive(Debug, Clone)]
pub struct SeriesHistograms {
    pub series: Arc<Series>,
    /// In timestamp order.
    pub histograms: Vec<NativeHistogram>,
}

impl SeriesHistograms {
    pub fn fingerprint(&self) -> u64 {
        self.series.fingerprint()
    }
}

/// Something a source could not accept, with the reason as a short
/// machine-readable code (a /metrics label) and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
    /// Float samples lost with it.
    pub samples: u64,
    /// Native histogram samples lost with it.
    pub histograms: u64,
}

/// The unit of work from a source to the writer.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub series: Vec<SeriesSamples>,
    pub histograms: Vec<SeriesHistograms>,
    /// Exemplars, already in the shape of the `exemplars` table.
    pub exemplars: Vec<ExemplarRow>,
    pub metadata: Vec<Metadata>,
}

impl WriteBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    pub fn histogram_count(&self) -> usize {
        self.histograms.iter().map(|s| s.histograms.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.samples.is_empty())
            && self.histograms.iter().all(|s| s.histograms.is_empty())
            && self.exemplars.is_empty()
            && self.metadata.is_empty()
    }

    /// Approximate memory held by the batch while it waits in the writer,
    /// used for the buffered-memory ceiling.
    pub fn estimated_bytes(&self) -> usize {
        // Series themselves live in the registry, which has its own bound.
        let series: usize = self
            .series
            .iter()
            .map(|s| 48 + s.samples.len() * std::mem::size_of::<Sample>())
            .sum();
        let exemplars: usize = self
            .exemplars
            .iter()
            .map(|e| {
                96 + e.metric_name.len()
                    + e.labels
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 48)
                        .sum::<usize>()
            })
            .sum();
        let metadata: usize = self
            .metadata
            .iter()
            .map(|m| 96 + m.metric_family_name.len() + m.help.len() + m.unit.len())
            .sum();
        let histograms: usize = self
            .histograms
            .iter()
            .map(|s| {
                48 + s
                    .histograms
                    .iter()
                    .map(NativeHistogram::estimated_bytes)
                    .sum::<usize>()
            })
            .sum();
        series + histograms + exemplars + metadata
    }
}
