"""Winograd F(4x4, 3x3) for int8 3x3 stride-1 convolutions on cores without a dot product (`dot.SMULL`):
its compute, the smlal tensor intrinsic and its schedule.

On the Cortex-A72 every vector integer multiply runs on one pipe (F0), 8 int8 products a cycle
at best (smull): the ceiling of a direct convolution, ours and ONNX Runtime's MLAS alike.
Winograd's F(4x4, 3x3) (Lavin & Gray, 2015; ncnn and TVM's old ARM schedules have it in float)
makes a 4x4 tile of outputs from a 6x6 tile of inputs with 36 products per input channel instead
of 144. Its transformed operands need 16 bits, so the products are `smlal` by element (int16 x
int16 -> int32, 4 a cycle): a quarter of the products at half the rate. The transforms are adds
and shifts, which the other vector pipe (F1) takes.

Exact, in integer arithmetic:
* The kernel transform G has fractions (1/4, 1/6, 1/24); its rows scaled by D = (4, 6, 6, 24, 24, 1)
  are integers (`KERNEL_ROWS`), so U' = D U D is integer and fits int16 (|U'| <= 49 x 128). The
  input transform B^T is integer (`INPUT_ROWS`): |V| <= 100 x 128, int16 too.
* The output transform takes D back out with 24 D^-1 on each side (`OUTPUT_ROWS`, integer), so it
  gives 576 y, in int32 arithmetic that may wrap: everything is exact modulo 2^32.
* 576 = 2^6 x 9: (576 y mod 2^32) >> 6 is 9 y mod 2^26; times the inverse of 9 modulo 2^32 it is
  y mod 2^26, and sign-extended from bit 25 it is y whenever |y| < 2^25 (`_recover`). `applies`
  checks that bound on the layer's weights: |y| <= 128 x sum |w| for each output channel, which
  holds for any 3x3 layer of up to 227 input channels whatever its weights.
"""

from __future__ import annotations

import enum

import numpy as np
import tvm
from tvm import s_tir, te, topi
from tvm.script import tirx as T
from tvm.s_tir import TensorIntrin

from .blocking import ACCUMULATOR_SCOPE, BLOCK, PARALLEL_GRAIN
from .rules import ScheduleRule, rule_attrs
from .schedule_steps import (extent, inline_epilogue, inline_side_inputs, largest_divisor, parallel_producers, register_tile,
                             vectorize_tile_epilogue)

TILE = 4  # outputs per tile side
WINDOW = TILE + 2  # inputs per tile side
INPUT_ROWS = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])  # B^T
KERNEL_ROWS = np.array([[1, 0, 0], [-1, -1, -1], [-1, 1, -1], [1, 2, 4], [1, -2, 4], [0, 0, 1]])  # D G
OUTPUT_ROWS = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                        [0, 1, -1, 8, -8, 1]]) * np.array([6, 4, 4, 1, 1, 24])  # A^T (24 D^-1)
SCALE_SHIFT, INVERSE_OF_9 = 6, 0x38E38E39  # 576 = 2^6 x 9; 9 x INVERSE_OF_9 = 1 mod 2^32
OUTPUT_BOUND = 1 << 25  # |y| below this comes back exactly from 576 y mod 2^32
INTRINSIC = "edgeresnet_smlal_lane_8x4_i16i16i32"
RULE = "winograd"  # on the products block; the rule schedules the transforms around it


def _tiles(size: int) -> int:
    return -(-size // TILE)


def applies(weight: np.ndarray, data_shape, strides, padding, dilation) -> bool:
    """Whether a convolution (int8 weight [O, C, 3, 3], NCHW{8}c input [N, C/8, H, W, 8]) runs as
    F(4x4, 3x3): 3x3, stride 1, undilated, whole 8-channel blocks, outputs at least a tile wide (a
    size that is not a multiple of 4 gets a last partial tile: computed whole, partly discarded),
    every parallel loop a multiple of the boards' 4 cores, and |y| < 2^25 for any int8 input."""
    out_channels, channels, kh, kw = weight.shape
    n, _, height, width, block = (int(d) for d in data_shape)
    top, left, bottom, right = (int(p) for p in padding)
    oh, ow = height + top + bottom - 2, width + left + right - 2
    if (kh, kw) != (3, 3) or any(int(s) != 1 for s in strides) or any(int(d) != 1 for d in dilation):
        return False
    if block != BLOCK or channels % BLOCK or out_channels % BLOCK or oh < TILE or ow < TILE:
        return False
    tiles = n * _tiles(oh) * _tiles(ow)
    if (tiles * channels // BLOCK) % PARALLEL_GRAIN or (n * out_channels // BLOCK * _tiles(oh)) % PARALLEL_GRAIN:
        return False
    largest = 128 * int(np.abs(weight.astype(np.int64)).sum(axis=(1, 2, 3)).max())
    return largest < OUTPUT_BOUND


def transform_kernel(weight: np.ndarray) -> np.ndarray:
    """[O, C, 3, 3] int8 -> U' [O/8, 36, C, 8] int16: per 8 output channels and each of the 36 tile
    positions a [C, 8] block, the 8 outputs of one input channel contiguous (one vector). Each
    block of output channels holds its 36 positions together, so every `Order` reads the weights
    front to back."""
    out_channels, channels = weight.shape[:2]
    u = np.einsum("xi,ocij,yj->xyoc", KERNEL_ROWS, weight.astype(np.int64), KERNEL_ROWS)
    assert np.abs(u).max() < 1 << 15
    u = u.reshape(WINDOW * WINDOW, out_channels // BLOCK, BLOCK, channels).transpose(1, 0, 3, 2)
    return np.ascontiguousarray(u.astype(np.int16))


def _row_of(matrix: np.ndarray, row, column: int, dtype: str):
    """matrix[row, column] for a loop variable `row`: a select chain, one constant once the
    schedule unrolls the loop (then the zero terms fold away)."""
    value = tvm.tirx.const(0, dtype)
    for r in range(matrix.shape[0]):
        if matrix[r, column]:
            value = tvm.tirx.Select(row == r, tvm.tirx.const(int(matrix[r, column]), dtype), value)
    return value


def _transform(matrix: np.ndarray, row, read, dtype: str):
    """sum over columns j of matrix[row, j] x read(j), skipping columns that are zero in every row."""
    terms = [_row_of(matrix, row, j, dtype) * read(j) for j in range(matrix.shape[1]) if matrix[:, j].any()]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _recover(value):
    """y from 576 y mod 2^32 (int32), for |y| < 2^25."""
    nine_y = value >> SCALE_SHIFT
    y_low = nine_y * tvm.tirx.const(INVERSE_OF_9, "int32")
    spare = 32 - 26
    return (y_low << spare) >> spare


def conv_winograd(data, kernel, padding):
    """data [N, C/8, H, W, 8] int8, kernel U' [O/8, 36, C, 8] int16 (`transform_kernel`)
    -> [N, O/8, OH, OW, 8] int32, the 3x3 stride-1 convolution's sums."""
    n, blocks, height, width, block = (int(d) for d in data.shape)
    out_blocks, positions = int(kernel.shape[0]), int(kernel.shape[1])
    top, left, bottom, right = (int(p) for p in padding)
    oh, ow = height + top + bottom - 2, width + left + right - 2
    rows_of_tiles, columns_of_tiles = _tiles(oh), _tiles(ow)
    tiles = n * rows_of_tiles * columns_of_tiles
    # a last partial tile reads zeros below and right of the padded input
    bottom, right = bottom + rows_of_tiles * TILE - oh, right + columns_of_tiles * TILE - ow
    padded = topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, bottom, right, 0], name="data_pad")

    def tile_pixel(t, dy, dx):  # (image, row, column) of pixel (dy, dx) of tile t's input window
        image, rest = t // (rows_of_tiles * columns_of_tiles), t % (rows_of_tiles * columns_of_tiles)
        return image, rest // columns_of_tiles * TILE + dy, rest % columns_of_tiles * TILE + dx

    def input_rows(t, c, xi, j, k):
        def read(i):
            image, y, x = tile_pixel(t, i, j)
            return padded[image, c, y, x, k].astype("int16")
        return _transform(INPUT_ROWS, xi, read, "int16")

    rows = te.compute((tiles, blocks, WINDOW, WINDOW, block), input_rows, name="winograd_input_rows")
    transformed = te.compute(
        (positions, tiles, blocks, block),
        lambda e, t, c, k: _transform(INPUT_ROWS, e % WINDOW, lambda j: rows[t, c, e // WINDOW, j, k], "int16"),
        name="winograd_input")
    rc, rk = te.reduce_axis((0, blocks), "rc"), te.reduce_axis((0, block), "rk")
    products = te.compute(
        (out_blocks, positions, tiles, BLOCK),
        lambda o, e, t, c: te.sum(transformed[e, t, rc, rk].astype("int32") * kernel[o, e, rc * block + rk, c].astype("int32"),
                                  axis=[rc, rk]),
        name="conv2d_winograd_product", attrs=rule_attrs(RULE))
    output_rows = te.compute(
        (out_blocks, tiles, WINDOW, TILE, BLOCK),
        lambda o, t, xi, j, c: _transform(OUTPUT_ROWS, j, lambda nu: products[o, xi * WINDOW + nu, t, c], "int32"),
        name="winograd_output_rows")

    def output(b, o, y, x, c):
        t = (b * rows_of_tiles + y // TILE) * columns_of_tiles + x // TILE
        return _recover(_transform(OUTPUT_ROWS, y % TILE, lambda xi: output_rows[o, t, xi, x % TILE, c], "int32"))

    return te.compute((n, out_blocks, oh, ow, BLOCK), output, name="conv2d_winograd_output")


# Input channels per product step: their 4 x 8 int16 weights are one 64-byte cache line, so the
# weight stream (8x the bytes of the int8 kernel: 36 positions of int16) advances one line a step,
# in ascending order, which a stream prefetcher follows. A step of 8 spans two lines, and LLVM
# loads the upper one first: the misses then alternate direction and no stream is learnt
# (ResNet-18's 512-channel layers waited ~100 cycles on DRAM for most of their 295k lines each
# under benchmarks/arm_cost.py's Cortex-A72 model).
STEP = 4


@T.prim_func(s_tir=True)
def _tile_description(a: T.handle, b: T.handle, c: T.handle) -> None:
    """8 output channels += one tile position's 4 input channels (int16) x weights [4 in, 8 out] (int16)."""
    A = T.match_buffer(a, (STEP,), "int16", offset_factor=1)
    B = T.match_buffer(b, (STEP, 8), "int16", offset_factor=1)
    C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:8], A[0:STEP], B[0:STEP, 0:8])
        T.writes(C[0:8])
        for i in T.serial(0, 8):
            for k in T.serial(0, STEP):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vk, vi], "int32")


def _smlal_lanes(accumulator, A, B, half: int):
    """accumulator (4 output channels) + sum over k of B[k, half:half+4] x A[k]: smlal / smlal2 by
    element (LLVM folds the lane splat into the instruction, the high half into smlal2). The input
    vector is one `ldr d`; the operands are Python-built expressions, not TVMScript variables
    (a named vector temporary becomes a buffer)."""
    for k in range(STEP):
        weights = tvm.tirx.Shuffle([B.vload([k, 0], "int16x8")], [half + i for i in range(4)])
        lane = tvm.tirx.Shuffle([A.vload([0], f"int16x{STEP}")], [k] * 4)
        accumulator = accumulator + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v4i32"), weights, lane, dtype="int32x4")
    return accumulator


@T.prim_func(s_tir=True)
def _smlal_lane_implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (STEP,), "int16", offset_factor=1)
    B = T.match_buffer(b, (STEP, 8), "int16", offset_factor=1)
    C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:8], A[0:STEP], B[0:STEP, 0:8])
        T.writes(C[0:8])
        C[T.ramp(T.int32(0), 1, 4)] = _smlal_lanes(C.vload([0], "int32x4"), A, B, 0)
        C[T.ramp(T.int32(4), 1, 4)] = _smlal_lanes(C.vload([4], "int32x4"), A, B, 4)


TensorIntrin.register(INTRINSIC, _tile_description, _smlal_lane_implementation, override=True)


# Bytes of the Winograd-domain tensors (transformed input and products) and of the weights
# that one kernel may keep in cache: half the Cortex-A72's L2 (the Pi 4's 1 MB, shared by its
# cores), the core Winograd serves (`dot.SMULL`). Past it, the tensors of a whole layer go to
# DRAM between the passes (ResNet-18's 56x56 layers: 0.9 MB + 1.8 MB, 2.7 M memory-stall cycles
# a layer under benchmarks/arm_cost.py's rpi4 model, against 7.2 M of products).
CACHED_BYTES = 512 * 1024


class Order(enum.Enum):
    """How a layer's three passes (input transform, products, output transform) are ordered."""

    LAYER = "layer"  # each pass one parallel loop over the whole layer
    # one parallel loop over chunks of a tile row, each running the three passes on its tiles: where
    # the Winograd-domain tensors of the layer do not stay in cache and the weights (read again by
    # every chunk) do: the 56x56 layers of ResNets
    TILE_CHUNKS = "tile-chunks"
    # the input transform over the layer, then one parallel loop over output blocks, each running
    # the products and the output transform of its 8 channels: where the transformed input (read
    # again by every block) stays in cache; each weight is read once, each product while in cache
    OUTPUT_BLOCKS = "output-blocks"


def order_of(tiles: int, channels: int, out_channels: int, chunk: int, images: int) -> Order:
    """The order that keeps a layer's Winograd-domain tensors in cache, of those whose parallel loop
    splits evenly among the boards' cores (`tiles` of all `images`, in chunks of `chunk` tiles of a row).
    The chunked orders also need more than one tile, input block and output block in a chunk:
    compute_at regenerates no loop of one iteration, and `_schedule_products` reads the loops by place."""
    positions = WINDOW * WINDOW
    transformed = positions * tiles * channels * 2  # int16
    products = positions * tiles * out_channels * 4  # int32
    weights = positions * channels * out_channels * 2
    several = channels > BLOCK and out_channels > BLOCK
    if transformed + products > CACHED_BYTES >= weights and tiles // chunk % PARALLEL_GRAIN == 0 and chunk > 1 and several:
        return Order.TILE_CHUNKS
    if transformed <= CACHED_BYTES and images * out_channels // BLOCK % PARALLEL_GRAIN == 0 and tiles > images and several:
        return Order.OUTPUT_BLOCKS
    return Order.LAYER


def _schedule_input(sch: s_tir.Schedule, rows, transformed, parallel: bool) -> None:
    """Per tile and input block, the 6x6 window's row transform then the column transform, the 36
    positions unrolled (their coefficients fold to adds and shifts), the 8 channels the vector."""
    e, t, c, k = sch.get_loops(transformed)[-4:]
    sch.reorder(t, c, e, k)
    tile_block = sch.fuse(t, c)
    if parallel:
        sch.parallel(tile_block)
    sch.compute_at(rows, tile_block)
    sch.unroll(e)
    sch.vectorize(k)
    for loop in sch.get_loops(rows)[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(rows)[-1])


def _schedule_products(sch: s_tir.Schedule, product, rules, by_output_block: bool, parallel: bool) -> None:
    """(output block, position), or position alone under the caller's loop over output blocks
    (`by_output_block`: compute_at does not regenerate a loop of one iteration) |
    tile group | input block | input-channel step | tiles of the group (unrolled: their 2 x 4
    accumulators each stay in registers, the step's 4 weight vectors are shared) | 8 output x
    `STEP` input channels, tensorized (8 smlal by element)."""
    *outer_loops, t, c, rc, rk = sch.get_loops(product)[-5 if by_output_block else -6:]
    group = largest_divisor(extent(sch, t) or 1, rules.winograd_tiles)
    t_o, t_i = sch.split(t, [None, group])
    rk_o, rk_i = sch.split(rk, [None, STEP])
    sch.reorder(*outer_loops, t_o, rc, rk_o, t_i, c, rk_i)
    write_back = register_tile(sch, product, outer_loops, t_o, t_i, parallel=parallel)
    sch.decompose_reduction(product, rc)
    sch.tensorize(c, INTRINSIC)
    vectorize_tile_epilogue(sch, write_back)


def _schedule_output(sch: s_tir.Schedule, output_rows, output, tx) -> None:
    """Per tile: the 6x4 row transform, then per output pixel the column transform, the exact
    recovery of y and the epilogue (unrolled, the 8 channels the vector)."""
    sch.compute_at(output_rows, tx)
    for loop in sch.get_loops(output_rows)[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(output_rows)[-1])
    *_, iy, ix, c = sch.get_loops(output)
    sch.unroll(iy)
    sch.unroll(ix)
    sch.vectorize(c)


def schedule_winograd(sch: s_tir.Schedule, product, rules, stats) -> bool:
    """`conv_winograd`'s three passes (input transform, products, output transform with the
    epilogue) in the `Order` that keeps their tensors in cache (`order_of`)."""
    transformed = sch.get_producers(product)[0]
    rows = sch.get_producers(transformed)[0]
    (output_rows,) = sch.get_consumers(product)
    (output,) = sch.get_consumers(output_rows)
    epilogue = inline_epilogue(sch, output)
    inline_side_inputs(sch, epilogue, output)
    if epilogue is not None:
        sch.compute_inline(output)
        output = epilogue

    parallel_producers(sch, rows)  # the padding copy, as for the direct convolutions

    out_blocks, _, tiles, _, blocks, _ = (extent(sch, loop) or 1 for loop in sch.get_loops(product))
    b, o, y, x, c = sch.get_loops(output)
    ty, iy = sch.split(y, [None, TILE])
    tx, ix = sch.split(x, [None, TILE])
    images, columns = extent(sch, b) or 1, extent(sch, tx) or 1
    chunk = largest_divisor(columns, rules.winograd_tiles)
    order = order_of(tiles, blocks * BLOCK, out_blocks * BLOCK, chunk, images)
    if order is Order.TILE_CHUNKS:
        tx_o, tx_i = sch.split(tx, [None, chunk])
        sch.reorder(b, ty, tx_o, o, tx_i, iy, ix, c)
        outer = sch.fuse(b, ty, tx_o)
        sch.parallel(outer)
        _schedule_output(sch, output_rows, output, tx_i)
        sch.compute_at(product, outer)
        sch.compute_at(transformed, outer)
        _schedule_input(sch, rows, transformed, parallel=False)
        _schedule_products(sch, product, rules, by_output_block=False, parallel=False)
    elif order is Order.OUTPUT_BLOCKS:
        sch.reorder(b, o, ty, tx, iy, ix, c)
        outer = sch.fuse(b, o)
        sch.parallel(outer)
        _schedule_output(sch, output_rows, output, tx)
        sch.compute_at(product, outer)
        _schedule_input(sch, rows, transformed, parallel=True)
        _schedule_products(sch, product, rules, by_output_block=True, parallel=False)
    else:
        _schedule_input(sch, rows, transformed, parallel=True)
        _schedule_products(sch, product, rules, by_output_block=False, parallel=True)
        sch.reorder(b, o, ty, tx, iy, ix, c)
        sch.parallel(sch.fuse(b, o, ty))
        _schedule_output(sch, output_rows, output, tx)
    stats.tensorized += 1
    return True


SCHEDULE_RULES: dict[str, ScheduleRule] = {RULE: schedule_winograd}
