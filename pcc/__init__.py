"""pcc: a compiler from probabilistic circuits to fused log-sum-exp einsum kernels.

    model = pcc.compile("circuit.pc")     # a .pc file (or text, or a Circuit) -> torch module
    model = pcc.load("model.pt")          # a checkpoint (`pcc train`, `pcc compile -o`) -> module
    model = pcc.fit(pcc.structures.hclt(train), train, valid)   # learn a circuit from arrays

The names that need torch (`compile`, `load`, `fit`, `EM`, `CompiledCircuit`) and the structure
generators (`pcc.structures`) are imported on first use,
so that the frontend (`parse`, `to_text`, `validate`) and `pcc check`/`fmt` start without torch.
"""
from importlib import import_module

from .errors import (BackendError, CheckpointError, DataError, Diagnostic, PcCheckError, PcError,
                     PcSyntaxError, ShapeError, SizeError, SourceError)
from .ir import Circuit, Family, Input, Param, Span, Sum
from .frontend import parse, to_text, validate

__version__ = "0.1.0"

_LAZY = {"compile": ("pcc.compiler", "compile"), "load": ("pcc.checkpoint", "load_model"),
         "fit": ("pcc.fitting", "fit"), "structures": ("pcc.structures", None),
         "EM": ("pcc.em", "EM"), "CompiledCircuit": ("pcc.runtime.module", "CompiledCircuit")}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'pcc' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = import_module(module) if attr is None else getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
