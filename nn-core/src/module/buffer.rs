//! `Buffer`: a non-trainable tensor that is saved with the model (running statistics).

use crate::{Result, Tensor};
use std::sync::{Arc, RwLock};

/// A shared, saved, non-trainable tensor. Cloning shares it, like [`super::Param`].
#[derive(Clone, Debug)]
pub struct Buffer(Arc<RwLock<Tensor>>);

impl Buffer {
    /// A buffer holding `t`.
    pub fn new(t: Tensor) -> Buffer {
        Buffer(Arc::new(RwLock::new(t.detach())))
    }
    /// The current value.
    pub fn get(&self) -> Tensor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Replaces the value (shape may change: buffers have no deferred state).
    pub fn set(&self, t: &Tensor) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = t.detach();
    }
    /// Moves the value to `device`.
    pub fn to_device(&self, device: &crate::Device) -> Result<()> {
        let t = self.get().to_device(device)?;
        self.set(&t);
        Ok(())
    }
    /// Whether two handles share one buffer.
    pub fn ptr_eq(&self, other: &Buffer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
