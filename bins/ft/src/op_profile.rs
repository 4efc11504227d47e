//! Time per fused op for `ft bench train --profile`: a `tracing` layer that sums the durations of
//! ft-kernels' op spans (`trace` level, one per kernel call) by name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Subscriber;
use tracing::span::Id;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Total time and calls of each op seen so far.
#[derive(Clone, Default)]
pub struct OpTimes(Arc<Mutex<BTreeMap<&'static str, (Duration, u64)>>>);

/// When the span was entered (kept in the span's extensions).
struct Entered(Instant);

impl OpTimes {
    /// `(op, total time, calls)`, the most expensive first.
    pub fn totals(&self) -> Vec<(&'static str, Duration, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = map
            .iter()
            .map(|(name, (time, calls))| (*name, *time, *calls))
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1));
        rows
    }

    /// Whether a span or event comes from the kernels.
    pub fn wants(target: &str) -> bool {
        target.starts_with("ft_kernels")
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OpTimes {
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Entered(Instant::now()));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(Entered(at)) = span.extensions_mut().remove::<Entered>() else {
            return;
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(span.name()).or_default();
        entry.0 += at.elapsed();
        entry.1 += 1;
    }
}
