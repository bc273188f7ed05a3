"""Visual-token compressors behind one interface (see ``compressors.base``).

Importing this package imports every method module, which registers it by name.
"""

from compressors.base import (
    Compressor,
    CompressorOutput,
    InLMCompressor,
    InstructionContext,
    available,
    build,
    register,
)
from compressors import (  # noqa: F401  (imported to register)
    compressor_vla,
    divprune,
    efficientvla,
    fastv,
    none,
    pool,
    random_drop,
    src,
    stc,
    tome,
    visionzip,
)

__all__ = [
    "Compressor",
    "CompressorOutput",
    "InLMCompressor",
    "InstructionContext",
    "available",
    "build",
    "register",
]
