//! The seam without a GPU: the CUDA entry points answer with errors, and a third
//! backend (a fake device) plugs in with no edit of nn-core.

use super::*;

/// The CUDA entry points answer without a GPU: counts, readable errors, CPU fallbacks.
#[cfg(feature = "cuda")]
#[test]
fn cuda_entry_points_never_panic() {
    let n = nn::cuda::device_count();
    let e = nn::cuda::device(n + 7)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains(&format!("cuda:{}", n + 7)), "{e}");
    if n == 0 {
        println!("no CUDA device: {e}");
        assert!(!nn::cuda::is_available());
        assert!(nn::cuda::device(0).is_err());
        assert_eq!(nn::cuda::try_device(0), Device::Cpu);
        assert_eq!(nn::cuda::all_devices(), vec![Device::Cpu]);
    } else {
        assert_eq!(nn::cuda::all_devices().len(), n);
    }
}

/// A device whose storage refuses every op: mixing it with the CPU must be caught by
/// nn-core's device checks before any backend op runs (this runs without a GPU).
mod fake_gpu {
    use nn::backend::{
        BackendStorage, BinaryOp, DeviceBackend, MatmulSpec, ReduceOp, Storage, UnaryOp,
    };
    use nn::{DType, Device, Error, HostData, Result};
    use std::any::Any;
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct FakeGpu;

    #[derive(Debug)]
    struct FakeStorage(HostData);

    fn refuse<T>() -> Result<T> {
        Err(Error::backend("fake:0", "fake backend op reached"))
    }

    /// A third backend needs no edit of nn-core: a kind, the traits, `Device::Backend`.
    impl DeviceBackend for FakeGpu {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn ordinal(&self) -> usize {
            0
        }
        fn upload(&self, data: &HostData) -> Result<Storage> {
            Ok(Arc::new(FakeStorage(data.clone())))
        }
        fn zeros(&self, len: usize, dtype: DType) -> Result<Storage> {
            Ok(Arc::new(FakeStorage(HostData::zeros(len, dtype)?)))
        }
        fn synchronize(&self) -> Result<()> {
            Ok(())
        }
    }

    impl BackendStorage for FakeStorage {
        fn device(&self) -> Device {
            Device::Backend(Arc::new(FakeGpu))
        }
        fn dtype(&self) -> DType {
            self.0.dtype()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn to_host(&self) -> Result<HostData> {
            Ok(self.0.clone())
        }
        fn write_at(&mut self, _: usize, _: &HostData) -> Result<()> {
            refuse()
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
        fn unary(&self, _: UnaryOp) -> Result<Storage> {
            refuse()
        }
        fn binary(
            &self,
            _: BinaryOp,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn where_cond(
            &self,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn matmul(&self, _: &dyn BackendStorage, _: &MatmulSpec) -> Result<Storage> {
            refuse()
        }
        fn reduce(&self, _: ReduceOp, _: &[usize], _: &[usize]) -> Result<Storage> {
            refuse()
        }
        fn permute(&self, _: &[usize], _: &[usize]) -> Result<Storage> {
            refuse()
        }
        fn narrow(&self, _: &[usize], _: usize, _: usize, _: usize) -> Result<Storage> {
            refuse()
        }
        fn cat(
            &self,
            _: &[usize],
            _: &[(&dyn BackendStorage, &[usize])],
            _: usize,
        ) -> Result<Storage> {
            refuse()
        }
        fn index_select(&self, _: &[usize], _: usize, _: &dyn BackendStorage) -> Result<Storage> {
            refuse()
        }
        fn index_add(
            &self,
            _: &[usize],
            _: usize,
            _: &dyn BackendStorage,
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn cast(&self, _: DType) -> Result<Storage> {
            refuse()
        }
    }
}

/// Every binary-operand entry point rejects a CPU/GPU mix with a message naming both
/// devices (checked here against a fake GPU, so it runs on every machine).
#[test]
fn device_mixing_is_caught_before_the_backend() -> Result<()> {
    let gpu = Device::Backend(std::sync::Arc::new(fake_gpu::FakeGpu));
    assert_eq!(gpu.to_string(), "fake:0");
    assert!(!gpu.is_cuda() && !gpu.is_cpu());
    let a = Tensor::ones(&[2, 2]);
    let b = Tensor::ones(&[2, 2]).to_device(&gpu)?;
    assert_eq!(b.device(), gpu);
    let idx = Tensor::from_vec(vec![0i64], &[1])?;
    let mask = a.gt_scalar(0.0)?;
    let errs = [
        ("add", a.add(&b).err()),
        ("mul", b.mul(&a).err()),
        ("maximum", a.maximum(&b).err()),
        ("lt", b.lt(&a).err()),
        ("matmul", a.matmul(&b).err()),
        ("cat", Tensor::cat(&[b.clone(), a.clone()], 0).err()),
        ("where", Tensor::where_cond(&mask, &b, &a).err()),
        ("index_select", b.index_select(0, &idx).err()),
        ("linear", Linear::new(2, 3).forward(&b).err()),
        (
            "cross_entropy",
            b.cross_entropy(&Tensor::from_vec(vec![0i64, 1], &[2])?)
                .err(),
        ),
    ];
    for (op, e) in errs {
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("different devices")
                && msg.contains("cpu")
                && msg.contains("fake:0")
                && msg.starts_with(op),
            "{op}: {msg}"
        );
    }
    // a mixed pair is no worse than the copy it asks for
    assert_eq!(
        a.add(&b.to_device(&Device::Cpu)?)?.to_vec::<f32>()?,
        vec![2.0; 4]
    );
    Ok(())
}
