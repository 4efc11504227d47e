//! Data parallelism over Burn's `burn-collective`: one peer per device, each with its own
//! replica; every micro-batch is split across the peers, and the window's gradients, loss and
//! stop flag are all-reduced (summed) so that every peer applies the update one device would
//! apply to the same global batch. A peer that fails or stops answering stops the others within
//! `[train] collective_timeout_s`, with an error naming it: no collective call waits forever.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_collective::{CollectiveConfig, CollectiveError, PeerId, ReduceOperation};

use crate::error::{Result, TrainError};
use crate::trainer::{NoHooks, TrainHooks, TrainOutcome, TrainSetup, train_peer};
use ft_model::TrainBackend;

/// Elements per all-reduce bucket (as PyTorch DDP's buckets: fewer, larger transfers).
const BUCKET_ELEMENTS: usize = 1 << 24;
/// How often a waiting peer looks at its peers' state.
const POLL: Duration = Duration::from_millis(20);

/// This peer's place among all peers of the run.
#[derive(Clone)]
pub struct Peer {
    /// Global rank; rank 0 writes checkpoints, metrics and sample answers.
    pub rank: usize,
    /// Peers in the run.
    pub world: usize,
    /// How long to wait for the other peers at one all-reduce.
    pub timeout: Duration,
    /// The peers of this process.
    board: Arc<PeerBoard>,
    /// This peer's index on the board.
    local: usize,
}

/// What the peers of one process know of each other: the last all-reduce each reached, and the
/// first failure.
pub struct PeerBoard {
    /// Global rank of the board's first peer.
    first_rank: usize,
    /// Per local peer: the number of all-reduces it has started.
    reached: Vec<AtomicUsize>,
    /// The first peer that failed, and why.
    failed: Mutex<Option<(usize, String)>>,
}

impl PeerBoard {
    /// A board for `peers` local peers whose global ranks start at `first_rank`.
    pub fn new(first_rank: usize, peers: usize) -> Arc<Self> {
        Arc::new(Self {
            first_rank,
            reached: (0..peers).map(|_| AtomicUsize::new(0)).collect(),
            failed: Mutex::new(None),
        })
    }

    /// Records that global rank `rank` failed (the first failure is kept).
    pub fn fail(&self, rank: usize, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert((rank, why));
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<(usize, String)> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Global ranks of the local peers that have not started all-reduce number `call`.
    fn behind(&self, call: usize) -> Vec<usize> {
        let ranks = self.reached.iter().enumerate();
        ranks
            .filter(|(_, r)| r.load(Ordering::SeqCst) < call)
            .map(|(i, _)| self.first_rank + i)
            .collect()
    }
}

/// What the peers agree on after a step's all-reduce.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTotals {
    /// Σ loss over every peer's rows.
    pub loss_sum: f64,
    /// Whether any peer was asked to stop (Ctrl-C).
    pub stop: bool,
}

impl Peer {
    /// The only peer of a one-device run: no collective call is made.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            timeout: Duration::MAX,
            board: PeerBoard::new(0, 1),
            local: 0,
        }
    }

    /// Local peer `local` of `board`, in a run of `world` peers.
    pub fn on_board(board: &Arc<PeerBoard>, local: usize, world: usize, timeout: Duration) -> Self {
        Self {
            rank: board.first_rank + local,
            world,
            timeout,
            board: board.clone(),
            local,
        }
    }

    /// Whether this peer writes the run's files.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// This peer's share of a micro-batch of `rows` rows: a contiguous slice, the first peers
    /// taking one more when the rows do not divide evenly (a peer may get none).
    pub fn share(&self, rows: usize) -> Range<usize> {
        rows * self.rank / self.world..rows * (self.rank + 1) / self.world
    }

    /// Registers this peer with burn-collective on `device` (the inner, non-autodiff backend);
    /// returns once every peer has registered.
    pub fn register<B: Backend>(&self, device: &B::Device, config: CollectiveConfig) -> Result<()> {
        let (id, device) = (self.peer_id(), device.clone());
        self.wait_for_peers("joining the collective", move || {
            burn_collective::register::<B>(id, device, config)
        })
    }

    /// Leaves the collective at the end of the run.
    pub fn finish<B: Backend>(&self) {
        if self.world > 1
            && let Err(e) = burn_collective::finish_collective::<B>(self.peer_id())
        {
            tracing::warn!("rank {}: leaving the collective: {e:?}", self.rank);
        }
    }

    /// Sums the step's loss and stop flag over the peers, and each gradient that any peer has
    /// (`None` where no peer has one; a peer without one adds zeros).
    ///
    /// # Shapes
    /// - `grads`: each `[rows, cols]` as the parameter it belongs to; unchanged shapes out.
    pub fn all_reduce_step<B: Backend>(
        &self,
        grads: &mut [Option<Tensor<B, 2>>],
        shapes: &[[usize; 2]],
        loss_sum: f64,
        stop: bool,
        device: &B::Device,
    ) -> Result<StepTotals> {
        let mut meta = vec![loss_sum as f32, f32::from(u8::from(stop))];
        meta.extend(grads.iter().map(|g| f32::from(u8::from(g.is_some()))));
        let meta = Tensor::<B, 1>::from_floats(meta.as_slice(), device);
        let meta: Vec<f32> = self
            .all_reduce(meta)?
            .into_data()
            .to_vec()
            .map_err(|e| self.error(format!("reading the all-reduced step totals: {e:?}")))?;
        let present: Vec<bool> = meta[2..].iter().map(|&n| n > 0.0).collect();
        for ((slot, shape), &any) in grads.iter_mut().zip(shapes).zip(&present) {
            match (any, &slot) {
                (false, _) => *slot = None,
                (true, None) => *slot = Some(Tensor::zeros(*shape, device)),
                (true, Some(_)) => {}
            }
        }
        for bucket in buckets(grads) {
            self.all_reduce_bucket(&mut grads[bucket])?;
        }
        Ok(StepTotals {
            loss_sum: f64::from(meta[0]),
            stop: meta[1] > 0.0,
        })
    }

    /// All-reduces the gradients of one bucket as one flat f32 tensor.
    fn all_reduce_bucket<B: Backend>(&self, grads: &mut [Option<Tensor<B, 2>>]) -> Result<()> {
        let present: Vec<(usize, [usize; 2], DType)> = grads
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i, g.dims(), g.dtype())))
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let flat: Vec<Tensor<B, 1>> = present
            .iter()
            .map(|&(i, [r, c], _)| {
                let g = grads[i].take().expect("invariant: listed as present");
                g.cast(DType::F32).reshape([r * c])
            })
            .collect();
        let summed = self.all_reduce(Tensor::cat(flat, 0))?;
        let mut offset = 0;
        for &(i, [r, c], dtype) in &present {
            let g = summed.clone().narrow(0, offset, r * c);
            grads[i] = Some(g.reshape([r, c]).cast(dtype));
            offset += r * c;
        }
        Ok(())
    }

    /// Sums `tensor` over every peer. Waits at most `timeout`, and returns early with an error
    /// naming the failed peer when one of this process fails meanwhile.
    pub fn all_reduce<B: Backend>(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let id = self.peer_id();
        let primitive = tensor.into_primitive().tensor();
        let summed = self.wait_for_peers("all-reduce", move || {
            burn_collective::all_reduce::<B>(id, primitive, ReduceOperation::Sum)
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    /// Runs a collective call that returns once every peer has made it (numbered on the board),
    /// waiting for it on another thread: that is what lets this peer give up on a failed or
    /// silent one after `timeout` instead of blocking for ever.
    fn wait_for_peers<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce() -> std::result::Result<T, CollectiveError> + Send + 'static,
    ) -> Result<T> {
        let number = self.board.reached[self.local].fetch_add(1, Ordering::SeqCst) + 1;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("collective-{}", self.rank))
            .spawn(move || {
                let _ = sender.send(call());
            })
            .map_err(|e| self.error(format!("could not start {what}: {e}")))?;
        let deadline = Instant::now() + self.timeout.min(Duration::from_secs(u32::MAX as u64));
        loop {
            match receiver.recv_timeout(POLL) {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => return Err(self.collective_failed(what, number, e)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.error(format!("{what} (call {number}): the collective went away")));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some((rank, why)) = self.board.failure() {
                return Err(TrainError::Peer {
                    rank,
                    message: format!("failed: {why}"),
                });
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out(what, number));
            }
        }
    }

    /// The error for an all-reduce the other peers did not join in time.
    fn timed_out(&self, what: &str, call: usize) -> TrainError {
        let behind = self.board.behind(call);
        let waited = self.timeout.as_secs();
        match behind.first() {
            Some(&rank) => TrainError::Peer {
                rank,
                message: format!(
                    "did not answer within {waited} s ([train] collective_timeout_s): rank {} \
                     waited at {what} (call {call}); ranks still behind: {behind:?}",
                    self.rank
                ),
            },
            None => {
                let elsewhere = self.ranks_elsewhere();
                TrainError::Peer {
                    rank: elsewhere.first().copied().unwrap_or(self.rank),
                    message: format!(
                        "no answer within {waited} s ([train] collective_timeout_s): rank {} \
                         waited at {what} (call {call}) for the peers on other nodes, ranks \
                         {elsewhere:?}",
                        self.rank
                    ),
                }
            }
        }
    }

    /// The error for a collective call that failed. Across nodes, burn-collective fails a call
    /// when a node's connection drops: the peers on the other nodes are the ones lost.
    fn collective_failed(&self, what: &str, call: usize, error: CollectiveError) -> TrainError {
        let elsewhere = self.ranks_elsewhere();
        match elsewhere.first() {
            Some(&rank) => TrainError::Peer {
                rank,
                message: format!(
                    "lost: rank {}'s {what} (call {call}) failed ({error:?}) while waiting for the \
                     peers on other nodes, ranks {elsewhere:?}",
                    self.rank
                ),
            },
            None => self.error(format!("{what} (call {call}) failed: {error:?}")),
        }
    }

    /// Global ranks of the peers on other nodes.
    fn ranks_elsewhere(&self) -> Vec<usize> {
        let local = self.board.first_rank..self.board.first_rank + self.board.reached.len();
        (0..self.world).filter(|r| !local.contains(r)).collect()
    }

    fn peer_id(&self) -> PeerId {
        PeerId(self.rank as u32)
    }

    fn error(&self, message: String) -> TrainError {
        TrainError::Peer {
            rank: self.rank,
            message,
        }
    }
}

/// This node's place in a run over several nodes (torchrun's `--nnodes`, `--node-rank`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlace {
    /// Nodes in the run; every node runs the same number of peers.
    pub nodes: u32,
    /// This node's rank (0: the node whose first peer is rank 0 and which starts the
    /// orchestrator).
    pub node_rank: u32,
    /// burn-collective's global settings: the orchestrator's and this node's addresses.
    pub collective: CollectiveConfig,
}

/// Trains with one peer per setup (replicas of one run on this node's devices), all joined in
/// one burn-collective session; peer 0 runs on the calling thread with `hooks`, the others on
/// their own threads. Returns the main peer's outcome, or the first failure (naming its rank).
/// Every peer stops within `[train] collective_timeout_s` of another's failure or silence.
pub fn train_parallel<B: TrainBackend>(
    setups: Vec<TrainSetup<B>>,
    hooks: &mut dyn TrainHooks<B>,
    node: Option<&NodePlace>,
) -> Result<TrainOutcome>
where
    TrainSetup<B>: Send + 'static,
{
    let local = setups.len();
    let Some(first) = setups.first() else {
        return Err(TrainError::Training("no device to train on".into()));
    };
    let train = &first.config.train;
    let dropout = first.config.lora.as_ref().map_or(0.0, |lora| lora.dropout);
    if local > 1 && train.gradient_checkpointing && dropout > 0.0 {
        // The peers of one process share the backend's generator: a layer's recompute would
        // not draw the masks its forward drew.
        return Err(TrainError::Training(format!(
            "[train] gradient_checkpointing with [lora] dropout = {dropout} needs one peer per \
             process ({local} here share one random generator): set dropout = 0, turn \
             checkpointing off, or run one process per device (--nnodes)"
        )));
    }
    let timeout = Duration::from_secs(train.collective_timeout_s);
    let (nodes, node_rank, collective) = match node {
        Some(n) => (n.nodes as usize, n.node_rank as usize, n.collective.clone()),
        None => (1, 0, CollectiveConfig::default()),
    };
    let collective = collective.with_num_devices(local);
    let world = nodes * local;
    burn_collective::reset_collective::<B::InnerBackend>();
    let board = PeerBoard::new(node_rank * local, local);
    let mut setups = setups.into_iter();
    let main_setup = setups.next().expect("invariant: at least one setup");
    let others: Vec<_> = setups
        .enumerate()
        .map(|(i, setup)| {
            let peer = Peer::on_board(&board, i + 1, world, timeout);
            let collective = collective.clone();
            std::thread::Builder::new()
                .name(format!("peer-{}", peer.rank))
                .spawn(move || run_peer(setup, &mut NoHooks, &peer, collective))
                .map_err(|e| TrainError::Training(format!("could not start peer {}: {e}", i + 1)))
        })
        .collect::<Result<_>>()?;
    let first_peer = Peer::on_board(&board, 0, world, timeout);
    let outcome = run_peer(main_setup, hooks, &first_peer, collective);
    let deadline = Instant::now() + timeout;
    let mut failure = None;
    for handle in others {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if !handle.is_finished() {
            // A peer still running after the main one ended is stuck: leave it.
            continue;
        }
        if let Ok(Err(e)) | Err(e) = handle
            .join()
            .map_err(|_| TrainError::Training("a peer panicked".into()))
        {
            failure.get_or_insert(e);
        }
    }
    match (outcome, failure) {
        (Ok(outcome), None) => Ok(outcome),
        (Ok(_), Some(e)) | (Err(e), _) => Err(e),
    }
}

/// Joins the collective and trains one peer; its failure (error or panic) goes on the board so
/// that the other peers of this process stop at once instead of waiting for the timeout.
fn run_peer<B: TrainBackend>(
    setup: TrainSetup<B>,
    hooks: &mut dyn TrainHooks<B>,
    peer: &Peer,
    collective: CollectiveConfig,
) -> Result<TrainOutcome> {
    let device = setup.device.clone();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        peer.register::<B::InnerBackend>(&device, collective)?;
        train_peer(setup, hooks, peer)
    }));
    let result = run.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".into());
        Err(TrainError::Peer {
            rank: peer.rank,
            message: format!("panicked: {why}"),
        })
    });
    match &result {
        Err(TrainError::Peer { rank, message }) if *rank == peer.rank => {
            peer.board.fail(peer.rank, message.clone());
        }
        Err(TrainError::Peer { .. }) | Ok(_) => {}
        Err(e) => peer.board.fail(peer.rank, e.to_string()),
    }
    result
}

/// Consecutive ranges of `grads` holding at most [`BUCKET_ELEMENTS`] elements each (a larger
/// tensor is a bucket of its own).
fn buckets<B: Backend>(grads: &[Option<Tensor<B, 2>>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, g) in grads.iter().enumerate() {
        let n = g.as_ref().map_or(0, |g| g.shape().num_elements());
        if size > 0 && size + n > BUCKET_ELEMENTS {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < grads.len() {
        out.push(start..grads.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_row_once_in_order() {
        for world in 1..5 {
            for rows in 0..9 {
                let board = PeerBoard::new(0, world);
                let shares: Vec<Range<usize>> = (0..world)
                    .map(|r| Peer::on_board(&board, r, world, Duration::from_secs(1)).share(rows))
                    .collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[world - 1].end, rows);
                assert!(shares.windows(2).all(|w| w[0].end == w[1].start), "{shares:?}");
                assert!(shares.iter().all(|s| s.len() <= rows.div_ceil(world)));
            }
        }
    }

    #[test]
    fn a_failure_is_kept_and_peers_behind_are_named() {
        let board = PeerBoard::new(4, 3);
        board.reached[0].store(2, Ordering::SeqCst);
        board.reached[2].store(2, Ordering::SeqCst);
        board.reached[1].store(1, Ordering::SeqCst);
        assert_eq!(board.behind(2), vec![5]);
        board.fail(6, "out of memory".into());
        board.fail(4, "later".into());
        assert_eq!(board.failure(), Some((6, "out of memory".into())));
    }
}
