//! Reductions across one cube's units through shared memory, for the kernels that give a row to
//! a cube (RMSNorm, the cross-entropy's log-sum-exp).

use cubecl::prelude::*;

/// The sum of `partial[0..CUBE_DIM_X]` (each unit has written its own entry), returned to every
/// unit; `partial` may be written again as soon as this returns. `CUBE_DIM_X` is a power of two.
#[cube]
pub(super) fn cube_sum(partial: &mut SharedMemory<f32>, unit: usize) -> f32 {
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            partial[unit] += partial[unit + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let total = partial[0];
    sync_cube();
    total
}

/// The largest of `partial[0..CUBE_DIM_X]`, as [`cube_sum`].
#[cube]
pub(super) fn cube_max(partial: &mut SharedMemory<f32>, unit: usize) -> f32 {
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            let other = partial[unit + stride];
            partial[unit] = select(other > partial[unit], other, partial[unit]);
        }
        sync_cube();
        stride /= 2;
    }
    let largest = partial[0];
    sync_cube();
    largest
}
