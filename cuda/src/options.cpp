// Process-wide defaults of cuda::Options (see pyrnn/cuda/options.h). Plain C++: also linked into
// the host emulation of the backend.
#include "pyrnn/cuda/options.h"

#include <cctype>
#include <cstdlib>
#include <mutex>
#include <string>

#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The five fields, in the order of Options; a bad environment value is kept per field, so
// that setting that field (process-wide or on a layer) replaces it.
enum Field { kPrecision, kAlgo, kGraphs, kStreams, kPersistBlocks, kFields };

struct Defaults {
  std::mutex mutex;
  bool loaded = false;
  Options env;      // from the environment (or built in), resolved
  Options overrides;  // the last set_default_options (Default fields: the environment's)
  Options current;    // env overridden by overrides
  std::string bad[kFields];  // the error of a field whose environment value did not parse
};

// Which fields `o` leaves to the defaults.
void defaulted(const Options& o, bool out[kFields]) {
  out[kPrecision] = o.precision == Precision::Default;
  out[kAlgo] = o.algo == RecurrentAlgo::Default;
  out[kGraphs] = o.graphs == Switch::Default;
  out[kStreams] = o.streams == Switch::Default;
  out[kPersistBlocks] = o.persist_blocks < 0;
}

Defaults& defaults() {
  static Defaults* d = new Defaults();  // leaked: used until process exit
  return *d;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Parses one variable; a bad value is recorded for its field (and the built-in value kept), to
// be thrown wherever that field is used without being set.
template <class T, class Parse>
void read_env(Defaults& d, Field f, const char* name, T& value, Parse parse) {
  const char* v = env(name);
  if (!v) return;
  try {
    value = parse(v, name);
  } catch (const Error& e) {
    d.bad[f] = e.what();
  }
}

// As the other variables: 'default' (any case) is the built-in value, and no blanks or sign on
// either side (strtol alone skipped leading blanks and '+' but refused trailing blanks).
int parse_blocks(const char* v, const char* name) {
  if (lower(v) == "default") return -1;
  const std::string s(v);
  const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  const long n = digits ? std::strtol(v, nullptr, 10) : -1;  // LONG_MAX past its range
  PYRNN_CHECK(digits && n <= 65535, name, " must be an integer in [0, 65535] or 'default', got '",
              v, "'");
  return static_cast<int>(n);
}

// Called with the mutex held.
void load(Defaults& d) {
  if (d.loaded) return;
  Options o;
  o.precision = Precision::Float32;
  o.algo = RecurrentAlgo::Auto;
  // Graphs and the second stream stay off until a GPU session has run their tests and timed
  // them (the plain launch path is the one every other check exercises).
  o.graphs = Switch::Off;
  o.streams = Switch::Off;
  o.persist_blocks = 0;
  read_env(d, kPrecision, "PYRNN_CUDA_PRECISION", o.precision,
           [](const char* v, const char* n) { return parse_precision(v, n); });
  read_env(d, kAlgo, "PYRNN_CUDA_RECURRENT", o.algo,
           [](const char* v, const char* n) { return parse_algo(v, n); });
  read_env(d, kGraphs, "PYRNN_CUDA_GRAPHS", o.graphs,
           [](const char* v, const char* n) { return parse_switch(v, n); });
  read_env(d, kStreams, "PYRNN_CUDA_STREAMS", o.streams,
           [](const char* v, const char* n) { return parse_switch(v, n); });
  read_env(d, kPersistBlocks, "PYRNN_CUDA_PERSIST_BLOCKS", o.persist_blocks, parse_blocks);
  // Default in the environment means the built-in default.
  if (o.precision == Precision::Default) o.precision = Precision::Float32;
  if (o.algo == RecurrentAlgo::Default) o.algo = RecurrentAlgo::Auto;
  if (o.graphs == Switch::Default) o.graphs = Switch::Off;
  if (o.streams == Switch::Default) o.streams = Switch::Off;
  if (o.persist_blocks < 0) o.persist_blocks = 0;
  d.env = o;
  d.current = o;
  d.loaded = true;
}

// Throws the error of a bad environment value that `over` and set_default_options both leave
// in use. Called with the mutex held, after load.
void check_env(const Defaults& d, const Options& over) {
  bool open[kFields], from_env[kFields];
  defaulted(over, open);
  defaulted(d.overrides, from_env);
  for (int f = 0; f < kFields; ++f)
    if (open[f] && from_env[f] && !d.bad[f].empty()) throw Error(d.bad[f]);
}

Options merge(const Options& over, const Options& base) {
  Options o = over;
  if (o.precision == Precision::Default) o.precision = base.precision;
  if (o.algo == RecurrentAlgo::Default) o.algo = base.algo;
  if (o.graphs == Switch::Default) o.graphs = base.graphs;
  if (o.streams == Switch::Default) o.streams = base.streams;
  if (o.persist_blocks < 0) o.persist_blocks = base.persist_blocks;
  return o;
}

}  // namespace

Options default_options() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  load(d);
  check_env(d, Options{});
  return d.current;
}

void set_default_options(const Options& options) {
  PYRNN_CHECK(options.persist_blocks <= 65535, "persist_blocks must be <= 65535, got ",
              options.persist_blocks);
  Defaults& d = defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  load(d);
  d.overrides = options;
  d.current = merge(options, d.env);
}

Options default_overrides() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  load(d);
  return d.overrides;
}

Options resolve(const Options& layer) {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  load(d);
  check_env(d, layer);
  return merge(layer, d.current);
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::Float32: return "float32";
    case Precision::TF32: return "tf32";
    default: return "default";
  }
}
const char* to_string(RecurrentAlgo a) {
  switch (a) {
    case RecurrentAlgo::Auto: return "auto";
    case RecurrentAlgo::Cublas: return "cublas";
    case RecurrentAlgo::Fused: return "fused";
    case RecurrentAlgo::Persistent: return "persistent";
    default: return "default";
  }
}
const char* to_string(Switch s) {
  switch (s) {
    case Switch::On: return "on";
    case Switch::Off: return "off";
    default: return "default";
  }
}

Precision parse_precision(const std::string& s, const char* what) {
  const std::string v = lower(s);
  if (v == "default") return Precision::Default;
  if (v == "float32" || v == "fp32" || v == "ieee") return Precision::Float32;
  if (v == "tf32") return Precision::TF32;
  throw_error(what, " must be 'float32' or 'tf32', got '", s, "'");
}
RecurrentAlgo parse_algo(const std::string& s, const char* what) {
  const std::string v = lower(s);
  if (v == "default") return RecurrentAlgo::Default;
  if (v == "auto") return RecurrentAlgo::Auto;
  if (v == "cublas") return RecurrentAlgo::Cublas;
  if (v == "fused") return RecurrentAlgo::Fused;
  if (v == "persistent") return RecurrentAlgo::Persistent;
  throw_error(what, " must be 'auto', 'cublas', 'fused' or 'persistent', got '", s, "'");
}
Switch parse_switch(const std::string& s, const char* what) {
  const std::string v = lower(s);
  if (v == "default") return Switch::Default;
  if (v == "1" || v == "on" || v == "true" || v == "yes") return Switch::On;
  if (v == "0" || v == "off" || v == "false" || v == "no") return Switch::Off;
  throw_error(what, " must be 1/on/true or 0/off/false, got '", s, "'");
}

}  // namespace cuda
}  // namespace pyrnn
