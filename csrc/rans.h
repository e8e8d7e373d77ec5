// Static-model rANS coder for the Gaussian frames' integer channels.
//
// Why our own: constriction's AnsCoder decodes a categorical model by binary
// search over its CDF at 10-70 ns per symbol (more for wider alphabets); a
// 1080p frame holds ~180k symbols. Here a bucketed lookup table finds the
// symbol in one step for almost every slot (a short binary search inside the
// bucket otherwise), ~3 ns per symbol.
//
// Stream: 64-bit states, 32-bit words, 24-bit probabilities (constriction's
// defaults, so the rate is the same). Long channels interleave lanes(count)
// states (symbol k goes to state k mod lanes) so that the decoder's
// dependency chains overlap; each extra state costs 8 bytes, hence only from
// 4096 symbols on. Each lane has its own words (so that the decoder's lanes
// share no read pointer): the stream is the word counts of all lanes (when more than one),
// then each lane's words: its final encoder state (no word when 0, its low
// word below 2^32, else low and high), then the words the decoder reads front
// to back. States start at 0, not at kLower as in textbook rANS, so the first
// ~32 bits of a lane cost no word (constriction does the same; a small frame's
// ~20 channels would otherwise pay ~4 bytes each). The decoder refills below
// kLower only while words remain. After the last symbol an intact stream has
// returned every state to 0 with every word consumed: anything else is
// corruption.
//
// Probabilities come from integer weights by an integer-only rule
// (quantize_weights), so encoder and decoder build identical tables on every
// machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gfix::rans {

constexpr int kPrecision = 24;
constexpr uint32_t kTotal = 1u << kPrecision;
constexpr uint64_t kLower = uint64_t{1} << 32;  // once a word was emitted, states live in [kLower, 2^64)
constexpr int kMaxLanes = 4;
constexpr int kMaxSumBits = 38;                  // weights are scaled to sum below ~2^38

// States interleaved for a channel of count symbols: 1, 2 from 4096, 4 from 16384.
inline int lanes(size_t count) { return count >= 16384 ? 4 : count >= 4096 ? 2 : 1; }

// Frequencies (summing to kTotal, 0 exactly where the weight is 0) and their
// cumulative sums (size n + 1). Throws std::invalid_argument for a negative
// weight, no positive weight, or more positive weights than kTotal.
struct Table {
  std::vector<uint32_t> freq;
  std::vector<uint32_t> cum;
};
Table quantize_weights(const int64_t* weights, size_t n);

// Codes symbols[0..count) (each in [0, n) with a positive frequency, else
// std::invalid_argument) and returns the words in decoder order.
std::vector<uint32_t> encode(const int64_t* symbols, size_t count, const Table& table);

// Decodes count symbols into out. Throws std::runtime_error when the words are
// not an intact coding of count symbols under this table.
void decode(const uint32_t* words, size_t num_words, const Table& table, size_t count, int64_t* out);

}  // namespace gfix::rans
