"""Q/DQ ONNX -> integer Relax: int8 x int8 -> int32 compute with int8 activations between layers.

TVM 0.27's ONNX importer turns Q/DQ into float arithmetic around float
convolutions (fake quantization at FP32 speed). These rewrites, written with
Relax's pattern language, replace each quantized chain by integer compute:

  quantize(conv2d(dq(x), dq(w)) + b)   -> requant(conv2d(x, w, out_dtype=int32) * sx*sw/so + b/so)
  quantize(relu|max_pool|reshape(dq(x))) -> the same op on int8 (monotonic; requant if scales differ)
  quantize(dq(a) + dq(b))              -> requant(a * sa/so + b * sb/so)
  quantize(mean(dq(x)))                -> requant(sum_int32(x) * sx/(N*so))
  matmul(dq(x), dq(w)^T) + b           -> float(matmul(x, w^T, out_dtype=int32)) * sx*sw + b   (the logits)

Requantization uses a float32 multiplier (per output channel for per-channel
weights), then round, clip to [-128, 127] and cast: simple to verify against the
exact Q/DQ reference, and on ARM the vector float multiply costs little next to
the int8 dot products. All zero points must be 0 (symmetric scheme).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from edgeresnet.errors import InputError

from .blocking import BLOCK


def _value(constant) -> np.ndarray:
    """The numpy value of a Relax constant (the ONNX importer's GenericConst or relax.Constant)."""
    holder = getattr(constant, "value", None)
    return (holder if holder is not None else constant.data).numpy()


def _const(array, dtype: str) -> relax.Constant:
    return relax.const(np.ascontiguousarray(np.asarray(array).astype(dtype)), dtype)


def _bound(value, dtype: str, shape: tuple[int, ...]) -> relax.Constant:
    """A per-channel constant, (1, C, 1, 1) for feature maps: ConvertLayout carries blocked
    layouts through a binary op only when the other operand can be blocked too, which a
    0-d or (1, 1, 1, 1) one cannot (nor through clip, which has no layout rule)."""
    broadcast = (1, shape[1]) + (1,) * (len(shape) - 2) if len(shape) >= 2 else (1,) * len(shape)
    return _const(np.full(broadcast, value), dtype)


def _requantize(value: relax.Expr, multiplier, shape: tuple[int, ...], offset=None) -> relax.Expr:
    """int32 (or float) -> int8: value * multiplier (+ offset), rounded half to even, clipped."""
    factor = _bound(multiplier, "float32", shape) if np.ndim(multiplier) == 0 else _const(multiplier, "float32")
    scaled = relax.op.multiply(relax.op.astype(value, "float32"), factor)
    if offset is not None:
        scaled = relax.op.add(scaled, _const(offset, "float32"))
    rounded = relax.op.round(scaled)
    clipped = relax.op.maximum(relax.op.minimum(rounded, _bound(127, "float32", shape)), _bound(-128, "float32", shape))
    return relax.op.astype(clipped, "int8")


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def _dequantize_pattern():
    data, scale, zero = wildcard(), is_const(), is_const()
    return is_op("relax.dequantize")(data, scale, zero), data, scale, zero


def _check_symmetric(*zeros) -> None:
    for zero in zeros:
        if np.any(_value(zero) != 0):
            raise InputError("the TVM integer path needs symmetric Q/DQ (all zero points 0); quantize with the 'tvm' profile")


def _channel_shape(scale: np.ndarray, rank: int) -> np.ndarray:
    return scale.reshape((1, -1) + (1,) * (rank - 2)) if scale.size > 1 else scale.reshape(())


@dataclass
class LoweringStats:
    conv: int = 0
    elementwise: int = 0
    add: int = 0
    pool: int = 0
    dense: int = 0
    float_convs_left: int = 0
    float_dense_left: int = 0

    @property
    def lowered(self) -> int:
        return self.conv + self.elementwise + self.add + self.pool + self.dense

    def to_dict(self) -> dict:
        return {**self.__dict__, "lowered": self.lowered}


CHANNEL_GROUP = 4  # input channels one sdot or vpdpbusd instruction reduces (pmaddwd takes 2: 4 suits all)


CONV_ATTRS = ("strides", "padding", "dilation", "groups", "data_layout", "kernel_layout", "out_layout")


def _foldable(attrs: dict, weight: np.ndarray) -> bool:
    """A first convolution on few channels (an image's 1 or 3) with a wide kernel."""
    return (int(attrs["groups"]) == 1 and str(attrs["data_layout"]) == "NCHW" and str(attrs["kernel_layout"]) == "OIHW"
            and weight.shape[1] < BLOCK and weight.shape[3] > 1
            and all(int(d) == 1 for d in attrs["dilation"]))


def _fold_kernel_width(data, weight: np.ndarray, attrs: dict):
    """Fold the kernel's width into the channels: input [N, C, H, W] -> [N, KW*C, H, OW] (the
    KW strided column slices the kernel sees side by side), kernel [O, C, KH, KW] -> [O, KW*C, KH, 1].

    Exact integer arithmetic, the same products and sums. Why: a 3-channel 7x7 stem cannot fill
    a dot-product group or an 8-channel block (it ran as scalar code on cores without sdot, half
    of ResNet-18's cycles on the A72); folded, its 21 channels pad to 24 and it runs on the same
    micro-kernels as every other convolution, for 24/21 of the useful products (the caller pads
    the folded channels to a whole block)."""
    _, channels, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (top, left, bottom, right) = (int(v) for v in attrs["strides"]), (int(v) for v in attrs["padding"])
    width = _shape(data)[3]
    out_w = (width + left + right - kernel_w) // stride_w + 1
    padded = relax.op.nn.pad(data, [0, 0, 0, 0, 0, 0, left, right], pad_value=0.0) if left or right else data
    columns = [relax.op.strided_slice(padded, axes=[3], begin=[kx], end=[kx + stride_w * (out_w - 1) + 1], strides=[stride_w])
               for kx in range(kernel_w)]
    folded = relax.op.concat(columns, axis=1)  # channel kx * C + c
    weight = weight.transpose(0, 3, 1, 2).reshape(weight.shape[0], kernel_w * channels, kernel_h, 1)
    attrs = {**attrs, "strides": [stride_h, 1], "padding": [top, 0, bottom, 0]}
    return folded, np.ascontiguousarray(weight), attrs


def _rewrite_conv(func: relax.Function, stats: LoweringStats, fold_first_convolution: bool,
                  keep_image_channels: bool = False) -> relax.Function:
    dq_x, x, sx, zx = _dequantize_pattern()
    dq_w, w, sw, zw = _dequantize_pattern()
    conv = is_op("relax.nn.conv2d")(dq_x, dq_w)
    bias = is_const()
    biased = is_op("relax.add")(conv, is_op("relax.reshape")(bias, wildcard()))
    so, zo = is_const(), is_const()
    pattern = is_op("relax.quantize")(biased | conv, so, zo)

    def rewrite(expr, m):
        _check_symmetric(m[zx], m[zw], m[zo])
        attrs = {key: m[conv].attrs[key] for key in CONV_ATTRS}
        weight = _value(m[w])
        if weight.dtype != np.int8:
            return expr
        s_x, s_w, s_o = float(_value(m[sx])), _value(m[sw]).astype(np.float64).reshape(-1), float(_value(m[so]))
        data = m[x]
        folded = fold_first_convolution and _foldable(attrs, weight)
        if folded:
            data, weight, attrs = _fold_kernel_width(data, weight, attrs)
        missing = -weight.shape[1] % (BLOCK if folded else CHANNEL_GROUP)
        if keep_image_channels and not folded and _foldable(attrs, weight) and weight.shape[1] < CHANNEL_GROUP:
            missing = 0  # the kernel reads the rows flat (`dot.reads_rows_flat`): padding would add products
        if int(attrs["groups"]) == 1 and missing and str(attrs["data_layout"]) == "NCHW":
            # Zero channels up to a whole dot-product group (an image's 1 or 3), or a whole
            # 8-channel block once folded: exact, and the first convolution then runs on the
            # same instructions as the others.
            data = relax.op.nn.pad(data, [0, 0, 0, missing, 0, 0, 0, 0], pad_value=0.0)
            weight = np.pad(weight, [(0, 0), (0, missing), (0, 0), (0, 0)])
        acc = relax.op.nn.conv2d(
            data, _const(weight, "int8"), strides=attrs["strides"], padding=attrs["padding"], dilation=attrs["dilation"],
            groups=attrs["groups"], data_layout=attrs["data_layout"], kernel_layout=attrs["kernel_layout"],
            out_layout=attrs["out_layout"], out_dtype="int32",
        )
        # The bias joins after scaling, in float, as in the Q/DQ graph: folding it into the
        # int32 accumulator would overflow for channels whose weight scale is near zero.
        offset = _value(m[bias]).astype(np.float64).reshape(1, -1, 1, 1) / s_o if bias in m else None
        stats.conv += 1
        return _requantize(acc, (s_x * s_w / s_o).reshape(1, -1, 1, 1), _shape(expr), offset)

    return rewrite_call(pattern, rewrite, func)


def _rewrite_monotonic(func: relax.Function, stats: LoweringStats) -> relax.Function:
    """relu, max-pooling and reshapes commute with a positive scale: run them on int8."""
    dq_x, x, sx, zx = _dequantize_pattern()
    op = is_op("relax.nn.relu")(dq_x) | is_op("relax.nn.max_pool2d")(dq_x) | is_op("relax.reshape")(dq_x, wildcard())
    so, zo = is_const(), is_const()
    pattern = is_op("relax.quantize")(op, so, zo)

    def rewrite(expr, m):
        _check_symmetric(m[zx], m[zo])
        call = m[op]
        shape = _shape(expr)
        if call.op.name == "relax.nn.relu":
            result = relax.op.maximum(m[x], _bound(0, "int8", shape))
        elif call.op.name == "relax.reshape":
            result = relax.op.reshape(m[x], call.args[1])
        else:
            a = call.attrs
            result = relax.op.nn.max_pool2d(m[x], a.pool_size, a.strides, a.padding, a.dilation, a.ceil_mode,
                                            a.count_include_pad, a.layout, a.out_layout)
        s_x, s_o = float(_value(m[sx])), float(_value(m[so]))
        stats.elementwise += 1
        return result if np.isclose(s_x, s_o, rtol=0, atol=0) else _requantize(result, s_x / s_o, _shape(expr))

    return rewrite_call(pattern, rewrite, func)


def _rewrite_add(func: relax.Function, stats: LoweringStats) -> relax.Function:
    dq_a, a, sa, za = _dequantize_pattern()
    dq_b, b, sb, zb = _dequantize_pattern()
    so, zo = is_const(), is_const()
    pattern = is_op("relax.quantize")(is_op("relax.add")(dq_a, dq_b), so, zo)

    def rewrite(expr, m):
        _check_symmetric(m[za], m[zb], m[zo])
        s_o = float(_value(m[so]))
        shape = _shape(expr)
        # Per-channel-shaped scales (`_bound`): with 0-d ones ConvertLayout took the add out of the
        # blocked layout (a layout transform of both operands and of the result at every residual add).
        total = relax.op.add(
            relax.op.multiply(relax.op.astype(m[a], "float32"), _bound(float(_value(m[sa])) / s_o, "float32", shape)),
            relax.op.multiply(relax.op.astype(m[b], "float32"), _bound(float(_value(m[sb])) / s_o, "float32", shape)),
        )
        stats.add += 1
        return _requantize(total, 1.0, _shape(expr))

    return rewrite_call(pattern, rewrite, func)


def _rewrite_global_pool(func: relax.Function, stats: LoweringStats) -> relax.Function:
    dq_x, x, sx, zx = _dequantize_pattern()
    mean = is_op("relax.mean")(dq_x)
    so, zo = is_const(), is_const()
    pattern = is_op("relax.quantize")(mean, so, zo)

    def rewrite(expr, m):
        _check_symmetric(m[zx], m[zo])
        axes = [int(v) for v in m[mean].attrs.axis]
        shape = [int(d) for d in m[x].ty.shape]
        count = int(np.prod([shape[i] for i in axes]))
        total = relax.op.sum(relax.op.astype(m[x], "int32"), axis=axes, keepdims=bool(m[mean].attrs.keepdims))
        stats.pool += 1
        return _requantize(total, float(_value(m[sx])) / (count * float(_value(m[so]))), _shape(expr))

    return rewrite_call(pattern, rewrite, func)


def _rewrite_dense(func: relax.Function, stats: LoweringStats) -> relax.Function:
    dq_x, x, sx, zx = _dequantize_pattern()
    dq_w, w, sw, zw = _dequantize_pattern()
    matmul = is_op("relax.matmul")(dq_x, is_op("relax.permute_dims")(dq_w))
    bias = is_const()
    pattern = is_op("relax.add")(matmul, bias)

    def rewrite(expr, m):
        _check_symmetric(m[zx], m[zw])
        weight = _value(m[w])
        if weight.dtype != np.int8:
            return expr
        acc = relax.op.matmul(m[x], relax.op.permute_dims(_const(weight, "int8"), [1, 0]), out_dtype="int32")
        scale = float(_value(m[sx])) * _value(m[sw]).astype(np.float64).reshape(1, -1)
        stats.dense += 1
        logits = relax.op.multiply(relax.op.astype(acc, "float32"), _const(scale, "float32"))
        return relax.op.add(logits, _const(_value(m[bias]).reshape(1, -1), "float32"))

    return rewrite_call(pattern, rewrite, func)


def lower_to_integer(mod: tvm.IRModule, fold_first_convolution: bool = False,
                     keep_image_channels: bool = False) -> tuple[tvm.IRModule, LoweringStats]:
    """Rewrite every quantized chain of `main` into integer compute; count what was and was not lowered.

    `fold_first_convolution`: see `_fold_kernel_width` (for targets where it pays: `dot.folds_first_convolution`).
    `keep_image_channels`: a first convolution on an image's 1 or 3 channels keeps them, not padded
    to a dot-product group (for targets whose kernel reads its rows flat: `dot.reads_rows_flat`)."""
    stats = LoweringStats()
    func = _rewrite_conv(mod["main"], stats, fold_first_convolution, keep_image_channels)
    for rewrite in (_rewrite_dense, _rewrite_global_pool, _rewrite_monotonic, _rewrite_add):
        func = rewrite(func, stats)
    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    mod[mod.get_global_var("main")] = func
    mod = relax.transform.DeadCodeElimination()(mod)
    bindings = [b for blk in mod["main"].body.blocks for b in blk.bindings if isinstance(b.value, relax.Call)]
    for binding in bindings:
        call = binding.value
        if getattr(call.op, "name", "") == "relax.nn.conv2d" and str(binding.var.ty.dtype) == "float32":
            stats.float_convs_left += 1
        if getattr(call.op, "name", "") == "relax.matmul" and str(binding.var.ty.dtype) == "float32":
            stats.float_dense_left += 1
    return mod, stats

