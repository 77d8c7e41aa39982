"""The classifier as an ONNX graph for ONNX Runtime: converted with tf2onnx, fused, quantised.

`tf2onnx` converts the forward pass from token ids to logits (tokenisation stays
outside: TF Text's string ops have no ONNX form; `sft.tokenizer` does it). Two
graph passes then give ONNX Runtime the operators it has fast kernels for, which
neither it nor its transformer optimiser finds in this encoder's graph on their own:
- each layer norm (mean, squared difference, mean, rsqrt, scale, shift) becomes
  one `LayerNormalization`;
- each exact GELU, `0.5 x erfc(-x/√2)`, becomes one `Gelu` (ONNX Runtime's
  `com.microsoft` operator). TensorFlow's `Erfc` has no tf2onnx handler; it is
  converted as `1 - erf`, which the pass then folds away.
Dynamic int8 quantisation (`quantize_int8`) quantises the matmuls' weights per
output channel, before any fusion of MatMul and Add into Gemm would hide them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

OPSET = 17  # LayerNormalization is an ONNX operator from opset 17
_MS_DOMAIN = "com.microsoft"


def convert(model, path: str | Path) -> None:
    """Write `model` (tf-keras, three int32 [batch, seq] inputs -> logits) as ONNX, fused."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from sft.hub.encoder import INPUT_NAMES

    signature = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]

    @tf.function(input_signature=signature)
    def logits(*features):
        return {"logits": tf.cast(model(dict(zip(INPUT_NAMES, features)), training=False), tf.float32)}

    graph, _ = tf2onnx.convert.from_function(logits, input_signature=signature, opset=OPSET,
                                             custom_op_handlers={"Erfc": (_erfc, [])})
    fuse(graph)
    onnx.save(graph, str(path))


def _erfc(ctx, node, name, args):
    """tf2onnx handler: erfc(t) = 1 - erf(t)."""
    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(f"{node.name}_one", np.array(1.0, np.float32))
    ctx.remove_node(node.name)
    ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=node.output, name=node.name)


def fuse(graph) -> Counter:
    """Rewrite layer norms and GELUs in place (an onnx GraphProto or ModelProto); how many of each."""
    from onnx import helper

    model = graph if hasattr(graph, "graph") else None
    g = model.graph if model is not None else graph
    rewrite = _Rewrite(g)
    fused = Counter()
    for node in list(g.node):
        if node.op_type == "Reciprocal" and rewrite.layer_norm(node):
            fused["LayerNormalization"] += 1
        elif node.op_type == "Erf" and rewrite.gelu(node):
            fused["Gelu"] += 1
    rewrite.drop_dead_nodes()
    if model is not None and fused["Gelu"] and not any(o.domain == _MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return fused


class _Rewrite:
    """Pattern matching over one graph: who produces and who consumes each tensor."""

    def __init__(self, graph):
        self.graph = graph
        self.constants = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _from(self, name: str, *op_types: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type in op_types else None

    def _only_consumer(self, name: str, op_type: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def _constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.constants:
            return numpy_helper.to_array(self.constants[name])
        node = self._from(name, "Constant")
        return numpy_helper.to_array(node.attribute[0].t) if node is not None else None

    def _other(self, node, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]

    def layer_norm(self, reciprocal) -> bool:
        """(x - mean) · 1/sqrt(mean((x - mean)²) + eps) · gamma + beta, from its Reciprocal."""
        sqrt = self._from(reciprocal.input[0], "Sqrt")
        add_eps = sqrt and self._from(sqrt.input[0], "Add")
        variance = add_eps and self._from(add_eps.input[0], "ReduceMean", "GlobalAveragePool")
        square = variance and self._from(variance.input[0], "Mul")
        centred = square and square.input[0] == square.input[1] and self._from(square.input[0], "Sub")
        mean = centred and self._from(centred.input[1], "ReduceMean", "GlobalAveragePool")
        scale = self._only_consumer(reciprocal.output[0], "Mul")
        scaled = scale and self._only_consumer(scale.output[0], "Mul")
        shift = scaled and self._only_consumer(scaled.output[0], "Add")
        if not (mean and shift and mean.input[0] == centred.input[0]
                and self._other(scaled, scale.output[0]) == centred.output[0]):
            return False
        eps = self._constant(add_eps.input[1])
        gamma, beta = self._other(scale, reciprocal.output[0]), self._other(shift, scaled.output[0])
        if eps is None or self._constant(gamma) is None or self._constant(beta) is None:
            return False
        self._replace(shift, "LayerNormalization", [centred.input[0], gamma, beta],
                      axis=-1, epsilon=float(eps.reshape(-1)[0]))
        return True

    def gelu(self, erf) -> bool:
        """0.5 x · (1 - erf(-x · 1/√2)), from its Erf: the exact GELU as the encoder writes it."""
        scaled = self._from(erf.input[0], "Mul")
        negated = scaled and next(filter(None, (self._from(i, "Neg") for i in scaled.input)), None)
        subtract = self._only_consumer(erf.output[0], "Sub")
        product = subtract and self._only_consumer(subtract.output[0], "Mul")
        half = product and self._from(self._other(product, subtract.output[0]), "Mul")
        if not (negated and half and negated.input[0] in half.input):
            return False
        x = negated.input[0]
        if not (self._is(self._other(scaled, negated.output[0]), 1 / np.sqrt(2)) and self._is(subtract.input[0], 1.0)
                and self._is(self._other(half, x), 0.5)):
            return False
        self._replace(product, "Gelu", [x], domain=_MS_DOMAIN)
        return True

    def _is(self, name: str, value: float) -> bool:
        """Whether `name` is a constant equal to `value`."""
        constant = self._constant(name)
        return constant is not None and bool(np.allclose(constant, value))

    def _replace(self, last, op_type: str, inputs: list[str], domain: str = "", **attributes) -> None:
        """A new node computing `last`'s output in its place; the nodes it replaces die unused."""
        from onnx import helper

        index = list(self.graph.node).index(last)
        new = helper.make_node(op_type, inputs, list(last.output), name=f"{last.name}_{op_type}", domain=domain,
                               **attributes)
        self.graph.node.remove(last)
        self.graph.node.insert(index, new)

    def drop_dead_nodes(self) -> None:
        """Nodes and constants nothing reads any more (ONNX Runtime would warn of each at every load)."""
        needed = {o.name for o in self.graph.output}
        for node in reversed(list(self.graph.node)):
            if any(out in needed for out in node.output):
                needed.update(node.input)
            else:
                self.graph.node.remove(node)
        for constant in [t for t in self.graph.initializer if t.name not in needed]:
            self.graph.initializer.remove(constant)


def quantize_int8(source: str | Path, target: str | Path) -> None:
    """Dynamic int8: the matmuls' weights quantised per output channel, activations at run time."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX's shape inference knows no com.microsoft Gelu: the tensors after it are float32.
    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                     weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": TensorProto.FLOAT})
