// Native reading of gfix_sdk.coding.symbols' channel codings: the model byte,
// its parameters and the rANS-coded words, parsed and decoded in C++.
//
// Why: a frame has 8-17 channels, and parsing each one's header in Python
// (varints, tables, checks) cost ~55 us, more than decoding its symbols.
//
// The Python reader (symbols.py) stays the definition of the format and the
// source of its error messages: decode_channels() here returns -1 for
// anything it does not handle (a channel coded by constriction's ANS) and for
// anything invalid, and the caller then reads the same bytes with the Python
// reader, which decodes them or raises the precise error. So this reader may
// only ever accept what the Python one accepts, and must decode it to the same
// values (tests/test_coding.py checks both on valid and damaged data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gfix::channels {

// The discrete Laplace's integer weights over [lo, hi] (symbols.laplace_table):
// T(|k - center|) with T(0) = peak, T(d + 1) = max(1, T(d) * ratio_narrow >> 16),
// or, for weight_q < 2^16, the mixture max(1, (w T_narrow + (2^16 - w) T_wide) >> 16).
// Throws std::invalid_argument on parameters outside their ranges.
std::vector<int64_t> laplace_weights(int64_t peak, int64_t center, int64_t lo, int64_t hi, int64_t ratio_narrow,
                                     int64_t ratio_wide, int64_t weight_q);

// T(0 .. reach - 1) of the recursion above.
std::vector<int64_t> laplace_decay(int64_t peak, int64_t ratio_q, int64_t reach);

// Parses and decodes num_channels consecutive codings of count values each
// from data[pos, size), channel k into outs[k] (count int64 values each).
// Returns the position after the last channel, or -1 when the Python reader
// must read them instead (see above); outs are then unspecified. Decodes the
// channels in parallel over num_threads threads (0: OpenMP's default).
int64_t decode_channels(const uint8_t* data, size_t size, size_t pos, int64_t count, int64_t* const* outs,
                        int num_channels, int num_threads);

}  // namespace gfix::channels
