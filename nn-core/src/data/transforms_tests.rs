//! Tests of the image transforms.

use super::*;
use crate::data::TensorDataset;

fn img(c: usize, h: usize, w: usize) -> Result<Tensor> {
    Tensor::arange_f32(0.0, (c * h * w) as f32, 1.0)?.reshape(&[c, h, w])
}

#[test]
fn to_tensor_normalize_flip() -> Result<()> {
    let rng = &mut SplitMix64::new(0);
    let hwc = Tensor::from_host(HostData::U8(vec![0, 255, 51, 102]), &[1, 2, 2])?;
    let x = ToTensor.apply(hwc, rng)?;
    assert_eq!(x.shape(), &[2, 1, 2]);
    assert_eq!(x.to_vec::<f32>()?, vec![0.0, 0.2, 1.0, 0.4]);
    let n = Normalize::new(vec![0.5, 0.0], vec![0.5, 2.0])?.apply(x, rng)?;
    assert_eq!(n.to_vec::<f32>()?, vec![-1.0, -0.6, 0.5, 0.2]);
    assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
    assert!(Normalize::new(vec![0.5], vec![1.0])?
        .apply(img(2, 1, 1)?, rng)
        .is_err());
    let f = RandomHorizontalFlip { p: 1.0 }.apply(img(1, 2, 3)?, rng)?;
    assert_eq!(f.to_vec::<f32>()?, vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    let same = RandomHorizontalFlip { p: 0.0 }.apply(img(1, 2, 3)?, rng)?;
    assert_eq!(same.to_vec::<f32>()?, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    Ok(())
}

#[test]
fn random_crop_pads_and_covers_every_offset() -> Result<()> {
    // a 1x2x2 image padded by 1 is 4x4; a 2x2 window at (i, j) in 0..3 x 0..3
    let x = img(1, 2, 2)?;
    let mut seen = std::collections::BTreeSet::new();
    for s in 0..200 {
        let y = RandomCrop::new(2, 1).apply(x.clone(), &mut SplitMix64::new(s))?;
        seen.insert(
            y.to_vec::<f32>()?
                .iter()
                .map(|v| *v as i32)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(
        seen.contains(&vec![0, 0, 0, 0]),
        "the top-left window is padding and pixel 0"
    );
    assert!(
        seen.contains(&vec![0, 1, 2, 3]),
        "the centre window is the image"
    );
    assert!(seen.contains(&vec![3, 0, 0, 0]), "the bottom-right window");
    assert!(RandomCrop::new(5, 1)
        .apply(x, &mut SplitMix64::new(0))
        .is_err());
    Ok(())
}

#[test]
fn random_resized_crop_params_follow_torchvision() {
    let t = RandomResizedCrop::new(4);
    for s in 0..100 {
        let (i, j, h, w) = t.params(20, 30, &mut SplitMix64::new(s));
        assert!(h > 0 && w > 0 && i + h <= 20 && j + w <= 30);
        let (area, ratio) = ((h * w) as f64 / 600.0, w as f64 / h as f64);
        assert!(
            (0.06..=1.0).contains(&area) && (0.7..=1.4).contains(&ratio),
            "{area} {ratio}"
        );
    }
    // a 1x100 strip never fits the ratio range: the fallback keeps the whole height
    // and the widest allowed width, centred
    let strip = RandomResizedCrop::new(4).params(1, 100, &mut SplitMix64::new(0));
    assert_eq!(strip, (0, 49, 1, 1));
}

#[test]
fn bilinear_resize_of_a_ramp() -> Result<()> {
    // upsampling [0, 1] to 4 with align_corners=False gives [0, .25, .75, 1]
    let o = resize_bilinear(&[0.0, 1.0], (1, 1, 2), (0, 0, 1, 2), (1, 4))?;
    assert_eq!(o, vec![0.0, 0.25, 0.75, 1.0]);
    Ok(())
}

#[test]
fn transformed_is_seeded_by_sample_and_epoch() -> Result<()> {
    let ds = Transformed::new(
        TensorDataset::new(Tensor::rand(&[3, 1, 6, 6]))?,
        RandomCrop::new(4, 2),
        9,
    );
    let a = ds.get(1)?.to_vec::<f32>()?;
    assert_eq!(a, ds.get(1)?.to_vec::<f32>()?);
    let differs = (1..20).any(|e| {
        ds.set_epoch(e);
        ds.get(1)
            .and_then(|t| t.to_vec::<f32>())
            .map_or(true, |b| b != a)
    });
    assert!(differs, "another epoch draws another crop");
    Ok(())
}
