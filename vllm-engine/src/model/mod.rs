//! The model, written once: [`ModelWeights`] (loaded by HuggingFace name, every shape checked
//! against the config), the layer types ([`Linear`] of any storage, [`Mlp`] dense today), the
//! decoder of the Llama family ([`llama::forward`]) over the [`ops::LayerOps`] seam the
//! runners implement, and the RoPE tables. A new model family touches the config and this
//! module only; a new weight storage adds a [`Linear`] variant and the runners' product for it.

pub mod linear;
pub mod llama;
pub mod mlp;
pub mod ops;
pub mod rope;
pub mod weights;

pub use linear::Linear;
pub use mlp::Mlp;
pub use ops::{LayerOps, NormSite, Proj};
pub use rope::Rope;
pub use weights::{LayerWeights, ModelWeights};
