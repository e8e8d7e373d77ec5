#include "channels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rans.h"

namespace gfix::channels {

std::vector<int64_t> laplace_decay(int64_t peak, int64_t ratio_q, int64_t reach) {
  if (peak < 1 || peak > (int64_t{1} << 40)) throw std::invalid_argument("peak must lie in [1, 2^40]");
  if (ratio_q <= 0 || ratio_q >= (1 << 16)) throw std::invalid_argument("ratio_q must lie in (0, 65536)");
  if (reach < 0) throw std::invalid_argument("reach must be >= 0");
  std::vector<int64_t> decay(static_cast<size_t>(reach));
  int64_t value = peak;
  for (int64_t d = 0; d < reach; ++d) {
    decay[d] = value;
    if (value > 1) value = std::max<int64_t>(1, (value * ratio_q) >> 16);
  }
  return decay;
}

std::vector<int64_t> laplace_weights(int64_t peak, int64_t center, int64_t lo, int64_t hi, int64_t ratio_narrow,
                                     int64_t ratio_wide, int64_t weight_q) {
  if (hi < lo || hi - lo >= (int64_t{1} << 24)) throw std::invalid_argument("need lo <= hi and hi - lo < 2^24");
  if (weight_q < 0 || weight_q > (1 << 16)) throw std::invalid_argument("weight_q must lie in [0, 65536]");
  const int64_t reach = std::max(std::abs(lo - center), std::abs(hi - center)) + 1;
  if (reach > (int64_t{1} << 32)) throw std::invalid_argument("centre too far from the range");
  const bool mixed = weight_q < (1 << 16);
  const std::vector<int64_t> narrow = laplace_decay(peak, ratio_narrow, reach);
  const std::vector<int64_t> wide = mixed ? laplace_decay(peak, ratio_wide, reach) : std::vector<int64_t>();
  std::vector<int64_t> out(static_cast<size_t>(hi - lo + 1));
  for (int64_t k = lo; k <= hi; ++k) {
    const int64_t d = std::abs(k - center);
    out[k - lo] = mixed ? std::max<int64_t>(1, (weight_q * narrow[d] + ((1 << 16) - weight_q) * wide[d]) >> 16)
                        : narrow[d];
  }
  return out;
}

namespace {

// The constants of gfix_sdk/coding/symbols.py (a change there must be made here).
constexpr int kConstant = 0, kEmpirical = 1, kLaplace = 2, kRaw = 3, kLaplaceMix = 4, kLogHistogram = 5;
constexpr uint8_t kRansFlag = 0x80;
constexpr int64_t kMaxAlphabet = int64_t{1} << 16;
constexpr int64_t kMaxAbsSymbol = (int64_t{1} << 31) - 1;
constexpr int64_t kLaplacePeak = int64_t{1} << 30;
constexpr int64_t kRatioOne = int64_t{1} << 16;
constexpr int kLogSteps = 4;
constexpr int64_t kFractionalPowers[kLogSteps] = {65536, 77936, 92682, 110218};

// Thrown for anything this reader leaves to the Python one.
struct Fallback {};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, size_t pos) : data_(data), size_(size), pos_(pos) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  const uint8_t* take(size_t n) {
    if (n > remaining()) throw Fallback{};
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint8_t u8() { return *take(1); }
  int64_t u16() {
    const uint8_t* p = take(2);
    return p[0] | (int64_t{p[1]} << 8);
  }
  // Python's varint is unbounded; values of 2^56 and more (never valid where
  // we read them) are left to it rather than risk a different overflow.
  int64_t varint(int64_t maximum) {
    uint64_t value = 0;
    for (int shift = 0; shift < 56; shift += 7) {
      const uint8_t byte = u8();
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) {
        if (static_cast<int64_t>(value) > maximum) throw Fallback{};
        return static_cast<int64_t>(value);
      }
    }
    throw Fallback{};
  }
  int64_t svarint(int64_t bound) {
    const int64_t v = varint(INT64_MAX);
    const int64_t value = (v & 1) ? -((v + 1) >> 1) : v >> 1;
    if (std::abs(value) > bound) throw Fallback{};
    return value;
  }
  std::vector<uint32_t> u32_array() {
    const int64_t n = varint(static_cast<int64_t>(remaining() / 4));
    const uint8_t* p = take(static_cast<size_t>(4 * n));
    std::vector<uint32_t> words(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k)  // little-endian whatever the machine
      words[k] = p[4 * k] | (uint32_t{p[4 * k + 1]} << 8) | (uint32_t{p[4 * k + 2]} << 16) |
                 (uint32_t{p[4 * k + 3]} << 24);
    return words;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_;
};

// A channel parsed up to its symbols.
struct Channel {
  int model = kConstant;
  int64_t lo = 0;
  int bits = 0;                 // RAW
  const uint8_t* packed = nullptr;  // RAW
  std::vector<int64_t> weights;  // table models
  std::vector<uint32_t> words;   // table models
};

void decode_into(const Channel& c, int64_t count, int64_t* out);

Channel parse(Reader& r, int64_t count, bool histograms) {
  Channel c;
  const uint8_t model_byte = r.u8();
  const bool rans = model_byte & kRansFlag;
  c.model = model_byte & ~kRansFlag;
  if (c.model > kLogHistogram) throw Fallback{};
  const bool table_model = c.model != kConstant && c.model != kRaw;
  if (rans != table_model) throw Fallback{};  // ANS-coded (constriction), or a flag where none belongs
  if (!histograms && (c.model == kEmpirical || c.model == kLogHistogram)) throw Fallback{};
  c.lo = r.svarint(kMaxAbsSymbol);
  switch (c.model) {
    case kConstant:
      return c;
    case kRaw: {
      c.bits = r.u8();
      if (c.bits < 1 || c.bits > 32) throw Fallback{};
      c.packed = r.take(static_cast<size_t>((count * c.bits + 7) / 8));
      return c;
    }
    case kLogHistogram: {
      const int64_t size = r.varint(kMaxAlphabet);
      if (size < 1) throw Fallback{};
      const Channel steps = parse(r, size, false);
      std::vector<int64_t> levels(static_cast<size_t>(size));
      decode_into(steps, size, levels.data());
      int64_t level = 0;
      bool any = false;
      c.weights.resize(static_cast<size_t>(size));
      for (int64_t k = 0; k < size; ++k) {
        level += levels[k];
        if (level < 0 || level > kLogSteps * 40) throw Fallback{};
        c.weights[k] = level > 0 ? kFractionalPowers[level % kLogSteps] << (level / kLogSteps) : 0;
        any |= level > 0;
      }
      if (!any) throw Fallback{};
      c.words = r.u32_array();
      return c;
    }
    case kEmpirical: {
      const int64_t size = r.varint(kMaxAlphabet);
      if (size < 1) throw Fallback{};
      c.weights.resize(static_cast<size_t>(size));
      int64_t total = 0;
      for (int64_t k = 0; k < size; ++k) total += c.weights[k] = r.varint(count);
      if (total != count) throw Fallback{};
      c.words = r.u32_array();
      return c;
    }
    case kLaplace:
    case kLaplaceMix: {
      const int64_t span = r.varint(kMaxAlphabet - 1);
      const int64_t center = r.svarint(kMaxAlphabet);
      const int64_t narrow = r.u16();
      const int64_t wide = c.model == kLaplaceMix ? r.u16() : 1;
      const int64_t weight_q = c.model == kLaplaceMix ? r.u16() : kRatioOne;
      if (narrow <= 0 || narrow >= kRatioOne || wide <= 0 || wide >= kRatioOne || center < 0 || center > span)
        throw Fallback{};
      c.words = r.u32_array();
      c.weights = laplace_weights(kLaplacePeak, center, 0, span, narrow, wide, weight_q);
      return c;
    }
  }
  throw Fallback{};
}

// Decodes a parsed channel; throws (rans' runtime_error/invalid_argument) on damage.
void decode_into(const Channel& c, int64_t count, int64_t* out) {
  if (c.model == kConstant) {
    std::fill(out, out + count, c.lo);
  } else if (c.model == kRaw) {
    // Bit j of symbol k is bit (k * bits + j) of the stream, least significant
    // first: an 8-byte little-endian window holds a symbol's <= 32 + 7 bits.
    const int64_t num_bytes = (count * c.bits + 7) / 8;
    const uint64_t mask = (uint64_t{1} << c.bits) - 1;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t first = k * c.bits;
      const int64_t byte = first >> 3;
      uint64_t window = 0;
      if (byte + 8 <= num_bytes) {
        for (int b = 0; b < 8; ++b) window |= static_cast<uint64_t>(c.packed[byte + b]) << (8 * b);
      } else {  // the last symbols: only the bytes that exist
        for (int b = 0; byte + b < num_bytes; ++b) window |= static_cast<uint64_t>(c.packed[byte + b]) << (8 * b);
      }
      out[k] = static_cast<int64_t>((window >> (first & 7)) & mask) + c.lo;
    }
  } else {
    const rans::Table table = rans::quantize_weights(c.weights.data(), c.weights.size());
    rans::decode(c.words.data(), c.words.size(), table, static_cast<size_t>(count), out);
    if (c.lo != 0)
      for (int64_t k = 0; k < count; ++k) out[k] += c.lo;
  }
}

}  // namespace

int64_t decode_channels(const uint8_t* data, size_t size, size_t pos, int64_t count, int64_t* const* outs,
                        int num_channels, int num_threads) {
  if (count < 0 || pos > size) return -1;
  std::vector<Channel> channels;
  channels.reserve(static_cast<size_t>(num_channels));
  Reader reader(data, size, pos);
  try {
    for (int k = 0; k < num_channels; ++k) channels.push_back(parse(reader, count, true));
  } catch (const Fallback&) {
    return -1;
  } catch (const std::exception&) {  // e.g. Laplace parameters the table builder refuses
    return -1;
  }
  int failed = 0;
#ifdef _OPENMP
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
#else
  (void)num_threads;
#endif
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (num_channels > 1) reduction(| : failed)
  for (int k = 0; k < num_channels; ++k) {
    try {
      decode_into(channels[k], count, outs[k]);
    } catch (...) {
      failed |= 1;
    }
  }
  return failed ? -1 : static_cast<int64_t>(reader.pos());
}

}  // namespace gfix::channels
