"""Explicit vectors in Numba kernels: one vector type and ten operations on it.

LLVM's loop vectorizer only turns innermost loops into vector code, one vector per array access. The
register tile of a direct convolution (oneDNN's kernel, and ``microkernels.outer_tile_*``) needs
something else: R x V vectors of sums that stay in registers across a whole reduction loop, each
step adding a scalar broadcast times a vector of weights. Numba has no vector type, so this module
gives it one, as LLVM's own ``<16 x float>`` (``<8 x double>``; half that without AVX-512):

    load(a, i)         -> a[i : i + lanes]          (a 1-D array; no bounds check)
    store(a, i, v)        a[i : i + lanes] = v
    store_first(a, i, v, count)  a[i : i + count] = v[:count]   (a masked store; count <= lanes)
    load_first(a, i, count)  -> a[i : i + count], then zeros to fill the vector (a masked load)
    broadcast(a, i)    -> a[i] in every lane
    fma(x, y, acc)     -> x * y + acc, lane by lane, rounded once (an FMA instruction); also of
                          three scalars of one float type (``llvm.fma.f32``, ``.f64``)
    zeros(a)           -> a vector of zeros of a's dtype
    sum_lanes(v)       -> the sum of v's lanes, halving: v[:n/2] + v[n/2:] until one lane is left
                          (16 float32: 8 + 4 + 2 + 1 additions, in this order on every CPU)
    transpose_add(src, i, si, add, j, dst, k, sk)
                          dst[k + r*sk : + lanes] = src[i + r : + lanes*si : si] + add[j + r], r < lanes
                          (a lanes x lanes square transposed in registers, each row plus a scalar)
    lanes(a)           -> how many of a's elements a vector holds: VECTOR_BYTES // a.itemsize

A vector lives in a local variable, which LLVM keeps in a register. With ``NUMBA_DISABLE_JIT=1``
the same operations run on NumPy arrays of ``lanes`` elements, so a kernel can be stepped
through in a debugger (``fma`` then rounds twice).
"""
import numpy as np
from llvmlite import binding, ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def vector_registers():
    """32 with AVX-512 (in the CPU features Numba compiles for), else 16."""
    features = config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return 32 if "+avx512f" in features.split(",") else 16


VECTOR_BYTES = 64 if vector_registers() >= 32 else 32


class Vector(types.Type):
    """A vector of ``count`` elements of ``dtype``, held in one (AVX-512) or two (AVX2) registers."""

    def __init__(self, dtype, count):
        self.dtype, self.count = dtype, count
        super().__init__(name=f"Vector({dtype}, {count})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _vector_of(array_type):
    return Vector(array_type.dtype, VECTOR_BYTES // (array_type.dtype.bitwidth // 8))


def _is_flat_float_array(a):
    return isinstance(a, types.Array) and a.ndim == 1 and isinstance(a.dtype, types.Float)


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def _load(typingctx, a, i):
    if not (_is_flat_float_array(a) and isinstance(i, types.Integer)):
        return None
    vector = _vector_of(a)

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vector_pointer = builder.bitcast(pointer, context.get_value_type(vector).as_pointer())
        return builder.load(vector_pointer, align=a.dtype.bitwidth // 8)
    return vector(a, i), codegen


@intrinsic
def _store(typingctx, a, i, v):
    if not (_is_flat_float_array(a) and isinstance(i, types.Integer) and v == _vector_of(a)):
        return None

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(pointer, args[2].type.as_pointer()), align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


def _llvm_type_suffix(value_type):
    """How LLVM's intrinsics name a vector type (v16f32, v8f64, ...) or a scalar one (f32, f64)."""
    if isinstance(value_type, ir.VectorType):
        return f"v{value_type.count}{_llvm_type_suffix(value_type.element)}"
    return "f32" if isinstance(value_type, ir.FloatType) else "f64"


def _first_lanes(context, builder, count, count_type, lanes):
    """(whole, mask) for a masked access of ``count`` elements: whether count >= lanes (then a plain
    load or store does it: AVX2's masked ones, vmaskmovps, are slower), and <0 < count, 1 < count, ...>."""
    limit = context.cast(builder, count, count_type, types.int64)
    lane = ir.Constant(ir.VectorType(ir.IntType(64), lanes), list(range(lanes)))
    splat = builder.shuffle_vector(
        builder.insert_element(ir.Constant(lane.type, ir.Undefined), limit, ir.Constant(ir.IntType(32), 0)),
        ir.Constant(lane.type, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
    whole = builder.icmp_signed(">=", limit, ir.Constant(ir.IntType(64), lanes))
    return whole, builder.icmp_signed("<", lane, splat)


@intrinsic
def _load_first(typingctx, a, i, count):
    if not (_is_flat_float_array(a) and isinstance(i, types.Integer) and isinstance(count, types.Integer)):
        return None
    vector = _vector_of(a)

    def codegen(context, builder, sig, args):
        array, index, count = args
        vector_type = context.get_value_type(vector)
        pointer = builder.bitcast(_element_pointer(context, builder, sig.args[0], array, index), vector_type.as_pointer())
        align = ir.Constant(ir.IntType(32), a.dtype.bitwidth // 8)
        whole, mask = _first_lanes(context, builder, count, sig.args[2], vector.count)
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [pointer.type, align.type, mask.type, vector_type]),
            f"llvm.masked.load.{_llvm_type_suffix(vector_type)}.p0")
        with builder.if_else(whole) as (then_whole, then_part):
            with then_whole:
                plain, whole_block = builder.load(pointer, align=align.constant), builder.block
            with then_part:
                masked = builder.call(masked_load, [pointer, align, mask, ir.Constant(vector_type, None)])
                part_block = builder.block
        value = builder.phi(vector_type)
        value.add_incoming(plain, whole_block)
        value.add_incoming(masked, part_block)
        return value
    return vector(a, i, count), codegen


@intrinsic
def _store_first(typingctx, a, i, v, count):
    if not (_is_flat_float_array(a) and isinstance(i, types.Integer) and v == _vector_of(a)
            and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        array, index, value, count = args
        pointer = builder.bitcast(_element_pointer(context, builder, sig.args[0], array, index), value.type.as_pointer())
        align = ir.Constant(ir.IntType(32), a.dtype.bitwidth // 8)
        whole, mask = _first_lanes(context, builder, count, sig.args[3], value.type.count)
        masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [value.type, pointer.type, align.type, mask.type]),
            f"llvm.masked.store.{_llvm_type_suffix(value.type)}.p0")
        with builder.if_else(whole) as (then_whole, then_part):
            with then_whole:
                builder.store(value, pointer, align=align.constant)
            with then_part:
                builder.call(masked_store, [value, pointer, align, mask])
        return context.get_dummy_value()
    return types.none(a, i, v, count), codegen


@intrinsic
def _broadcast(typingctx, a, i):
    if not (_is_flat_float_array(a) and isinstance(i, types.Integer)):
        return None
    vector = _vector_of(a)

    def codegen(context, builder, sig, args):
        value = builder.load(_element_pointer(context, builder, sig.args[0], args[0], args[1]))
        return _splat(builder, context.get_value_type(vector), value)
    return vector(a, i), codegen


def _splat(builder, vector_type, value):
    """A vector of ``vector_type`` with ``value`` in every lane."""
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    everywhere = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count)
    return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined), everywhere)


@intrinsic
def _fma(typingctx, x, y, acc):
    if not (isinstance(acc, (Vector, types.Float)) and x == acc and y == acc):
        return None

    def codegen(context, builder, sig, args):
        vector_type = args[0].type
        fused = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                               f"llvm.fma.{_llvm_type_suffix(vector_type)}")
        return builder.call(fused, args)
    return acc(x, y, acc), codegen


def transpose_masks(lanes, h):
    """The two shuffles of one step of a register transpose: row i (i & h == 0) takes its own lanes
    j with j & h == 0 and, in the others, row i + h's lanes j - h; row i + h the rest. Done for h =
    lanes/2, lanes/4, ..., 1 this swaps the off-diagonal blocks at every scale: the transpose, in
    lanes * log2(lanes) two-vector shuffles. Indices >= lanes pick from the second vector."""
    first = [j if not j & h else lanes + j - h for j in range(lanes)]
    second = [j + h if not j & h else lanes + j for j in range(lanes)]
    return first, second


@intrinsic
def _transpose_add(typingctx, src, src_at, src_stride, add, add_at, dst, dst_at, dst_stride):
    arrays, indices = (src, add, dst), (src_at, src_stride, add_at, dst_at, dst_stride)
    if not (all(_is_flat_float_array(a) and a.dtype == src.dtype for a in arrays)
            and all(isinstance(i, types.Integer) for i in indices)):
        return None
    vector = _vector_of(src)

    def codegen(context, builder, sig, args):
        vector_type, lanes = context.get_value_type(vector), vector.count
        align = src.dtype.bitwidth // 8
        src_, add_, dst_ = args[0], args[3], args[5]
        src_at_, src_stride_, add_at_, dst_at_, dst_stride_ = (
            context.cast(builder, args[k], sig.args[k], types.int64) for k in (1, 2, 4, 6, 7))

        def element(array_type, array, start, stride, k):  # a pointer to array[start + k*stride]
            index = builder.add(start, builder.mul(stride, ir.Constant(ir.IntType(64), k)))
            return _element_pointer(context, builder, array_type, array, index)

        def vector_at(array_type, array, start, stride, k):
            return builder.bitcast(element(array_type, array, start, stride, k), vector_type.as_pointer())

        rows = [builder.load(vector_at(src, src_, src_at_, src_stride_, k), align=align) for k in range(lanes)]
        h = lanes // 2
        while h:
            first, second = (ir.Constant(ir.VectorType(ir.IntType(32), lanes), m) for m in transpose_masks(lanes, h))
            for i in range(lanes):
                if not i & h:
                    a, b = rows[i], rows[i + h]
                    rows[i], rows[i + h] = builder.shuffle_vector(a, b, first), builder.shuffle_vector(a, b, second)
            h //= 2
        for k, row in enumerate(rows):
            value = builder.load(element(add, add_, add_at_, ir.Constant(ir.IntType(64), 1), k))
            builder.store(builder.fadd(row, _splat(builder, vector_type, value)),
                          vector_at(dst, dst_, dst_at_, dst_stride_, k), align=align)
        return context.get_dummy_value()
    return types.none(src, src_at, src_stride, add, add_at, dst, dst_at, dst_stride), codegen


@intrinsic
def _zeros(typingctx, a):
    if not _is_flat_float_array(a):
        return None
    vector = _vector_of(a)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vector), None)
    return vector(a), codegen


@intrinsic
def _sum_lanes(typingctx, v):
    if not isinstance(v, Vector):
        return None

    def codegen(context, builder, sig, args):
        value, count = args[0], v.count
        while count > 1:  # the low half plus the high half
            half = count // 2
            low, high = (builder.shuffle_vector(value, value, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                                          list(range(first, first + half))))
                         for first in (0, half))
            value, count = builder.fadd(low, high), half
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))
    return v.dtype(v), codegen


@intrinsic
def _lanes(typingctx, a):
    if not isinstance(a, types.Array):
        return None
    count = _vector_of(a).count

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, count)
    return types.intp(a), codegen


def _lanes_py(a):
    return VECTOR_BYTES // a.itemsize


def _sum_lanes_py(v):
    """``sum_lanes`` in NumPy: the same halving additions, in the same order."""
    while v.size > 1:
        v = v[:v.size // 2] + v[v.size // 2:]
    return v[0]


def _transpose_add_py(src, src_at, src_stride, add, add_at, dst, dst_at, dst_stride):
    """``transpose_add`` in NumPy: row k of dst is column k of src's lanes x lanes square, plus add[add_at + k]."""
    n = _lanes_py(src)
    square = np.lib.stride_tricks.as_strided(src[src_at:], (n, n), (src_stride * src.itemsize, src.itemsize))
    for k in range(n):
        dst[dst_at + k * dst_stride:dst_at + k * dst_stride + n] = square[:, k] + add[add_at + k]


if config.DISABLE_JIT:  # plain NumPy, for stepping through a kernel
    def load(a, i):
        return a[i:i + _lanes_py(a)].copy()

    def store(a, i, v):
        a[i:i + v.size] = v

    def store_first(a, i, v, count):
        a[i:i + count] = v[:count]

    def load_first(a, i, count):
        v = np.zeros(_lanes_py(a), a.dtype)
        v[:count] = a[i:i + count]
        return v

    def broadcast(a, i):
        return np.full(_lanes_py(a), a[i])

    def fma(x, y, acc):
        return x * y + acc

    def zeros(a):
        return np.zeros(_lanes_py(a), a.dtype)

    transpose_add, sum_lanes = _transpose_add_py, _sum_lanes_py

    lanes = _lanes_py
else:
    load, store, broadcast, fma, zeros, lanes = _load, _store, _broadcast, _fma, _zeros, _lanes
    load_first, store_first, transpose_add, sum_lanes = _load_first, _store_first, _transpose_add, _sum_lanes
