"""Explicit vectors in Numba kernels: one vector type and eight operations on it.

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
    fma(x, y, acc)     -> x * y + acc, lane by lane, rounded once (an FMA instruction)
    zeros(a)           -> a vector of zeros of a's dtype
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


def _llvm_type_suffix(vector_type):
    """How LLVM's intrinsics name a vector type: v16f32, v8f64, ..."""
    bits = 32 if isinstance(vector_type.element, ir.FloatType) else 64
    return f"v{vector_type.count}f{bits}"


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
        vector_type = context.get_value_type(vector)
        lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        everywhere = ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count)
        return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined), everywhere)
    return vector(a, i), codegen


@intrinsic
def _fma(typingctx, x, y, acc):
    if not (isinstance(acc, Vector) and x == acc and y == acc):
        return None

    def codegen(context, builder, sig, args):
        vector_type = args[0].type
        fused = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                               f"llvm.fma.{_llvm_type_suffix(vector_type)}")
        return builder.call(fused, args)
    return acc(x, y, acc), codegen


@intrinsic
def _zeros(typingctx, a):
    if not _is_flat_float_array(a):
        return None
    vector = _vector_of(a)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vector), None)
    return vector(a), codegen


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

    lanes = _lanes_py
else:
    load, store, broadcast, fma, zeros, lanes = _load, _store, _broadcast, _fma, _zeros, _lanes
    load_first, store_first = _load_first, _store_first
