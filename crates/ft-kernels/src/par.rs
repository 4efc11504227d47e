//! Parallel only where it pays: below a few tens of thousands of operations (a decoding step),
//! handing work to rayon's pool costs more than the work, so it runs on the calling thread.

use rayon::prelude::*;

/// Operations (multiply-adds or elements) below which work stays on the calling thread.
const PARALLEL_FROM: usize = 1 << 15;

/// Whether `work` operations are worth spreading over rayon's threads.
pub(crate) fn worth_parallel(work: usize) -> bool {
    work >= PARALLEL_FROM
}

/// Runs `body` on every task: on rayon's threads when `parallel`, else here, in order.
pub(crate) fn for_each<T: Send>(parallel: bool, tasks: Vec<T>, body: impl Fn(T) + Sync + Send) {
    if parallel {
        tasks.into_par_iter().for_each(body);
    } else {
        tasks.into_iter().for_each(body);
    }
}

/// [`for_each`] collecting one result per task, in task order.
pub(crate) fn map<T: Send, R: Send>(
    parallel: bool,
    tasks: Vec<T>,
    body: impl Fn(T) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        tasks.into_par_iter().map(body).collect()
    } else {
        tasks.into_iter().map(body).collect()
    }
}
