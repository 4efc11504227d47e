//! ft-metrics's integration tests in one binary: one link and one set of generic instances instead
//! of one per file. Each file beside this one is a module of it.

mod plots;
mod tensorboard_reference;
