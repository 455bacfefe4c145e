//! A linear layer's weight, one type whatever its storage: `y = x W^T` with `W` laid out as
//! PyTorch's `Linear.weight`, `[out_features, in_features]`. Dense (the runner's float type)
//! today; quantized storages (FP8 with scales, 4-bit with groups) are further variants, so the
//! decoder and the runners' op lists do not change when one is added. Cost: 2 x out x in flops
//! per token, the weight read once per product.

/// A linear layer's weight.
#[derive(Debug, Clone)]
pub enum Linear<W> {
    /// `weight` is `[out_features, in_features]` in the runner's float type.
    Dense {
        weight: W,
        out_features: usize,
        in_features: usize,
    },
}

impl<W> Linear<W> {
    pub fn dense(weight: W, out_features: usize, in_features: usize) -> Self {
        Self::Dense {
            weight,
            out_features,
            in_features,
        }
    }

    pub fn out_features(&self) -> usize {
        match self {
            Self::Dense { out_features, .. } => *out_features,
        }
    }

    pub fn in_features(&self) -> usize {
        match self {
            Self::Dense { in_features, .. } => *in_features,
        }
    }

    /// The dense weight matrix, when the storage is dense.
    pub fn dense_weight(&self) -> Option<&W> {
        match self {
            Self::Dense { weight, .. } => Some(weight),
        }
    }

    /// Every tensor the layer holds (for memory accounting).
    pub fn tensors(&self) -> impl Iterator<Item = &W> {
        match self {
            Self::Dense { weight, .. } => std::iter::once(weight),
        }
    }
}
