//! The MPI bootstrap of [`NcclEngine`] and its [`DeviceEngine`] impl (feature `nccl`,
//! which brings nn-core's `distributed` module): the ranks agree over MPI that all of
//! them can open NCCL, rank 0's unique id travels over MPI, and each rank joins the
//! communicator on its GPU.

use super::{engine_err, NcclEngine, ReduceOp};
use crate::device::CudaDevice;
use crate::runtime::nccl::{nccl_present, unique_id, NcclComm};
use crate::runtime::Comm;
use nn_core::distributed::{Backend, DeviceEngine, ProcessGroup};
use nn_core::{Device, Result, Tensor};
use std::sync::Arc;

impl NcclEngine {
    /// Joins the NCCL communicator of `group`'s ranks on this rank's `device` (a CUDA
    /// device). Collective: every rank of `group` must call it. Every rank returns an
    /// error when one of them cannot (no libnccl, not a CUDA device, ...).
    pub fn new(group: &ProcessGroup, device: &Device) -> Result<Arc<NcclEngine>> {
        const OP: &str = "NcclEngine::new";
        let local = Self::local_check(device);
        // agree before anyone waits on NCCL: a rank that cannot join fails them all
        let failed = group
            .all_reduce(
                &Tensor::from_vec(vec![i64::from(local.is_err())], &[1])?,
                nn_core::distributed::ReduceOp::Sum,
            )?
            .to_vec::<i64>()?
            .first()
            .copied()
            .unwrap_or(1);
        let dev = local?;
        let name = dev.device_name().to_string();
        if failed > 0 {
            return Err(engine_err(
                OP,
                &name,
                format!("{failed} other rank(s) could not open NCCL; see their errors"),
            ));
        }
        // rank 0 makes the id; MPI carries its 128 bytes to the others
        let mut bytes = Vec::new();
        let mut made = Ok(());
        if group.is_root() {
            match unique_id() {
                Ok(id) => bytes = id.to_vec(),
                Err(e) => made = Err(engine_err(OP, &name, e.to_string())),
            }
        }
        group.broadcast_bytes(&mut bytes, 0)?;
        made?;
        let id: [u8; 128] = bytes.as_slice().try_into().map_err(|_| {
            engine_err(
                OP,
                &name,
                format!(
                    "rank 0 could not create an NCCL id (got {} bytes)",
                    bytes.len()
                ),
            )
        })?;
        let rt = dev
            .cuda()
            .ok_or_else(|| engine_err(OP, &name, "NCCL needs a GPU, not the host runtime"))?;
        let (rank, world_size) = (group.rank(), group.world_size());
        // a peer that never joins leaves the others waiting here: the group's watchdog
        // ends the process after its collective timeout instead
        let comm = group
            .watch("nccl init", || NcclComm::join(rt, rank, world_size, id))
            .map_err(|e| engine_err(OP, &name, e.to_string()))?;
        Ok(Arc::new(NcclEngine {
            comm: Comm::Nccl(comm),
            device: Device::Backend(dev.clone()),
            dev,
        }))
    }

    /// [`new`](Self::new), then registers the engine with `group`.
    ///
    /// ```no_run
    /// // run under mpirun, one GPU per rank
    /// use nn_core::distributed::{Backend, ProcessGroup};
    /// let group = ProcessGroup::init()?;
    /// // ranks on one host: the local rank picks the GPU
    /// let gpu = nn_cuda::device(group.rank() % nn_cuda::device_count().max(1))?;
    /// nn_cuda::nccl::NcclEngine::install(&group, &gpu)?;
    /// assert_eq!(group.backend_for(&gpu), Backend::Nccl);
    /// # Ok::<(), nn_core::Error>(())
    /// ```
    pub fn install(group: &ProcessGroup, device: &Device) -> Result<Arc<NcclEngine>> {
        let engine = Self::new(group, device)?;
        group.set_device_engine(engine.clone());
        Ok(engine)
    }

    fn local_check(device: &Device) -> Result<Arc<CudaDevice>> {
        const OP: &str = "NcclEngine::new";
        if !device.is_cuda() {
            return Err(engine_err(
                OP,
                &device.to_string(),
                format!("NCCL moves CUDA tensors; {device} is not a CUDA device"),
            ));
        }
        let dev = CudaDevice::open(device.ordinal()).map_err(|e| e.into_core("nccl"))?;
        if !nccl_present() {
            return Err(engine_err(
                OP,
                dev.device_name(),
                "libnccl could not be loaded: install it (apt-get install libnccl2 libnccl-dev, \
                 or pip install nvidia-nccl-cu13 and link libnccl.so -> libnccl.so.2) and put \
                 its directory on LD_LIBRARY_PATH",
            ));
        }
        Ok(dev)
    }
}

/// The group's collectives on this engine's device: the engine's own methods.
impl DeviceEngine for NcclEngine {
    fn backend(&self) -> Backend {
        Backend::Nccl
    }

    fn handles(&self, device: &Device) -> bool {
        *device == self.device
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        self.all_reduce(t, ReduceOp::Sum)
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        NcclEngine::broadcast(self, t, root)
    }

    fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        NcclEngine::all_gather(self, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nccl::nccl_version;

    #[test]
    fn missing_library_or_gpu_is_a_clear_error() {
        // whatever this machine has, asking for NCCL on the CPU is refused without a panic
        let msg = NcclEngine::local_check(&Device::Cpu)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("cpu is not a CUDA device"), "{msg}");
        if !nccl_present() {
            assert_eq!(nccl_version(), None);
        }
    }

    /// What `ProcessGroup` calls for CUDA tensors (the trait object) is the engine's own
    /// collectives: checked on a host group of 2 rank threads.
    #[cfg(feature = "host-runtime")]
    #[test]
    fn the_device_engine_impl_runs_the_engine_collectives() -> Result<()> {
        let ranks = NcclEngine::host_group(2)?;
        let got = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|e| {
                    let dyn_e: Arc<dyn DeviceEngine> = e.clone();
                    s.spawn(move || -> Result<_> {
                        let dev = e.device().clone();
                        assert_eq!(dyn_e.backend(), Backend::Nccl);
                        assert!(dyn_e.handles(&dev) && !dyn_e.handles(&Device::Cpu));
                        let x = Tensor::from_vec(vec![e.rank() as f32 + 1.0, 0.5], &[2])?
                            .to_device(&dev)?;
                        Ok((
                            dyn_e.all_reduce_sum(&x)?.to_vec::<f32>()?,
                            dyn_e.broadcast(&x, 1)?.to_vec::<f32>()?,
                            dyn_e.all_gather(&x)?.to_vec::<f32>()?,
                        ))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect::<Vec<_>>()
        });
        for g in got {
            let (sum, b, all) = g?;
            assert_eq!(sum, vec![3.0, 1.0]);
            assert_eq!(b, vec![2.0, 0.5]);
            assert_eq!(all, vec![1.0, 0.5, 2.0, 0.5]);
        }
        Ok(())
    }
}
