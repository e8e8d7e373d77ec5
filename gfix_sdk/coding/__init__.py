"""Low-level coding shared by every stage: bounds-checked bytes, entropy-coded integers."""

from gfix_sdk.coding.bytestream import ByteReader, ByteWriter
from gfix_sdk.coding.symbols import (
    Coder,
    decode_channels,
    decode_symbols,
    encode_symbols,
    skip_symbols,
    symbols_cost_bytes,
)

__all__ = ["ByteReader", "ByteWriter", "Coder", "decode_channels", "encode_symbols", "decode_symbols", "skip_symbols", "symbols_cost_bytes"]
