//! A decoder layer's feed-forward block. Dense today: SwiGLU with gate and up fused into one
//! product (`[2 I, hidden]`: gate rows, then up), `down(silu(gate) * up)`. A mixture of experts
//! is a further variant (a router and per-expert products), run by the same decoder. Cost:
//! 6 x hidden x I flops per token for the dense block.

use super::Linear;

/// A feed-forward block's weights.
#[derive(Debug, Clone)]
pub enum Mlp<W> {
    /// `gate_up`: `[2 I, hidden]`; `down`: `[hidden, I]`.
    Dense { gate_up: Linear<W>, down: Linear<W> },
}

impl<W> Mlp<W> {
    /// Every linear layer of the block.
    pub fn linears(&self) -> impl Iterator<Item = &Linear<W>> {
        match self {
            Self::Dense { gate_up, down } => [gate_up, down].into_iter(),
        }
    }
}
