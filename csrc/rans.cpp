#include "rans.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace gfix::rans {

Table quantize_weights(const int64_t* weights, size_t n) {
  if (n == 0) throw std::invalid_argument("rans: empty alphabet");
  uint64_t total = 0;
  size_t positive = 0;
  for (size_t i = 0; i < n; ++i) {
    if (weights[i] < 0) throw std::invalid_argument("rans: negative weight");
    if (weights[i] > (int64_t{1} << 62)) throw std::invalid_argument("rans: weight above 2^62");
    positive += weights[i] > 0;
    total += static_cast<uint64_t>(weights[i]);
    if (total >> 62) throw std::invalid_argument("rans: weights sum above 2^62");
  }
  if (positive == 0) throw std::invalid_argument("rans: no symbol has a positive weight");
  if (positive > kTotal) throw std::invalid_argument("rans: more than 2^24 symbols with positive weight");

  // Weights scaled so that they sum below 2^39 (every positive one staying
  // positive): the products below then fit in 64 bits.
  int shift = 0;
  while ((total >> shift) >= (uint64_t{1} << kMaxSumBits)) ++shift;
  auto scaled = [&](size_t i) -> uint64_t {
    return weights[i] > 0 ? std::max<uint64_t>(1, static_cast<uint64_t>(weights[i]) >> shift) : 0;
  };
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += scaled(i);

  // Cumulative rounding: every positive weight gets one unit, the other
  // kTotal - positive units are shared by rounding the cumulative weight down,
  // cum[i] = (positive weights before i) + floor(W_i * spare / sum). Each
  // frequency is then within one unit of its proportional share, zero weights
  // get zero, and cum[n] == kTotal exactly.
  Table t;
  t.freq.resize(n);
  t.cum.resize(n + 1);
  const uint64_t spare = kTotal - positive;
  uint64_t running = 0;
  uint32_t units = 0;
  // floor(running * spare / sum) from a floating-point estimate corrected by
  // exact integer products (all < 2^63): the result is exact, and avoids a
  // 64-bit division per symbol, which dominated wide alphabets.
  const double per_weight = static_cast<double>(spare) / static_cast<double>(sum);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t share = running * spare;  // < 2^39 * 2^24
    int64_t q = static_cast<int64_t>(static_cast<double>(running) * per_weight);
    q = std::min<int64_t>(std::max<int64_t>(q, 0), static_cast<int64_t>(spare));
    while (q > 0 && static_cast<uint64_t>(q) * sum > share) --q;
    while (static_cast<uint64_t>(q + 1) * sum <= share) ++q;
    t.cum[i] = units + static_cast<uint32_t>(q);
    const uint64_t w = scaled(i);
    running += w;
    units += w > 0;
  }
  t.cum[n] = kTotal;
  for (size_t i = 0; i < n; ++i) t.freq[i] = t.cum[i + 1] - t.cum[i];
  return t;
}

std::vector<uint32_t> encode(const int64_t* symbols, size_t count, const Table& table) {
  const size_t n = table.freq.size();
  const int num_lanes = lanes(count);
  std::vector<uint32_t> lane_words[kMaxLanes];
  uint64_t state[kMaxLanes];
  for (int j = 0; j < num_lanes; ++j) {
    lane_words[j].reserve(count / (2 * num_lanes) + 4);
    state[j] = 0;  // starts empty: the first ~32 bits of information cost no word
  }
  for (size_t k = count; k-- > 0;) {
    const int64_t s = symbols[k];
    if (s < 0 || static_cast<size_t>(s) >= n || table.freq[s] == 0)
      throw std::invalid_argument("rans: symbol " + std::to_string(s) + " has no probability");
    const uint64_t f = table.freq[s];
    const int lane = static_cast<int>(k % num_lanes);
    uint64_t& x = state[lane];
    if (f < kTotal) {  // f == kTotal: a certain symbol costs nothing and leaves x as it is
      const uint64_t x_max = f << (64 - kPrecision);
      if (x >= x_max) {
        lane_words[lane].push_back(static_cast<uint32_t>(x));
        x >>= 32;
      }
      x = ((x / f) << kPrecision) + (x % f) + table.cum[s];
    }
  }
  // The final state in as few words as it needs: none when 0, one below 2^32
  // (possible only while no word was emitted), else two.
  auto state_words = [](uint64_t x) { return x == 0 ? 0 : x < kLower ? 1 : 2; };
  std::vector<uint32_t> words;
  for (int j = 0; j < num_lanes && num_lanes > 1; ++j)
    words.push_back(static_cast<uint32_t>(lane_words[j].size() + state_words(state[j])));
  for (int j = 0; j < num_lanes; ++j) {
    const int n_state = state_words(state[j]);
    if (n_state >= 1) words.push_back(static_cast<uint32_t>(state[j]));
    if (n_state == 2) words.push_back(static_cast<uint32_t>(state[j] >> 32));
    words.insert(words.end(), lane_words[j].rbegin(), lane_words[j].rend());
  }
  return words;
}

namespace {

constexpr uint32_t kMask = kTotal - 1;

// Finds the symbol of a slot: bucket[slot >> shift] is the symbol holding the
// bucket's first slot, and the symbol of any slot in bucket b lies in
// [bucket[b], bucket[b + 1]], so one comparison settles almost every slot.
// A decoder-side structure: its size does not affect the stream.
class Lookup {
 public:
  explicit Lookup(const Table& table) : freq(table.freq.data()), cum(table.cum.data()) {
    const size_t n = table.freq.size();
    int bits = 6;
    while (bits < 14 && (size_t{1} << (bits - 2)) < n) ++bits;
    shift_ = kPrecision - bits;
    const size_t buckets = size_t{1} << bits;
    bucket_.resize(buckets + 1);
    uint32_t s = 0;
    for (size_t b = 0; b < buckets; ++b) {
      const uint32_t slot = static_cast<uint32_t>(b << shift_);
      while (cum[s + 1] <= slot) ++s;
      bucket_[b] = s;
    }
    bucket_[buckets] = static_cast<uint32_t>(n - 1);
  }

  uint32_t symbol(uint32_t slot) const {
    uint32_t s = bucket_[slot >> shift_];
    const uint32_t last = bucket_[(slot >> shift_) + 1];
    // One step without a branch (a bucket often holds one symbol boundary, and
    // which side the slot falls is a coin toss); a search only when it holds more.
    s += s != last && cum[s + 1] <= slot;
    if (s != last && cum[s + 1] <= slot)
      s = static_cast<uint32_t>(std::upper_bound(cum + s + 1, cum + last + 1, slot) - cum - 1);
    return s;
  }

  const uint32_t* freq;
  const uint32_t* cum;

 private:
  int shift_;
  std::vector<uint32_t> bucket_;
};

// Each lane reads its own words, so the lanes' dependency chains are
// independent and the refill is a select, not a branch. A lane refills only
// while it has words left; a stream that does not end exactly with the last
// symbol (every word read, every state back at 0) is reported after the loop.
template <int Lanes>
void decode_lanes(const uint32_t* const* begin, const uint32_t* const* end, const Lookup& table,
                  size_t count, int64_t* __restrict out) {
  // States and read pointers live in locals (never in memory that `out` could alias).
  uint64_t x[Lanes];
  const uint32_t* ptr[Lanes];
  const uint32_t* spare[Lanes];  // any readable word
  static const uint32_t kNoWord = 0;
  for (int j = 0; j < Lanes; ++j) {
    // The final encoder state: 0, 1 or 2 words (the canonical count for its value).
    const size_t size = static_cast<size_t>(end[j] - begin[j]);
    const size_t n_state = size < 2 ? size : 2;
    x[j] = n_state == 0 ? 0 : n_state == 1 ? begin[j][0]
                                            : static_cast<uint64_t>(begin[j][0]) | (static_cast<uint64_t>(begin[j][1]) << 32);
    if ((n_state == 1 && x[j] == 0) || (n_state == 2 && x[j] < kLower))
      throw std::runtime_error("the coder state is invalid");
    ptr[j] = begin[j] + n_state;
    spare[j] = size > 0 ? begin[j] : &kNoWord;
  }
  const uint32_t* freq = table.freq;
  const uint32_t* cum = table.cum;
  size_t k = 0;
  auto step = [&](uint64_t& state, const uint32_t*& p, const uint32_t* stop, const uint32_t* spare) -> int64_t {
    const uint32_t slot = static_cast<uint32_t>(state) & kMask;
    const uint32_t s = table.symbol(slot);
    uint64_t next = static_cast<uint64_t>(freq[s]) * (state >> kPrecision) + slot - cum[s];
    // Below kLower with words left: the encoder emitted one here. Below kLower
    // with none left: the encoder's first symbols, before its state filled.
    const bool refill = next < kLower && p != stop;
    const uint64_t word = *(p != stop ? p : spare);  // a select, not a branch; spare is never used
    state = refill ? (next << 32) | word : next;
    p += refill;
    return s;
  };
  for (; k + Lanes <= count; k += Lanes) {
    int64_t decoded[Lanes];
    for (int j = 0; j < Lanes; ++j) decoded[j] = step(x[j], ptr[j], end[j], spare[j]);
    for (int j = 0; j < Lanes; ++j) out[k + j] = decoded[j];
  }
  for (int j = 0; k < count; ++k, ++j) out[k] = step(x[j], ptr[j], end[j], spare[j]);
  for (int j = 0; j < Lanes; ++j)
    if (ptr[j] != end[j] || x[j] != 0) throw std::runtime_error("the coded data does not match its symbol count");
}

}  // namespace

void decode(const uint32_t* words, size_t num_words, const Table& table, size_t count, int64_t* out) {
  const int num_lanes = lanes(count);
  // Lane j's words: [begin[j], end[j]): its state's 0-2 words, then its data words.
  const uint32_t* begin[kMaxLanes];
  const uint32_t* end[kMaxLanes];
  // With several lanes every lane's size is stored, and they must add up to
  // the stream: a lane may legitimately be empty (a state that stayed 0), so
  // a cut stream must not pass for one.
  const size_t table_size = num_lanes > 1 ? static_cast<size_t>(num_lanes) : 0;
  size_t offset = table_size;
  if (num_words < offset) throw std::runtime_error("the coded data is shorter than its lane table");
  size_t total = table_size;
  for (int j = 0; j < num_lanes && num_lanes > 1; ++j) total += words[j];
  if (num_lanes > 1 && total != num_words) throw std::runtime_error("the coded data's lanes are inconsistent");
  for (int j = 0; j < num_lanes; ++j) {
    const size_t size = num_lanes > 1 ? words[j] : num_words;
    begin[j] = words + offset;
    end[j] = words + offset + size;
    offset += size;
  }
  const Lookup lookup(table);
  switch (num_lanes) {
    case 1: return decode_lanes<1>(begin, end, lookup, count, out);
    case 2: return decode_lanes<2>(begin, end, lookup, count, out);
    default: return decode_lanes<4>(begin, end, lookup, count, out);
  }
}

}  // namespace gfix::rans
