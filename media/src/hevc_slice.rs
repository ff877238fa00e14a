//! Where an HEVC slice segment's data starts: the slice segment header (ITU-T H.265
//! §7.3.6.1) read up to its `byte_alignment()`, with what it depends on from the active
//! SPS (§7.3.2.2) and PPS (§7.3.2.3). `cbcs` keeps the NAL header and the slice segment
//! header in the clear (ISO/IEC 23001-7 §10.4.2), so a protected range starts there.
//!
//! Only the syntax of single-layer streams (Main, Main 10, the range extensions' flags) is
//! read; a parameter set with multilayer, 3D or screen content extensions is refused, and its
//! slices with it.

use std::collections::HashMap;

use crate::hevc::{skip_profile_tier_level, Bits};

/// One short-term reference picture set (§7.4.8): its delta POCs and which the current
/// picture uses, negative (S0) then positive (S1).
#[derive(Clone, Debug, Default)]
struct StRps {
    s0: Vec<(i32, bool)>,
    s1: Vec<(i32, bool)>,
}

impl StRps {
    fn num_delta_pocs(&self) -> usize {
        self.s0.len() + self.s1.len()
    }

    fn used(&self) -> usize {
        self.s0.iter().chain(&self.s1).filter(|(_, u)| *u).count()
    }
}

/// What slice headers need from an SPS.
#[derive(Debug)]
struct Sps {
    chroma_array_type: u32,
    separate_colour_plane: bool,
    pic_size_in_ctbs: u32,
    log2_max_poc_lsb: u32,
    st_rps: Vec<StRps>,
    long_term_ref_pics: bool,
    /// `used_by_curr_pic_lt_sps_flag` of each long-term picture the SPS lists.
    lt_sps_used: Vec<bool>,
    temporal_mvp: bool,
    sao: bool,
}

/// What slice headers need from a PPS.
#[derive(Debug)]
struct Pps {
    sps_id: u32,
    dependent_slice_segments: bool,
    output_flag_present: bool,
    num_extra_slice_header_bits: u32,
    cabac_init_present: bool,
    num_ref_idx_l0_default: u32,
    num_ref_idx_l1_default: u32,
    slice_chroma_qp_offsets_present: bool,
    weighted_pred: bool,
    weighted_bipred: bool,
    tiles_or_wavefronts: bool,
    loop_filter_across_slices: bool,
    deblocking_override_enabled: bool,
    deblocking_disabled: bool,
    lists_modification_present: bool,
    slice_header_extension_present: bool,
    chroma_qp_offset_list_enabled: bool,
}

/// The parameter sets slice headers are read with, by id.
#[derive(Debug, Default)]
pub(crate) struct HevcParameterSets {
    sps: HashMap<u32, Sps>,
    pps: HashMap<u32, Pps>,
}

impl HevcParameterSets {
    /// Takes in a parameter set NAL unit (with its 2-byte header): an SPS or PPS is kept,
    /// anything else ignored. `None` when it does not parse.
    pub(crate) fn put(&mut self, nal: &[u8]) -> Option<()> {
        let kind = (nal.first()? >> 1) & 0x3f;
        let mut b = Bits::new(nal.get(2..)?);
        match kind {
            33 => {
                let (id, sps) = parse_sps(&mut b)?;
                self.sps.insert(id, sps);
            }
            34 => {
                let (id, pps) = parse_pps(&mut b)?;
                self.pps.insert(id, pps);
            }
            _ => {}
        }
        Some(())
    }

    /// The bytes of the RBSP (after the 2-byte NAL header) that slice segment `nal`'s
    /// header takes through its `byte_alignment()`; `None` when it does not parse or its
    /// PPS or SPS is unknown. `nal` may be a prefix of the NAL unit.
    pub(crate) fn slice_header_bytes(&self, nal: &[u8]) -> Option<usize> {
        let nal_type = u32::from((nal.first()? >> 1) & 0x3f);
        let mut b = Bits::new(nal.get(2..)?);
        self.slice_header(&mut b, nal_type)?;
        Some(b.position() / 8)
    }

    fn slice_header(&self, b: &mut Bits, nal_type: u32) -> Option<()> {
        let first_in_pic = b.flag()?;
        if (16..=23).contains(&nal_type) {
            b.skip(1)?; // no_output_of_prior_pics_flag
        }
        let pps = self.pps.get(&b.ue()?)?;
        let sps = self.sps.get(&pps.sps_id)?;
        let mut dependent = false;
        if !first_in_pic {
            if pps.dependent_slice_segments {
                dependent = b.flag()?;
            }
            b.skip(ceil_log2(sps.pic_size_in_ctbs) as usize)?; // slice_segment_address
        }
        if !dependent {
            independent_fields(b, sps, pps, nal_type)?;
        }
        if pps.tiles_or_wavefronts {
            let entry_points = b.ue()?;
            if entry_points > 0 {
                let len = b.ue()? + 1;
                if len > 32 {
                    return None;
                }
                b.skip(entry_points as usize * len as usize)?;
            }
        }
        if pps.slice_header_extension_present {
            let len = b.ue()?;
            b.skip(8 * len as usize)?;
        }
        // byte_alignment(): a one bit, then zeros to the byte boundary.
        if !b.flag()? {
            return None;
        }
        while b.position() % 8 != 0 {
            b.skip(1)?;
        }
        Some(())
    }
}

/// The fields of an independent slice segment's header (§7.3.6.1), from `slice_reserved_flag`
/// to `slice_loop_filter_across_slices_enabled_flag`.
fn independent_fields(b: &mut Bits, sps: &Sps, pps: &Pps, nal_type: u32) -> Option<()> {
    b.skip(pps.num_extra_slice_header_bits as usize)?;
    let slice_type = b.ue()?; // 0 B, 1 P, 2 I
    if slice_type > 2 {
        return None;
    }
    if pps.output_flag_present {
        b.skip(1)?;
    }
    if sps.separate_colour_plane {
        b.skip(2)?;
    }
    let mut temporal_mvp = false;
    let mut num_pic_total_curr = 0usize;
    if nal_type != 19 && nal_type != 20 {
        b.skip(sps.log2_max_poc_lsb as usize)?; // slice_pic_order_cnt_lsb
        let rps = if !b.flag()? {
            let n = sps.st_rps.len();
            st_ref_pic_set(b, n, n, &sps.st_rps)?
        } else {
            let n = sps.st_rps.len() as u32;
            let idx = if n > 1 { b.bits(ceil_log2(n))? } else { 0 };
            sps.st_rps.get(idx as usize)?.clone()
        };
        num_pic_total_curr += rps.used();
        if sps.long_term_ref_pics {
            let num_sps = if sps.lt_sps_used.is_empty() {
                0
            } else {
                b.ue()?
            };
            let num_pics = b.ue()?;
            if num_sps as usize > sps.lt_sps_used.len() || num_sps + num_pics > 64 {
                return None;
            }
            for i in 0..num_sps + num_pics {
                if i < num_sps {
                    let n = sps.lt_sps_used.len() as u32;
                    let idx = if n > 1 { b.bits(ceil_log2(n))? } else { 0 };
                    num_pic_total_curr += usize::from(*sps.lt_sps_used.get(idx as usize)?);
                } else {
                    b.skip(sps.log2_max_poc_lsb as usize)?; // poc_lsb_lt
                    num_pic_total_curr += usize::from(b.flag()?);
                }
                if b.flag()? {
                    b.ue()?; // delta_poc_msb_cycle_lt
                }
            }
        }
        if sps.temporal_mvp {
            temporal_mvp = b.flag()?;
        }
    }
    let (mut sao_luma, mut sao_chroma) = (false, false);
    if sps.sao {
        sao_luma = b.flag()?;
        if sps.chroma_array_type != 0 {
            sao_chroma = b.flag()?;
        }
    }
    if slice_type != 2 {
        let is_b = slice_type == 0;
        let (mut l0, mut l1) = (pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default);
        if b.flag()? {
            l0 = b.ue()? + 1;
            if is_b {
                l1 = b.ue()? + 1;
            }
        }
        if l0 > 16 || l1 > 16 {
            return None;
        }
        if pps.lists_modification_present && num_pic_total_curr > 1 {
            let bits = ceil_log2(num_pic_total_curr as u32) as usize;
            if b.flag()? {
                b.skip(l0 as usize * bits)?;
            }
            if is_b && b.flag()? {
                b.skip(l1 as usize * bits)?;
            }
        }
        if is_b {
            b.skip(1)?; // mvd_l1_zero_flag
        }
        if pps.cabac_init_present {
            b.skip(1)?;
        }
        if temporal_mvp {
            let from_l0 = if is_b { b.flag()? } else { true };
            if (from_l0 && l0 > 1) || (!from_l0 && l1 > 1) {
                b.ue()?; // collocated_ref_idx
            }
        }
        if (pps.weighted_pred && slice_type == 1) || (pps.weighted_bipred && is_b) {
            pred_weight_table(b, sps.chroma_array_type, l0, if is_b { l1 } else { 0 })?;
        }
        b.ue()?; // five_minus_max_num_merge_cand
    }
    b.se()?; // slice_qp_delta
    if pps.slice_chroma_qp_offsets_present {
        b.se()?;
        b.se()?;
    }
    if pps.chroma_qp_offset_list_enabled {
        b.skip(1)?; // cu_chroma_qp_offset_enabled_flag
    }
    let mut deblocking_disabled = pps.deblocking_disabled;
    if pps.deblocking_override_enabled && b.flag()? {
        deblocking_disabled = b.flag()?;
        if !deblocking_disabled {
            b.se()?;
            b.se()?;
        }
    }
    if pps.loop_filter_across_slices && (sao_luma || sao_chroma || !deblocking_disabled) {
        b.skip(1)?;
    }
    Some(())
}

/// `pred_weight_table()` (§7.3.6.3) for `l0` and `l1` active references.
fn pred_weight_table(b: &mut Bits, chroma_array_type: u32, l0: u32, l1: u32) -> Option<()> {
    b.ue()?; // luma_log2_weight_denom
    let chroma = chroma_array_type != 0;
    if chroma {
        b.se()?;
    }
    for n in [l0, l1] {
        if n == 0 {
            continue;
        }
        let mut luma = Vec::with_capacity(n as usize);
        for _ in 0..n {
            luma.push(b.flag()?);
        }
        let mut chroma_flags = vec![false; n as usize];
        if chroma {
            for f in chroma_flags.iter_mut() {
                *f = b.flag()?;
            }
        }
        for (l, c) in luma.into_iter().zip(chroma_flags) {
            if l {
                b.se()?;
                b.se()?;
            }
            if c {
                for _ in 0..4 {
                    b.se()?;
                }
            }
        }
    }
    Some(())
}

/// `st_ref_pic_set(idx)` (§7.3.7) given the sets before it (`sets`, the SPS's), with
/// `num_sets` = `num_short_term_ref_pic_sets`; derived as §7.4.8 says.
fn st_ref_pic_set(b: &mut Bits, idx: usize, num_sets: usize, sets: &[StRps]) -> Option<StRps> {
    let inter = idx != 0 && b.flag()?;
    if !inter {
        let (neg, pos) = (b.ue()?, b.ue()?);
        if neg > 16 || pos > 16 {
            return None;
        }
        let mut rps = StRps::default();
        let mut poc = 0i32;
        for _ in 0..neg {
            poc -= b.ue()?.checked_add(1)? as i32;
            rps.s0.push((poc, b.flag()?));
        }
        poc = 0;
        for _ in 0..pos {
            poc += b.ue()?.checked_add(1)? as i32;
            rps.s1.push((poc, b.flag()?));
        }
        return Some(rps);
    }
    let delta_idx = if idx == num_sets {
        b.ue()? as usize + 1
    } else {
        1
    };
    let reference = sets.get(idx.checked_sub(delta_idx)?)?;
    let sign = b.flag()?;
    let abs = b.ue()?.checked_add(1)? as i32;
    let delta_rps = if sign { -abs } else { abs };
    let n = reference.num_delta_pocs();
    // used_by_curr_pic_flag[j], use_delta_flag[j] for j in 0..=n.
    let mut flags = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        let used = b.flag()?;
        let use_delta = used || b.flag()?;
        flags.push((used, use_delta));
    }
    let neg = reference.s0.len();
    let mut rps = StRps::default();
    for (j, (d, _)) in reference.s1.iter().enumerate().rev() {
        let (used, keep) = flags[neg + j];
        if d + delta_rps < 0 && keep {
            rps.s0.push((d + delta_rps, used));
        }
    }
    if delta_rps < 0 && flags[n].1 {
        rps.s0.push((delta_rps, flags[n].0));
    }
    for (j, (d, _)) in reference.s0.iter().enumerate() {
        let (used, keep) = flags[j];
        if d + delta_rps < 0 && keep {
            rps.s0.push((d + delta_rps, used));
        }
    }
    for (j, (d, _)) in reference.s0.iter().enumerate().rev() {
        let (used, keep) = flags[j];
        if d + delta_rps > 0 && keep {
            rps.s1.push((d + delta_rps, used));
        }
    }
    if delta_rps > 0 && flags[n].1 {
        rps.s1.push((delta_rps, flags[n].0));
    }
    for (j, (d, _)) in reference.s1.iter().enumerate() {
        let (used, keep) = flags[neg + j];
        if d + delta_rps > 0 && keep {
            rps.s1.push((d + delta_rps, used));
        }
    }
    (rps.s0.len() <= 16 && rps.s1.len() <= 16).then_some(rps)
}

/// `scaling_list_data()` (§7.3.4), skipped.
fn skip_scaling_list_data(b: &mut Bits) -> Option<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !b.flag()? {
                b.ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    b.se()?;
                }
                for _ in 0..coefs {
                    b.se()?;
                }
            }
        }
    }
    Some(())
}

fn parse_sps(b: &mut Bits) -> Option<(u32, Sps)> {
    b.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = b.bits(3)? as usize;
    b.skip(1)?;
    skip_profile_tier_level(b, sub_layers)?;
    let id = b.ue()?;
    let chroma_format = b.ue()?;
    let separate_colour_plane = chroma_format == 3 && b.flag()?;
    let (width, height) = (b.ue()?, b.ue()?);
    if b.flag()? {
        for _ in 0..4 {
            b.ue()?; // conformance window
        }
    }
    b.ue()?; // bit_depth_luma_minus8
    b.ue()?; // bit_depth_chroma_minus8
    let log2_max_poc_lsb = b.ue()? + 4;
    let ordering_all = b.flag()?;
    for _ in (if ordering_all { 0 } else { sub_layers })..=sub_layers {
        b.ue()?;
        b.ue()?;
        b.ue()?;
    }
    let log2_min_cb = b.ue()? + 3;
    let log2_ctb = log2_min_cb + b.ue()?;
    if !(4..=6).contains(&log2_ctb) || log2_max_poc_lsb > 16 {
        return None;
    }
    for _ in 0..4 {
        b.ue()?; // transform block sizes, transform hierarchy depths
    }
    if b.flag()? && b.flag()? {
        skip_scaling_list_data(b)?;
    }
    b.skip(1)?; // amp_enabled_flag
    let sao = b.flag()?;
    if b.flag()? {
        b.skip(8)?; // pcm bit depths
        b.ue()?;
        b.ue()?;
        b.skip(1)?;
    }
    let num_sets = b.ue()? as usize;
    if num_sets > 64 {
        return None;
    }
    let mut st_rps = Vec::with_capacity(num_sets);
    for i in 0..num_sets {
        let rps = st_ref_pic_set(b, i, num_sets, &st_rps)?;
        st_rps.push(rps);
    }
    let long_term_ref_pics = b.flag()?;
    let mut lt_sps_used = Vec::new();
    if long_term_ref_pics {
        let n = b.ue()?;
        if n > 32 {
            return None;
        }
        for _ in 0..n {
            b.skip(log2_max_poc_lsb as usize)?;
            lt_sps_used.push(b.flag()?);
        }
    }
    let temporal_mvp = b.flag()?;
    let ctb = 1u32 << log2_ctb;
    let pic_size_in_ctbs = width.div_ceil(ctb).checked_mul(height.div_ceil(ctb))?;
    Some((
        id,
        Sps {
            chroma_array_type: if separate_colour_plane {
                0
            } else {
                chroma_format
            },
            separate_colour_plane,
            pic_size_in_ctbs,
            log2_max_poc_lsb,
            st_rps,
            long_term_ref_pics,
            lt_sps_used,
            temporal_mvp,
            sao,
        },
    ))
}

fn parse_pps(b: &mut Bits) -> Option<(u32, Pps)> {
    let id = b.ue()?;
    let sps_id = b.ue()?;
    let dependent_slice_segments = b.flag()?;
    let output_flag_present = b.flag()?;
    let num_extra_slice_header_bits = b.bits(3)?;
    b.skip(1)?; // sign_data_hiding_enabled_flag
    let cabac_init_present = b.flag()?;
    let num_ref_idx_l0_default = b.ue()? + 1;
    let num_ref_idx_l1_default = b.ue()? + 1;
    b.se()?; // init_qp_minus26
    b.skip(1)?; // constrained_intra_pred_flag
    let transform_skip = b.flag()?;
    if b.flag()? {
        b.ue()?; // diff_cu_qp_delta_depth
    }
    b.se()?;
    b.se()?;
    let slice_chroma_qp_offsets_present = b.flag()?;
    let weighted_pred = b.flag()?;
    let weighted_bipred = b.flag()?;
    b.skip(1)?; // transquant_bypass_enabled_flag
    let tiles = b.flag()?;
    let wavefronts = b.flag()?;
    if tiles {
        let (cols, rows) = (b.ue()?, b.ue()?);
        if cols > 64 || rows > 64 {
            return None;
        }
        if !b.flag()? {
            for _ in 0..cols + rows {
                b.ue()?;
            }
        }
        b.skip(1)?; // loop_filter_across_tiles_enabled_flag
    }
    let loop_filter_across_slices = b.flag()?;
    let (mut deblocking_override_enabled, mut deblocking_disabled) = (false, false);
    if b.flag()? {
        deblocking_override_enabled = b.flag()?;
        deblocking_disabled = b.flag()?;
        if !deblocking_disabled {
            b.se()?;
            b.se()?;
        }
    }
    if b.flag()? {
        skip_scaling_list_data(b)?;
    }
    let lists_modification_present = b.flag()?;
    b.ue()?; // log2_parallel_merge_level_minus2
    let slice_header_extension_present = b.flag()?;
    let mut chroma_qp_offset_list_enabled = false;
    if b.flag()? {
        let range = b.flag()?;
        let others = b.bits(7)?; // multilayer, 3D, SCC, 4 reserved
        if others != 0 {
            return None;
        }
        if range {
            if transform_skip {
                b.ue()?;
            }
            b.skip(1)?; // cross_component_prediction_enabled_flag
            chroma_qp_offset_list_enabled = b.flag()?;
        }
    }
    Some((
        id,
        Pps {
            sps_id,
            dependent_slice_segments,
            output_flag_present,
            num_extra_slice_header_bits,
            cabac_init_present,
            num_ref_idx_l0_default,
            num_ref_idx_l1_default,
            slice_chroma_qp_offsets_present,
            weighted_pred,
            weighted_bipred,
            tiles_or_wavefronts: tiles || wavefronts,
            loop_filter_across_slices,
            deblocking_override_enabled,
            deblocking_disabled,
            lists_modification_present,
            slice_header_extension_present,
            chroma_qp_offset_list_enabled,
        },
    ))
}

/// `Ceil(Log2(n))`.
fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}
