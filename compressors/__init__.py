"""Visual-token compressors behind one interface (see ``compressors.base``)."""

from compressors.base import CompressorOutput, Compressor, InstructionContext, available, build, register

__all__ = ["Compressor", "CompressorOutput", "InstructionContext", "available", "build", "register"]
