//! XXH3-64 (seed 0, the default secret) of the native format's chunks, with the loop
//! over long inputs in AVX2 when the CPU has it (runtime detection).
//!
//! `xxhash-rust` picks its SIMD kernel when it is compiled: a build for the x86-64
//! baseline gets SSE2, which hashes about 12 GB/s per core on the 2-core EPYC we measure
//! on (in cache), against 36 GB/s for its AVX2 kernel. A mapped load of a 400 MB file
//! from the page cache, which is its verification on two cores, went from 12.1-14.4
//! (median 12.9) to 13.6-15.6 GB/s (median 14.5) there, 4 interleaved runs each.
//! The AVX2 loop here follows the XXH3 specification (accumulate 64-byte stripes,
//! scramble every 1024 bytes, merge the 8 accumulators), as `xxhash-rust`'s own AVX2
//! kernel does; inputs of 240 bytes or less, and CPUs without AVX2, use `xxhash-rust`.
//! The tests check every length class against `xxhash-rust`.

/// The XXH3-64 hash of `data` with seed 0: equal to `xxhash_rust::xxh3::xxh3_64(data)`.
pub(crate) fn xxh3_64(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() > MID_SIZE_MAX && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { long_avx2(data) };
    }
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Longest input hashed without the stripe loop.
const MID_SIZE_MAX: usize = 240;
const STRIPE: usize = 64;
/// Stripes per block: (secret size - stripe) / 8 secret bytes consumed per stripe.
const STRIPES_PER_BLOCK: usize = (SECRET.len() - STRIPE) / 8;
const BLOCK: usize = STRIPE * STRIPES_PER_BLOCK;
const PRIME32_1: u64 = 0x9E37_79B1;
const PRIME32_2: u64 = 0x85EB_CA77;
const PRIME32_3: u64 = 0xC2B2_AE3D;
const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME64_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME64_5: u64 = 0x27D4_EB2F_1656_67C5;

/// XXH3's default secret (`kSecret` of the specification).
const SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];
/// Secret offsets of the last stripe's key and of the merge keys.
const LAST_STRIPE_KEY: usize = SECRET.len() - STRIPE - 7;
const MERGE_KEY: usize = 11;

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// The final mix of the 8 accumulators of an input of `len` bytes.
fn merge(acc: &[u64; 8], len: usize) -> u64 {
    let mut h = (len as u64).wrapping_mul(PRIME64_1);
    for i in 0..4 {
        let k = MERGE_KEY + 16 * i;
        let p = u128::from(acc[2 * i] ^ le64(&SECRET, k))
            * u128::from(acc[2 * i + 1] ^ le64(&SECRET, k + 8));
        h = h.wrapping_add((p as u64) ^ ((p >> 64) as u64));
    }
    h ^= h >> 37;
    h = h.wrapping_mul(0x1656_6791_9E37_79F9);
    h ^ (h >> 32)
}

/// XXH3-64 of an input longer than [`MID_SIZE_MAX`], accumulators in AVX2 registers.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn long_avx2(data: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let len = data.len();
    if len <= MID_SIZE_MAX {
        return xxhash_rust::xxh3::xxh3_64(data);
    }
    let init: [u64; 8] = [
        PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1,
    ];
    // SAFETY: AVX2 is the caller's contract. Every load reads 32 bytes at `p + 32 * h`
    // (h < 2) of a stripe that starts at `p` with `p + 64 <= data.len()` (blocks and
    // stripes are counted from `len - 1`, the last stripe starts at `len - 64`, and
    // `len > 240`), of the secret at `s + 32 * h` with `s + 64 <= 192` (stripe keys
    // `8 * i` for i < 16, the scramble key at 128, the last key at 121), or of `init`;
    // all loads and stores are unaligned.
    let out = unsafe {
        let mut acc = [
            _mm256_loadu_si256(init.as_ptr().cast()),
            _mm256_loadu_si256(init.as_ptr().add(4).cast()),
        ];
        let input = data.as_ptr();
        let secret = SECRET.as_ptr();
        let prime = _mm256_set1_epi32(PRIME32_1 as i32);
        let blocks = (len - 1) / BLOCK;
        for b in 0..blocks {
            let base = input.add(b * BLOCK);
            for s in 0..STRIPES_PER_BLOCK {
                stripe_avx2(&mut acc, base.add(s * STRIPE), secret.add(8 * s));
            }
            // scramble: acc = (acc ^ acc >> 47 ^ key) * PRIME32_1, as two 32x32 products
            for (h, a) in acc.iter_mut().enumerate() {
                let k = _mm256_loadu_si256(secret.add(SECRET.len() - STRIPE + 32 * h).cast());
                let x = _mm256_xor_si256(_mm256_xor_si256(*a, _mm256_srli_epi64(*a, 47)), k);
                let lo = _mm256_mul_epu32(x, prime);
                let hi = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), prime);
                *a = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
            }
        }
        let base = input.add(blocks * BLOCK);
        for s in 0..((len - 1) - blocks * BLOCK) / STRIPE {
            stripe_avx2(&mut acc, base.add(s * STRIPE), secret.add(8 * s));
        }
        stripe_avx2(
            &mut acc,
            input.add(len - STRIPE),
            secret.add(LAST_STRIPE_KEY),
        );
        let mut out = [0u64; 8];
        _mm256_storeu_si256(out.as_mut_ptr().cast(), acc[0]);
        _mm256_storeu_si256(out.as_mut_ptr().add(4).cast(), acc[1]);
        out
    };
    merge(&out, len)
}

/// Adds one 64-byte stripe at `p`, keyed by the 64 secret bytes at `key`, to `acc`.
///
/// # Safety
/// The CPU must support AVX2; `p` and `key` must each be readable for 64 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn stripe_avx2(acc: &mut [std::arch::x86_64::__m256i; 2], p: *const u8, key: *const u8) {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 and 64 readable bytes at `p` and `key` are the caller's contract.
    unsafe {
        for (h, a) in acc.iter_mut().enumerate() {
            let d = _mm256_loadu_si256(p.add(32 * h).cast());
            let k = _mm256_loadu_si256(key.add(32 * h).cast());
            let dk = _mm256_xor_si256(d, k);
            // low 32 bits times high 32 bits of each 64-bit lane
            let product = _mm256_mul_epu32(dk, _mm256_srli_epi64(dk, 32));
            // each lane's data goes to its neighbour's accumulator
            let swapped = _mm256_shuffle_epi32(d, 0b01_00_11_10);
            *a = _mm256_add_epi64(_mm256_add_epi64(*a, swapped), product);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_xxhash_rust_at_every_length_class_and_alignment() {
        // deterministic bytes (xorshift), long enough for several blocks and a 4 MiB chunk
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..(4 << 20) + 4099)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut lens: Vec<usize> = (0..=2 * BLOCK + 2 * STRIPE + 1).collect();
        lens.extend([
            4095,
            4096,
            4097,
            BLOCK * 17 - 1,
            BLOCK * 17,
            BLOCK * 17 + 1,
            1 << 20,
            4 << 20,
            (4 << 20) + 4099 - 3,
        ]);
        for &n in &lens {
            for off in [0, 1, 3] {
                let s = &data[off..off + n];
                assert_eq!(
                    xxh3_64(s),
                    xxhash_rust::xxh3::xxh3_64(s),
                    "length {n}, offset {off}"
                );
            }
        }
        // whether this run exercised the AVX2 loop (the reference otherwise)
        #[cfg(target_arch = "x86_64")]
        eprintln!(
            "xxh3 AVX2 loop tested: {}",
            std::arch::is_x86_feature_detected!("avx2")
        );
    }
}
