"""pcc: a compiler from probabilistic circuits to fused log-sum-exp einsum kernels."""
from .errors import (BackendError, CheckpointError, DataError, Diagnostic, PcCheckError, PcError,
                     PcSyntaxError, ShapeError, SourceError)
from .ir import Circuit, Family, Input, Param, Span, Sum
from .frontend import parse, load, to_text, validate

__version__ = "0.1.0"
from .compiler import compile
from .em import EM
from .runtime.module import CompiledCircuit
