//! `Buffer`: a non-trainable tensor that is saved with the model (running statistics).

use crate::{Result, Tensor};
use std::sync::{Arc, RwLock};

/// A shared, saved, non-trainable tensor. Cloning shares it, like [`super::Param`].
#[derive(Clone, Debug)]
pub struct Buffer(Arc<RwLock<Slot>>);

#[derive(Debug)]
struct Slot {
    value: Tensor,
    /// While a lazy layer has not learned its size: the shape it will have (`None` dims
    /// unknown), which a state-dict load checks and fills. `value` is a placeholder.
    deferred: Option<Vec<Option<usize>>>,
}

impl Buffer {
    /// A buffer holding `t`.
    pub fn new(t: Tensor) -> Buffer {
        Buffer(Arc::new(RwLock::new(Slot {
            value: t.detach(),
            deferred: None,
        })))
    }
    /// A buffer of a lazy layer whose shape is partly unknown (`None` dims): it holds
    /// `placeholder` (of the dtype it will have) until [`Buffer::set`] or a state-dict
    /// load gives it a value.
    pub fn deferred(placeholder: Tensor, shape: &[Option<usize>]) -> Buffer {
        Buffer(Arc::new(RwLock::new(Slot {
            value: placeholder.detach(),
            deferred: Some(shape.to_vec()),
        })))
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slot> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    /// The current value (the placeholder while deferred).
    pub fn get(&self) -> Tensor {
        self.read().value.clone()
    }
    /// Replaces the value (shape may change); a deferred buffer becomes an ordinary one.
    pub fn set(&self, t: &Tensor) {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        slot.value = t.detach();
        slot.deferred = None;
    }
    /// Whether the shape is still partly unknown (see [`Buffer::deferred`]).
    pub fn is_deferred(&self) -> bool {
        self.read().deferred.is_some()
    }
    /// The shape, `None` for dims a lazy layer has not learned yet.
    pub fn partial_shape(&self) -> Vec<Option<usize>> {
        let slot = self.read();
        match &slot.deferred {
            Some(shape) => shape.clone(),
            None => slot.value.shape().iter().map(|&d| Some(d)).collect(),
        }
    }
    /// Moves the value to `device`.
    pub fn to_device(&self, device: &crate::Device) -> Result<()> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        slot.value = slot.value.to_device(device)?;
        Ok(())
    }
    /// Whether two handles share one buffer.
    pub fn ptr_eq(&self, other: &Buffer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
