// edgeresnet-run: the artifact's TVM library run natively, without Python.
//
// Built by `edgeresnet compile` for aarch64 targets (cross-compiled with aarch64-linux-gnu-g++ on the
// tvm-ffi headers of the apache-tvm-ffi wheel), it links only TVM's runtime (runtime/libtvm_runtime.so,
// runtime/libtvm_ffi.so, found through the $ORIGIN/runtime rpath) and the C/C++ runtime of the board.
//
//   ./edgeresnet-run --npy inputs.npy [--threads N] [--warmup 3] [--logits-out logits.npy]
//   ./edgeresnet-run --check [--golden DIR] [--report FILE] [--min-agreement 99] [--max-extra-drop 0.5]
//
// --npy takes preprocessed float32 [N, C, H, W] (little-endian, C order: what numpy writes); it prints
// top-1 per input and the latency percentiles. --check runs golden/ and compares with the host's FP32
// and INT8 logits exactly as device_check.py does (same fields, same budget, same device-report.json
// schema). The report goes to the device folder, <artifact>.device/device-report.json beside the artifact
// (--report names another file): the artifact stays exactly as shipped, so `edgeresnet verify` passes.
// Exit codes: 0 ok / within budget, 1 drifted past the budget, 2 bad input, 4 internal error.

#include <dlpack/dlpack.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef EDGERESNET_TVM_VERSION
#define EDGERESNET_TVM_VERSION "unknown"
#endif

namespace ffi = tvm::ffi;

namespace {

constexpr int kExitDrift = 1;
constexpr int kExitInput = 2;
constexpr int kExitInternal = 4;
constexpr const char* kReportSchema = "edgeresnet.device-report/1";
constexpr const char* kGoldenSchema = "edgeresnet.golden/1";

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------- .npy (format versions 1-3)

struct Array {
  std::vector<int64_t> shape;
  std::vector<float> f32;    // descr '<f4'
  std::vector<int64_t> i64;  // descr '<i8' or '<i4' (labels)
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t row_size() const {
    int64_t size = 1;
    for (size_t i = 1; i < shape.size(); ++i) size *= shape[i];
    return size;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot be read");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw InputError(path + ": .npy header lacks '" + key + "'");
  size_t colon = header.find(':', at);
  size_t start = header.find_first_not_of(' ', colon + 1);
  size_t end = header[start] == '(' ? header.find(')', start) + 1
                                    : header.find_first_of(",}", header[start] == '\'' ? header.find('\'', start + 1) : start);
  return header.substr(start, end - start);
}

Array load_npy(const std::string& path) {
  std::string data = read_file(path);
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) throw InputError(path + ": not a .npy file");
  int major = static_cast<unsigned char>(data[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    offset = 10;
  } else {
    header_len = 0;
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(data[8 + i]);
    offset = 12;
  }
  std::string header = data.substr(offset, header_len);
  std::string descr = header_value(header, "descr", path);
  if (header_value(header, "fortran_order", path) != "False") throw InputError(path + ": Fortran-order arrays are not read");
  Array array;
  std::string shape = header_value(header, "shape", path);
  for (size_t i = 0; i < shape.size();) {
    if (isdigit(static_cast<unsigned char>(shape[i]))) {
      size_t end;
      array.shape.push_back(std::stoll(shape.substr(i), &end));
      i += end;
    } else {
      ++i;
    }
  }
  int64_t count = 1;
  for (int64_t d : array.shape) count *= d;
  const char* payload = data.data() + offset + header_len;
  size_t available = data.size() - offset - header_len;
  if (descr == "'<f4'") {
    if (available < count * 4) throw InputError(path + ": truncated");
    array.f32.resize(count);
    std::memcpy(array.f32.data(), payload, count * 4);
  } else if (descr == "'<i8'" || descr == "'<i4'") {
    size_t width = descr == "'<i8'" ? 8 : 4;
    if (available < count * width) throw InputError(path + ": truncated");
    array.i64.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      if (width == 8) {
        std::memcpy(&array.i64[i], payload + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, payload + 4 * i, 4);
        array.i64[i] = v;
      }
    }
  } else {
    throw InputError(path + ": dtype " + descr + " is not read (inputs: preprocessed float32 '<f4'; labels: int64)");
  }
  return array;
}

void save_npy(const std::string& path, const std::vector<float>& values, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  if (!out) throw InputError(path + ": cannot be written");
}

// ---------------------------------------------------------------- the model

struct CpuAlloc {
  void AllocData(DLTensor* tensor) {
    tensor->data = std::aligned_alloc(64, (ffi::GetDataSize(*tensor) + 63) / 64 * 64);
    if (tensor->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

class Model {
 public:
  Model(const std::string& library, std::vector<int64_t> input_shape)
      : shape_(std::move(input_shape)),
        vm_(load_vm(library)),
        main_(vm_->GetFunction("main").value()),
        input_(ffi::Tensor::FromNDAlloc(CpuAlloc(), ffi::ShapeView(shape_.data(), shape_.size()),
                                        DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0})) {}
  int64_t batch() const { return shape_[0]; }
  int64_t sample_size() const {
    int64_t size = 1;
    for (size_t i = 1; i < shape_.size(); ++i) size *= shape_[i];
    return size;
  }
  // One static batch in, its logits [batch, classes] out.
  std::vector<float> infer(const float* batch, int64_t* classes) {
    std::memcpy(input_.data_ptr(), batch, batch_bytes());
    ffi::Tensor out = main_(input_).cast<ffi::Tensor>();
    *classes = out.shape()[out.shape().size() - 1];
    const float* data = static_cast<const float*>(out.data_ptr());
    return std::vector<float>(data, data + out.numel());
  }

 private:
  static ffi::Module load_vm(const std::string& library) {
    ffi::Module lib = ffi::Module::LoadFromFile(library);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);  // CPU 0, pooled allocator
    return vm;
  }
  size_t batch_bytes() const { return static_cast<size_t>(batch() * sample_size()) * sizeof(float); }
  std::vector<int64_t> shape_;
  ffi::Module vm_;
  ffi::Function main_;
  ffi::Tensor input_;
};

struct Run {
  std::vector<float> logits;  // [rows, classes]
  int64_t classes = 0;
  std::vector<double> latencies_ms;  // one per batch
};

Run run_all(Model& model, const Array& inputs, int warmup) {
  if (inputs.shape.size() != 4 || inputs.row_size() != model.sample_size())
    throw InputError("inputs must be preprocessed float32 [N, C, H, W] of the model's input size");
  int64_t batch = model.batch(), rows = inputs.rows(), size = model.sample_size();
  std::vector<float> chunk(batch * size);
  auto fill = [&](int64_t start) {  // the last batch is padded with its last row
    for (int64_t r = 0; r < batch; ++r) {
      int64_t source = std::min(start + r, rows - 1);
      std::memcpy(chunk.data() + r * size, inputs.f32.data() + source * size, size * sizeof(float));
    }
  };
  Run run;
  fill(0);
  for (int i = 0; i < warmup; ++i) model.infer(chunk.data(), &run.classes);
  for (int64_t start = 0; start < rows; start += batch) {
    fill(start);
    auto began = std::chrono::steady_clock::now();
    std::vector<float> out = model.infer(chunk.data(), &run.classes);
    run.latencies_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count());
    int64_t keep = std::min(batch, rows - start);
    run.logits.insert(run.logits.end(), out.begin(), out.begin() + keep * run.classes);
  }
  return run;
}

// ---------------------------------------------------------------- comparison (as device_check.py)

double percentile(std::vector<double> values, double q) {  // numpy's default (linear) interpolation
  std::sort(values.begin(), values.end());
  double position = q / 100.0 * (values.size() - 1);
  size_t low = static_cast<size_t>(std::floor(position));
  size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (position - low);
}

std::vector<int64_t> argmax(const std::vector<float>& logits, int64_t classes) {
  std::vector<int64_t> best(logits.size() / classes);
  for (size_t r = 0; r < best.size(); ++r) {
    const float* row = logits.data() + r * classes;
    best[r] = std::max_element(row, row + classes) - row;
  }
  return best;
}

struct Drift {
  double agreement, cosine, sqnr_db, max_abs_diff, mean_abs_diff;
};

Drift compare(const std::vector<float>& reference, const std::vector<float>& test, int64_t classes) {
  if (reference.size() != test.size()) throw InputError("golden logits and device logits have different shapes");
  size_t rows = reference.size() / classes;
  std::vector<int64_t> a = argmax(reference, classes), b = argmax(test, classes);
  double agree = 0, cosine = 0, noise = 0, signal = 0, max_diff = 0, sum_diff = 0;
  for (size_t r = 0; r < rows; ++r) {
    agree += a[r] == b[r];
    double dot = 0, nr = 0, nt = 0;
    for (int64_t c = 0; c < classes; ++c) {
      double x = reference[r * classes + c], y = test[r * classes + c];
      dot += x * y, nr += x * x, nt += y * y;
      noise += (x - y) * (x - y), signal += x * x;
      max_diff = std::max(max_diff, std::fabs(x - y));
      sum_diff += std::fabs(x - y);
    }
    cosine += dot / std::max(std::sqrt(nr) * std::sqrt(nt), 1e-12);
  }
  double sqnr = noise == 0 ? INFINITY : (signal > 0 ? 10 * std::log10(signal / noise) : -INFINITY);
  return {agree / rows, cosine / rows, sqnr, max_diff, sum_diff / reference.size()};
}

double top1(const std::vector<float>& logits, int64_t classes, const std::vector<int64_t>& labels) {
  std::vector<int64_t> best = argmax(logits, classes);
  double hits = 0;
  for (size_t r = 0; r < best.size(); ++r) hits += best[r] == labels[r];
  return hits / best.size() * 100;
}

double round_to(double value, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

double drop_pts(const std::vector<float>& fp32, const std::vector<float>& test, int64_t classes, const Array* labels) {
  if (labels == nullptr) return round_to((1 - round_to(compare(fp32, test, classes).agreement, 6)) * 100, 4);
  return round_to(round_to(top1(fp32, classes, labels->i64), 4) - round_to(top1(test, classes, labels->i64), 4), 4);
}

// ---------------------------------------------------------------- a small JSON writer

std::string quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string number(double value) {
  if (!std::isfinite(value)) return "null";  // JSON has no infinity (identical logits: SQNR is infinite)
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

// An ordered JSON object: keys in insertion order, values already rendered.
struct Json {
  std::vector<std::pair<std::string, std::string>> fields;
  Json& add(const std::string& key, const std::string& rendered) {
    fields.emplace_back(key, rendered);
    return *this;
  }
  Json& str(const std::string& key, const std::string& value) { return add(key, quote(value)); }
  Json& num(const std::string& key, double value) { return add(key, number(value)); }
  Json& obj(const std::string& key, const Json& value, int indent) { return add(key, value.render(indent + 2)); }
  std::string render(int indent = 0) const {
    if (fields.empty()) return "{}";
    std::string pad(indent + 2, ' '), out = "{\n";
    for (size_t i = 0; i < fields.size(); ++i)
      out += pad + quote(fields[i].first) + ": " + fields[i].second + (i + 1 < fields.size() ? ",\n" : "\n");
    return out + std::string(indent, ' ') + "}";
  }
};

Json drift_json(const Drift& d) {
  Json j;
  j.num("agreement", round_to(d.agreement, 6)).num("cosine", round_to(d.cosine, 6));
  j.num("sqnr_db", std::isfinite(d.sqnr_db) ? round_to(d.sqnr_db, 3) : d.sqnr_db);
  return j.num("max_abs_diff", d.max_abs_diff).num("mean_abs_diff", d.mean_abs_diff);
}

// ---------------------------------------------------------------- device facts

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && (text.back() == '\0' || text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string cpu_model() {  // as device_check._cpu_model: x86 names itself, ARM gives implementer/part
  std::istringstream in(read_text("/proc/cpuinfo"));
  std::map<std::string, std::string> fields;
  for (std::string line; std::getline(in, line);) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t") + 1);
      return s;
    };
    fields.emplace(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  if (!fields["model name"].empty()) return fields["model name"];
  std::string out;
  for (const char* key : {"CPU implementer", "CPU part", "Hardware", "Model"}) {
    if (fields[key].empty()) continue;
    out += (out.empty() ? "" : ", ") + std::string(key) + " " + fields[key];
  }
  return out.empty() ? "unknown" : out;
}

Json device_facts(const std::string& target, int threads) {
  utsname name{};
  uname(&name);
  Json runtime;
  runtime.str("runner", "edgeresnet-run (native C++, tvm-ffi)").str("tvm", EDGERESNET_TVM_VERSION);
  runtime.str("library", "model.so").str("target", target).num("threads", threads);
  Json facts;
  facts.str("machine", name.machine).str("cpu_model", cpu_model()).num("cpu_count", sysconf(_SC_NPROCESSORS_ONLN));
  std::string board = read_text("/proc/device-tree/model");
  if (!board.empty()) facts.str("board", board);
  facts.str("kernel", std::string(name.sysname) + " " + name.release);
  facts.obj("runtime", runtime, 2);
  return facts;
}

// ---------------------------------------------------------------- command line

struct Options {
  std::string artifact, npy, golden, report, logits_out;
  bool check = false;
  int threads = 0, warmup = 3;
  double min_agreement = 99.0, max_extra_drop = 0.5;
};

const char* kUsage =
    "usage: edgeresnet-run --npy FILE [--threads N] [--warmup N] [--logits-out FILE]\n"
    "       edgeresnet-run --check [--golden DIR] [--report FILE] [--min-agreement PCT] [--max-extra-drop PTS]\n"
    "       (--artifact DIR: the artifact folder, default the one holding this program;\n"
    "        --report FILE: default <artifact>.device/device-report.json beside the artifact)\n";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--npy") o.npy = value();
      else if (arg == "--check") o.check = true;
      else if (arg == "--golden") o.golden = value();
      else if (arg == "--report") o.report = value();
      else if (arg == "--logits-out") o.logits_out = value();
      else if (arg == "--artifact") o.artifact = value();
      else if (arg == "--threads") o.threads = std::stoi(value());
      else if (arg == "--warmup") o.warmup = std::stoi(value());
      else if (arg == "--min-agreement") o.min_agreement = std::stod(value());
      else if (arg == "--max-extra-drop") o.max_extra_drop = std::stod(value());
      else if (arg == "-h" || arg == "--help") {
        std::cout << kUsage;
        std::exit(0);
      } else throw InputError("unknown argument " + arg);
    } catch (const std::logic_error&) {  // std::stoi/stod on a non-number
      throw InputError(arg + " takes a number, not " + argv[i]);
    }
  }
  if (o.check == !o.npy.empty()) throw InputError("pass --npy FILE or --check (one of them)");
  if (o.artifact.empty()) {
    char buffer[4096];
    ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
    std::string exe = n > 0 ? std::string(buffer, n) : argv[0];
    o.artifact = exe.substr(0, exe.find_last_of('/') == std::string::npos ? 0 : exe.find_last_of('/'));
    if (o.artifact.empty()) o.artifact = ".";
  }
  if (o.golden.empty()) o.golden = o.artifact + "/golden";
  if (o.check && o.report.empty()) {
    char resolved[PATH_MAX];
    std::string home = realpath(o.artifact.c_str(), resolved) ? std::string(resolved) : o.artifact;
    std::string device = home + ".device";
    if (mkdir(device.c_str(), 0777) != 0 && errno != EEXIST) throw InputError(device + ": cannot be created");
    o.report = device + "/device-report.json";
  }
  return o;
}

ffi::json::Object read_json(const std::string& path) {
  ffi::String error;
  ffi::json::Value value = ffi::json::Parse(read_file(path), &error);
  if (!error.empty()) throw InputError(path + ": not valid JSON (" + std::string(error) + ")");
  return value.cast<ffi::json::Object>();
}

int check(Model& model, const Options& o, const std::string& target, int threads) {
  ffi::json::Object meta = read_json(o.golden + "/golden.json");
  if (meta.at("schema").cast<ffi::String>() != kGoldenSchema) throw InputError(o.golden + "/golden.json: unknown schema");
  ffi::json::Object files = meta.at("files").cast<ffi::json::Object>();
  auto file = [&](const char* key) { return o.golden + "/" + std::string(files.at(key).cast<ffi::String>()); };
  Array inputs = load_npy(file("inputs")), fp32 = load_npy(file("fp32_logits")), host = load_npy(file("int8_logits"));
  bool labelled = files.at("labels") != nullptr;
  Array labels;
  if (labelled) labels = load_npy(file("labels"));
  if (fp32.rows() != inputs.rows() || host.rows() != inputs.rows() || (labelled && labels.rows() != inputs.rows()))
    throw InputError(o.golden + ": inputs, labels and logits hold different numbers of rows");

  Run run = run_all(model, inputs, std::min(o.warmup, 3));
  int64_t classes = run.classes;
  if (fp32.row_size() != classes) throw InputError(o.golden + ": golden logits have another number of classes than the model");
  Drift drift = compare(fp32.f32, run.logits, classes), host_drift = compare(host.f32, run.logits, classes);
  const Array* label_ptr = labelled ? &labels : nullptr;
  double drop = drop_pts(fp32.f32, run.logits, classes, label_ptr);
  double host_drop = drop_pts(fp32.f32, host.f32, classes, label_ptr);
  double min_agreement = o.min_agreement / 100.0, max_drop = round_to(host_drop + o.max_extra_drop, 4);
  std::vector<std::string> reasons;
  char line[256];
  if (round_to(host_drift.agreement, 6) < min_agreement) {
    std::snprintf(line, sizeof(line), "top-1 agreement with the host INT8 %.2f%% < %.2f%%", host_drift.agreement * 100, o.min_agreement);
    reasons.push_back(line);
  }
  if (drop > host_drop + o.max_extra_drop + 1e-9) {
    std::snprintf(line, sizeof(line), "drop vs FP32 %+.2f pts > host drop %+.2f + %g pts", drop, host_drop, o.max_extra_drop);
    reasons.push_back(line);
  }
  bool passed = reasons.empty();
  std::string machine = [] { utsname n{}; uname(&n); return std::string(n.machine); }();
  std::string runtime_label = "tvm " + std::string(EDGERESNET_TVM_VERSION) + " " + machine +
                              " (edgeresnet-run, native, " + target + " library, " + std::to_string(threads) + " threads)";

  Json int8, fp32_json, host_json, budget, latency, report;
  int64_t rows = inputs.rows();
  int8.str("runtime", runtime_label).str("arch", machine).num("samples", rows);
  fp32_json.str("runtime", std::string(meta.at("fp32_runtime").cast<ffi::String>())).num("samples", rows);
  host_json.str("runtime", std::string(meta.at("int8_runtime").cast<ffi::String>()))
      .str("arch", std::string(meta.at("host_arch").cast<ffi::String>())).num("samples", rows);
  if (labelled) {
    int8.num("top1", round_to(top1(run.logits, classes, labels.i64), 4));
    fp32_json.num("top1", round_to(top1(fp32.f32, classes, labels.i64), 4));
    host_json.num("top1", round_to(top1(host.f32, classes, labels.i64), 4));
  }
  budget.num("min_agreement", min_agreement).num("max_extra_drop", o.max_extra_drop).num("max_drop_pts", max_drop);
  latency.num("batch", model.batch()).num("runs", run.latencies_ms.size());
  for (int p : {50, 90, 99}) latency.num("p" + std::to_string(p), round_to(percentile(run.latencies_ms, p), 4));
  std::string reason_list = "[";
  for (size_t i = 0; i < reasons.size(); ++i) reason_list += (i ? ", " : "") + quote(reasons[i]);
  reason_list += "]";

  report.str("schema", kReportSchema).str("source", "golden vectors (" + o.golden + ")").num("samples", rows);
  report.obj("device", device_facts(target, threads), 0).obj("int8", int8, 0).obj("latency_ms", latency, 0);
  report.obj("budget", budget, 0);
  report.str("model", std::string(meta.at("model").cast<ffi::String>())).str("target", target);
  report.obj("fp32", fp32_json, 0).obj("host_int8", host_json, 0);
  report.num("drop_pts", drop).num("agreement", round_to(drift.agreement, 6)).obj("drift", drift_json(drift), 0);
  report.num("host_drop_pts", host_drop).num("host_agreement", round_to(host_drift.agreement, 6));
  report.obj("host_drift", drift_json(host_drift), 0);
  report.add("passed", passed ? "true" : "false").add("reasons", reason_list).str("verdict", passed ? "PASS" : "DRIFT");
  std::string partial = o.report + ".partial";
  {
    std::ofstream out(partial);
    out << report.render() << "\n";
    if (!out) throw InputError(o.report + ": cannot be written");
  }
  std::rename(partial.c_str(), o.report.c_str());

  std::printf("device: %s, %s; runtime %s; %lld inputs (golden vectors)\n", machine.c_str(), cpu_model().c_str(),
              runtime_label.c_str(), static_cast<long long>(rows));
  if (labelled)
    std::printf("top-1 on the labels: device %.2f%%, host INT8 %.2f%%, FP32 %.2f%%\n", top1(run.logits, classes, labels.i64),
                top1(host.f32, classes, labels.i64), top1(fp32.f32, classes, labels.i64));
  std::printf("vs host INT8: agreement %.2f%%, cosine %.6f, |delta logit| max %.4g mean %.4g\n", host_drift.agreement * 100,
              host_drift.cosine, host_drift.max_abs_diff, host_drift.mean_abs_diff);
  std::printf("vs FP32: agreement %.2f%%, cosine %.6f, drop %+.2f pts (host %+.2f, budget %+.2f)\n", drift.agreement * 100,
              drift.cosine, drop, host_drop, max_drop);
  std::printf("latency per batch of %lld: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms\n", static_cast<long long>(model.batch()),
              percentile(run.latencies_ms, 50), percentile(run.latencies_ms, 90), percentile(run.latencies_ms, 99));
  std::printf("verdict: %s", passed ? "PASS" : "DRIFT");
  for (size_t i = 0; i < reasons.size(); ++i) std::printf("%s%s", i ? "; " : ": ", reasons[i].c_str());
  std::printf("\nwrote %s\n", o.report.c_str());
  return passed ? 0 : kExitDrift;
}

int predict(Model& model, const Options& o, const ffi::json::Array& class_names) {
  Array inputs = load_npy(o.npy);
  if (inputs.f32.empty()) throw InputError(o.npy + ": inputs must be preprocessed float32 [N, C, H, W] (see golden/inputs.npy)");
  Run run = run_all(model, inputs, o.warmup);
  std::vector<int64_t> best = argmax(run.logits, run.classes);
  for (size_t i = 0; i < best.size() && i < 20; ++i) {
    std::string name = best[i] < static_cast<int64_t>(class_names.size())
                           ? std::string(class_names[best[i]].cast<ffi::String>()) : std::to_string(best[i]);
    std::printf("%zu: %s\n", i, name.c_str());
  }
  std::printf("%lld inputs, batch %lld: latency p50 %.3f ms, p90 %.3f ms, p99 %.3f ms\n", static_cast<long long>(best.size()),
              static_cast<long long>(model.batch()), percentile(run.latencies_ms, 50), percentile(run.latencies_ms, 90),
              percentile(run.latencies_ms, 99));
  if (!o.logits_out.empty()) save_npy(o.logits_out, run.logits, best.size(), run.classes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    ffi::json::Object deploy = read_json(o.artifact + "/deploy.json");
    std::vector<int64_t> shape;
    for (const ffi::Any& d : deploy.at("input_shape").cast<ffi::json::Array>()) shape.push_back(d.cast<int64_t>());
    int threads = o.threads > 0 ? o.threads : static_cast<int>(deploy.at("threads").cast<int64_t>());
    if (const char* env = std::getenv("TVM_NUM_THREADS"); env && o.threads <= 0) threads = std::atoi(env);
    setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);  // read by TVM's thread pool when it starts
    // TVM binds its workers to cores only when the cores are at least as many (threading_backend.cc, SetAffinity),
    // and otherwise warns on every run that it did not. With more threads than cores (a board emulated on a smaller
    // host, or --threads above the core count) they run unbound either way; TVM_BIND_THREADS=0 says so quietly.
    if (threads > static_cast<int>(std::thread::hardware_concurrency())) setenv("TVM_BIND_THREADS", "0", 0);
    std::string target = std::string(deploy.at("target").cast<ffi::String>());
    Model model(o.artifact + "/" + std::string(deploy.at("library").cast<ffi::String>()), shape);
    if (o.check) return check(model, o, target, threads);
    ffi::json::Object pre = deploy.at("preprocessing").cast<ffi::json::Object>();
    return predict(model, o, pre.at("class_names").cast<ffi::json::Array>());
  } catch (const InputError& e) {
    std::fprintf(stderr, "edgeresnet-run: %s\n%s", e.what(), kUsage);
    return kExitInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeresnet-run: internal error: %s\n", e.what());
    return kExitInternal;
  }
}
