// CSV series (`train --csv FILE --column value`): load_csv_column and seasonal_period.
#include "bptt/data.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = bptt::fuzz::write_input(data, size, ".csv");
  bptt::fuzz::errors_only(path, [&] {
    const auto s = bptt::data::load_csv_column(path, "value");
    if (s.values.size() != s.labels.size()) bptt::fuzz::finding("labels and values differ", path);
    (void)bptt::data::seasonal_period(s);
  });
  return 0;
}
