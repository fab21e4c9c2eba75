"""LegalizeOps entries of the integer pipeline: relax.nn.conv2d to the kernel family that fits the
target and the layer (`legalize_conv2d`), and the elementwise ops around the integer kernels
with their constants as immediates and a cheaper requantize tail (`ElementwiseLegalizer`)."""

from __future__ import annotations

from functools import partial

import numpy as np
import tvm
from tvm import topi

from . import winograd
from .conv_blocked import conv_nchwc, conv_shifted, group_kernel, offset_products, pairs_pixels
from .conv_flat_rows import conv_flat_rows, group_kernel_flat
from .conv_partial_sums import conv_partial_sums
from .dot import GENERIC, dot_kind


def legalize_ops(target: tvm.target.Target) -> dict:
    """LegalizeOps' map for `target`: the convolutions and the elementwise ops."""
    return {"relax.nn.conv2d": legalize_conv2d(target),
            **ElementwiseLegalizer(dequantize_by_bias=dot_kind(target).name == "sdot").entries()}


def layout_source(bb, expr):
    """`expr` itself, or, for a variable bound to a legalized layout transform (what ConvertLayout
    puts on a constant operand), the transform's input; None for any other binding."""
    from tvm import relax

    if not isinstance(expr, relax.Var):
        return expr
    bound = bb.lookup_binding(expr)
    if (isinstance(bound, relax.Call) and bound.op.same_as(tvm.ir.Op.get("relax.call_tir"))
            and "layout_transform" in bound.args[0].name_hint and len(bound.args[1]) == 1):
        return bound.args[1][0]
    return None


def _plain_weight(bb, kernel):
    """The OIHW int8 weight behind a blocked convolution's kernel, as numpy, or None."""
    source = layout_source(bb, kernel)
    if source is kernel or not isinstance(source, tvm.ir.expr.GenericConst) or not isinstance(source.value, tvm.runtime.Tensor):
        return None
    value = source.value
    return value.numpy() if len(value.shape) == 4 and str(value.dtype) == "int8" else None


def legalize_conv2d(target: tvm.target.Target):
    """LegalizeOps entry for relax.nn.conv2d: blocked layouts get one of our kernel families' computes,
    plain ones TOPI's."""
    from tvm import relax

    dot = dot_kind(target)

    def legalize(bb, call):
        attrs = call.attrs
        out_dtype = str(call.ty.dtype)
        if len(attrs.data_layout) == 4:
            return bb.call_te(topi.nn.conv, call.args[0], call.args[1], attrs.strides, attrs.padding, attrs.dilation,
                              attrs.groups, attrs.data_layout, attrs.kernel_layout, out_dtype, primfunc_name_hint="conv2d")
        data, kernel = call.args
        if str(data.ty.dtype) == "int8" and out_dtype == "int32":
            n_block = int(data.ty.shape[-1])
            if dot.block_intrinsic and n_block < dot.group and int(data.ty.shape[1]) == 1 \
                    and all(int(d) == 1 for d in attrs.dilation):
                # an image's 1 or 3 channels, kept by the lowering (`reads_rows_flat`)
                grouped = bb.emit_te(group_kernel_flat, kernel, dot.group, primfunc_name_hint="kernel_group")
                return bb.call_te(partial(conv_flat_rows, row_taps=int(kernel.ty.shape[3]), dot=dot), data, grouped,
                                  attrs.strides, attrs.padding, primfunc_name_hint="conv2d_NCHWc_int8")
            if dot.partial_sums > 1:  # no dot product: the multiply pipe is the limit, Winograd takes 1/4 of the products
                weight = _plain_weight(bb, kernel)
                if weight is not None and winograd.applies(weight, data.ty.shape, attrs.strides, attrs.padding, attrs.dilation):
                    return bb.call_te(winograd.conv_winograd, data, relax.const(winograd.transform_kernel(weight), "int16"),
                                      attrs.padding, primfunc_name_hint="conv2d_NCHWc_int8")
            use = dot if n_block % dot.group == 0 and (dot.partial_sums == 1 or n_block == dot.group) else GENERIC
            if n_block % use.group:  # e.g. a 3-channel input block: the float-style loop on integers
                return bb.call_te(conv_nchwc, data, kernel, attrs.strides, attrs.padding, attrs.dilation, "int32",
                                  primfunc_name_hint="conv2d_NCHWc")
            # Pixel pairs: an odd row (a 7x7 kernel on a 4-channel image) gets a zero tap, read one padding column further
            # right: the same output width, the same sums (the extra products are 0).
            pairs = pairs_pixels(use, n_block, attrs.dilation)
            grouped = bb.emit_te(group_kernel, kernel, use.group, pairs, primfunc_name_hint="kernel_group")
            row_taps = int(kernel.ty.shape[3]) if pairs else 0
            if use.partial_sums > 1:
                return bb.call_te(partial(conv_partial_sums, dot=use), data, grouped, attrs.strides, attrs.padding,
                                  attrs.dilation, primfunc_name_hint="conv2d_NCHWc_int8")
            if use.activation_offset:
                products = bb.emit_te(offset_products, grouped, use.activation_offset, primfunc_name_hint="offset_products")
                return bb.call_te(partial(conv_shifted, dot=use, row_taps=row_taps), data, grouped, products,
                                  attrs.strides, attrs.padding, attrs.dilation, primfunc_name_hint="conv2d_NCHWc_int8")
            return bb.call_te(partial(conv_nchwc, dot=use, row_taps=row_taps), data, grouped,
                              attrs.strides, attrs.padding, attrs.dilation, "int32", primfunc_name_hint="conv2d_NCHWc_int8")
        return bb.call_te(conv_nchwc, data, kernel, attrs.strides, attrs.padding, attrs.dilation, out_dtype,
                          primfunc_name_hint="conv2d_NCHWc")

    return legalize


def _uniform_value(bb, expr):
    """The one value of a constant whose elements are all equal, also behind the layout transform
    ConvertLayout puts on a per-channel constant (a permutation: the same elements), else None."""
    source = layout_source(bb, expr)
    if source is None:
        return None
    if int(np.prod([int(d) for d in source.ty.shape])) != int(np.prod([int(d) for d in expr.ty.shape])):
        return None  # a padding layout transform adds elements
    expr = source
    if not isinstance(expr, tvm.ir.expr.GenericConst) or not isinstance(expr.value, tvm.runtime.Tensor):
        return None
    values = expr.value.numpy()
    if values.size == 0 or not np.all(values == values.flat[0]):
        return None
    return tvm.tirx.const(values.flat[0].item(), str(expr.ty.dtype))


# round-half-to-even by one float add: for |v| <= 2^22, v + 1.5 * 2^23 lands where the float's
# spacing is 1, so the add itself rounds v to an integer, held in the low mantissa bits.
ROUNDING_BIAS = 12582912.0
BIAS_BITS = 0x4B400000  # the bits of ROUNDING_BIAS


class ElementwiseLegalizer:
    """LegalizeOps entries for the elementwise ops around the integer kernels (state per build).

    * An operand that is one value repeated (the requantize clamp bounds 127 / -128, a relu's 0, a
      scale of 1: per-channel constants only so that ConvertLayout carries the blocked layout
      through the op) becomes an immediate in the kernel. Loaded from a buffer, the compiler cannot
      see the value: a float min/max is a compare and a select each instead of one fminnm/fmaxnm,
      and the constants take vector registers the epilogue spills. Same values, same results.
    * The requantize tail astype(int8, max(min(round(v), 127), -128)) (`lowering._requantize`) is
      computed as low_byte(bits(max(min(v, 127), -128) + 1.5 * 2^23)): clamping before rounding
      gives the same integer (the bounds are integers), and for |v| <= 128 the float add rounds to
      nearest even exactly as round() does, leaving the integer in the low bits. One add instead
      of a round and a float-to-int conversion, each a 2-cycle single-pipe op on the Cortex-A76
      (Neoverse-N1 model): the epilogue of every convolution. Bit-identical results.
    * `dequantize_by_bias` (sdot cores): int8 -> float32 as a widening integer add of bits(1.5 * 2^23)
      and a float subtract of 1.5 * 2^23 instead of an scvtf, which is also 2 uops on one pipe
      there. On the A72 model (smull cores) it came out slower (261.72 against 261.64 M cycles)."""

    def __init__(self, dequantize_by_bias: bool = False) -> None:
        self.stage: dict = {}  # hash of a legalized call -> (the call, (requantize stage, the value v))
        self.dequantize_by_bias = dequantize_by_bias

    def entries(self) -> dict:
        from tvm import topi

        entries = {f"relax.{name}": self._binary(getattr(topi, name), name)
                   for name in ("add", "multiply", "minimum", "maximum")}
        entries["relax.round"] = self._round
        entries["relax.astype"] = self._astype
        return entries

    def _stage_of(self, bb, expr):
        from tvm import relax

        bound = bb.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        entry = self.stage.get(hash(bound)) if bound is not None else None
        return entry[1] if entry is not None and entry[0].same_as(bound) else None

    def _record(self, call, stage):
        # Keyed by the call itself, not its GlobalVar: the block builder shares one PrimFunc among
        # same-shaped calls, so a GlobalVar would name the last value of that shape, not this one.
        if stage is not None:
            self.stage[hash(call)] = (call, stage)
        return call

    def _round(self, bb, call):
        from tvm import topi

        (value,) = call.args
        result = bb.call_te(topi.round, value, primfunc_name_hint="round")
        return self._record(result, ("round", value) if str(value.ty.dtype) == "float32" else None)

    def _binary(self, te_func, name: str):
        bounds = {"minimum": ("round", 127.0, "clamp_high"), "maximum": ("clamp_high", -128.0, "clamp")}

        def legalize(bb, call):
            a, b = call.args
            shape = [int(d) for d in call.ty.shape]
            for keep, other, swap in ((a, b, False), (b, a, True)):
                value = _uniform_value(bb, other)
                if value is not None and [int(d) for d in keep.ty.shape] == shape and str(keep.ty.dtype) == str(other.ty.dtype):
                    result = bb.call_te((lambda x: te_func(value, x)) if swap else (lambda x: te_func(x, value)), keep,
                                        primfunc_name_hint=name)
                    stage = self._stage_of(bb, keep)
                    if name in bounds and stage is not None and stage[0] == bounds[name][0] and float(value.value) == bounds[name][1]:
                        return self._record(result, (bounds[name][2], stage[1]))
                    return result
            return bb.call_te(te_func, a, b, primfunc_name_hint=name)

        return legalize

    def _astype(self, bb, call):
        from tvm import te, topi

        (value,) = call.args
        dtype = str(call.attrs.dtype)
        stage = self._stage_of(bb, value)
        if dtype == "int8" and stage is not None and stage[0] == "clamp":
            def requantize_tail(v):
                return te.compute(v.shape, lambda *i: tvm.tirx.reinterpret("int32", _biased(v(*i))).astype("int8"),
                                  name="requantize")

            return bb.call_te(requantize_tail, stage[1], primfunc_name_hint="requantize")
        if dtype == "float32" and str(value.ty.dtype) == "int8" and self.dequantize_by_bias:
            # float(x) for an int8 x as bits(1.5 * 2^23) + x, read as a float, minus 1.5 * 2^23: exact
            # (|x| <= 128 stays in the binade where the spacing is 1). A widening integer add (sshll,
            # saddw) and an fsub, on either vector pipe, instead of an scvtf (2 uops on one pipe on the
            # Cortex-A76). The bit cast also keeps TVM's simplifier from folding the float arithmetic.
            bias = tvm.tirx.const(ROUNDING_BIAS, "float32")
            return bb.call_te(lambda x: te.compute(
                x.shape, lambda *i: tvm.tirx.reinterpret("float32", x(*i).astype("int32") + tvm.tirx.const(BIAS_BITS, "int32")) - bias,
                name="dequantize"), value, primfunc_name_hint="cast")
        if dtype == "float32" and str(value.ty.dtype) == "int8":
            # through int32 explicitly: LLVM widens int8 -> int32 with sshll; int8 -> float directly
            # came out as zip / shl / sshr sign extensions. The same values.
            return bb.call_te(lambda x: te.compute(x.shape, lambda *i: x(*i).astype("int32").astype("float32"), name="dequantize"),
                              value, primfunc_name_hint="cast")
        return bb.call_te(topi.cast, value, dtype, primfunc_name_hint="cast")


def _biased(v):
    """clamp(v, -128, 127) + 1.5 * 2^23: the float whose low mantissa bits are round(clamp(v))."""
    from tvm import te

    return te.max(te.min(v, tvm.tirx.const(127.0, "float32")), tvm.tirx.const(-128.0, "float32")) \
        + tvm.tirx.const(ROUNDING_BIAS, "float32")
