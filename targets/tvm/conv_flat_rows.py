"""The first convolution on an image's 1 or 3 channels, its kernel rows read as flat bytes: its
compute and schedule (the blocked schedule, on the sdot block intrinsic of `conv_blocked`).

Used where the by-element block intrinsic exists (`dot.reads_rows_flat`): padding the image to a
group of 4 channels would add products the flat rows do not compute.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, te

from .conv_blocked import schedule_blocked
from .dot import DotKind
from .rules import ScheduleRule, rule_attrs

RULE = "conv_flat_rows"
FLAT_PAD = "data_pad_flat"  # the padded rows' block, which the schedule splits into pixels x channels
FLAT_STEP = 8  # bytes of a flat row one block-intrinsic step reads: two groups of 4


def _flat_row_length(kernel_w: int, channels: int) -> int:
    return -(-kernel_w * channels // FLAT_STEP) * FLAT_STEP


def group_kernel_flat(kernel, group: int):
    """[O/8, 1, KH, KW, C, 8] -> [O/8, 1, KH, L/8, 2, 8, g]: a kernel row's KW x C weights in the
    order of the input row's bytes (tap-major, as NCHW{C}c stores a row), zero-padded to L, a
    multiple of 8 bytes."""
    occ, icc, kh, kw, icb, ocb = (int(d) for d in kernel.shape)
    length = _flat_row_length(kw, icb)

    def weight(o, c, y, x, p, oc, j):
        k = x * FLAT_STEP + p * group + j
        return te.if_then_else(k < kw * icb, kernel[o, c, y, te.min(k // icb, kw - 1), k % icb, oc], tvm.tirx.const(0, kernel.dtype))

    return te.compute((occ, icc, kh, length // FLAT_STEP, FLAT_STEP // group, ocb, group), weight, name="kernel_group")


def conv_flat_rows(data, kernel, strides, padding, row_taps: int, dot: DotKind):
    """data [N, 1, H, W, C] for an image's C < 4 channels, kernel grouped by `group_kernel_flat`
    -> [N, O/8, OH, OW, 8] int32. A kernel row over C channels reads KW x C contiguous bytes of the
    input row; read flat, 8 bytes at a time (the block intrinsic: one `ldr d`, two by-element
    sdot), they take ceil(KW x C / 8) steps: 3 for ResNet's 7x7 stem on 3 channels, where padding
    the image to 4 channels costs 4 (one step of 2 taps x 4 channels each, the 7th with a zero
    tap). The bytes read past the row's last tap meet zero weights; the padded row is made wide
    enough for them (and a multiple of 4 pixels, so that its copy splits evenly on 4 cores)."""
    n, icc, height, width, icb = (int(d) for d in data.shape)
    occ, _, kh, steps = (int(d) for d in kernel.shape[:4])
    ocb, g = int(kernel.shape[-2]), dot.group
    (sh, sw), (top, left, bottom, right) = (int(s) for s in strides), (int(p) for p in padding)
    oh = (height + top + bottom - kh) // sh + 1
    ow = (width + left + right - row_taps) // sw + 1
    padded_w = max(width + left + right, -(-((ow - 1) * sw * icb + steps * FLAT_STEP) // icb))
    padded_w += -padded_w % 4
    padded_h = height + top + bottom

    def pad(b, c, y, j):
        x = j // icb - left
        inside = tvm.tirx.all(y >= top, y < top + height, x >= 0, x < width)
        return te.if_then_else(inside, data[b, c, y - top, x, j % icb], tvm.tirx.const(0, data.dtype))

    # flat rows: byte j of a row is pixel j // C, channel j % C (the schedule splits j by C)
    padded = te.compute((n, icc, padded_h, padded_w * icb), pad, name=FLAT_PAD)
    rc, ry = te.reduce_axis((0, icc), "rc"), te.reduce_axis((0, kh), "ry")
    rx, rq, rj = te.reduce_axis((0, steps), "rx"), te.reduce_axis((0, FLAT_STEP // g), "rq"), te.reduce_axis((0, g), "rj")
    return te.compute(
        (n, occ, oh, ow, ocb),
        lambda b, o, y, x, c: te.sum(
            padded[b, rc, y * sh + ry, x * sw * icb + rx * FLAT_STEP + rq * g + rj].astype("int32")
            * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
        name="conv2d_NCHWc_int8_flat_rows", attrs=rule_attrs(RULE))


def split_flat_rows(sch: s_tir.Schedule, conv) -> None:
    """The flat padded rows of `conv_flat_rows`: their byte loop split into pixels x the input's C
    channels, so that the copy is a padding copy like the others (`schedule_steps.parallel_rows`),
    with no division per byte."""
    for producer in sch.get_producers(conv):
        block = sch.get(producer)
        if block.name_hint == FLAT_PAD and block.reads:
            channels = int(block.reads[0].source.shape[-1])
            sch.split(sch.get_loops(producer)[-1], [None, channels])


def schedule_flat_rows(sch: s_tir.Schedule, conv, rules, stats) -> bool:
    return schedule_blocked(sch, conv, rules, stats, grouped=True, prepare_input=split_flat_rows)


SCHEDULE_RULES: dict[str, ScheduleRule] = {RULE: schedule_flat_rows}
